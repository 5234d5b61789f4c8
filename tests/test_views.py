"""The views folded from the one event stream: as-of snapshots, history filters, timeline and stats."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import EntryNotFoundError, Ledger
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import FakeClock, Run, entry
from .test_properties import _apply_all, changes


@given(changes, st.data())
def test_as_of_a_seq_is_the_replay_of_the_events_up_to_it(steps: list, data: st.DataObject) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = _apply_all(Path(tmp), steps)
        events = list(ledger.history())
        last = len(events)
        current = ledger.snapshot_path.read_bytes()
        at_last = ledger.entries_as_of(seq=max(last, 0) or 0) if last else []
        assert encode_snapshot({e.key: e for e in at_last}) == current
        k = data.draw(st.integers(0, last))
        at_k = ledger.entries_as_of(seq=k)
        assert {e.key: e for e in at_k} == fold(events[:k])
        if k:
            by_time = ledger.entries_as_of(time=events[k - 1].ts)
            same_time = [e for e in events if e.ts <= events[k - 1].ts]
            assert {e.key: e for e in by_time} == fold(same_time), "events at exactly that time are included"


@given(changes)
def test_stats_add_up(steps: list) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = _apply_all(Path(tmp), steps)
        figures = ledger.stats()
        entries = ledger.get_all_video_metadata()
        events = list(ledger.history())
    assert figures.events == len(events)
    assert figures.entries == len(entries)
    assert sum(figures.by_status.values()) == len(entries)
    assert figures.by_status == {s: sum(1 for e in entries if e.status == s) for s in figures.by_status}
    assert sum(figures.by_era.values()) == len(entries)
    assert sum(figures.attempts_per_entry.values()) == len(entries)
    assert figures.attempts == sum(1 for e in events if e.type == "generating")
    assert figures.ready_attempts == sum(1 for e in events if e.type == "ready")
    assert figures.failed_attempts == sum(1 for e in events if e.type == "failed")
    assert sum(count for _, count in figures.top_failures) <= figures.failed_attempts


def test_generation_time_percentiles(ledger_dir: Path) -> None:
    clock = FakeClock(step=dt.timedelta(0))
    ledger = Ledger(ledger_dir, clock=clock)
    for i in range(1, 101):  # attempts of 1, 2, ... 100 seconds
        ledger.set_video_metadata(entry(f"s{i}", "e", status="generating"))
        clock.now += dt.timedelta(seconds=i)
        ledger.set_video_metadata(entry(f"s{i}", "e", status="ready"))
    figures = ledger.stats()
    assert figures.generation_seconds_median == pytest.approx(50, rel=0.011)
    assert figures.generation_seconds_p95 == pytest.approx(95, rel=0.011)
    assert figures.success_rate == 1.0


def test_history_filters(ledger_dir: Path) -> None:
    clock = FakeClock(step=dt.timedelta(seconds=10))
    ledger = Ledger(ledger_dir, clock=clock)
    ledger.set_video_metadata(entry("a", "1", status="generating"))  # 09:00:00
    ledger.set_video_metadata(entry("b", "2", status="generating"))  # 09:00:10
    ledger.mark_video_failed("a", "1", "boom")  # 09:00:20
    ledger.set_video_metadata(entry("b", "2", status="ready"))  # 09:00:30
    seqs = lambda **kw: [e.seq for e in ledger.history(**kw)]  # noqa: E731
    assert seqs(since="2026-11-24T09:00:10Z", until="2026-11-24T09:00:20Z") == [2, 3], "both ends included"
    assert seqs(since="2026-11-24T10:00:10+01:00") == [2, 3, 4], "any zone; converted to UTC"
    assert seqs(since="2026-11-24T09:00:10") == [2, 3, 4], "no zone means UTC"
    assert seqs(status="failed") == [3]
    assert seqs(type="generating") == [1, 2]
    assert seqs(since_seq=2) == [3, 4]
    assert seqs(spot_id="b") == [2, 4]


def test_timeline_tells_the_story(ledger_dir: Path, run_cli: Run) -> None:
    clock = FakeClock(step=dt.timedelta(seconds=5))
    ledger = Ledger(ledger_dir, clock=clock)
    ledger.set_video_metadata(entry(status="pending", prompt="first idea"))
    ledger.set_video_metadata(entry(status="generating", prompt="first idea"))
    ledger.mark_video_failed("colosseum", "rome-80ad", "GPU out of memory")
    ledger.set_video_metadata(entry(status="generating", prompt="first idea"))
    ledger.set_video_metadata(entry(status="ready", prompt="first idea"))
    story = ledger.timeline("colosseum", "rome-80ad")
    assert [(a.number, a.outcome, a.seconds) for a in story.attempts] == [
        (1, "failed", 5.0),
        (2, "ready", 5.0),
    ]
    assert story.seconds_to_ready == 20.0
    code, out, _ = run_cli("timeline", "colosseum", "rome-80ad")
    assert code == 0
    assert "attempt 1 failed after 5.0 s: GPU out of memory" in out
    assert "2 attempt(s); ready 20.0 s after its first event" in out
    with pytest.raises(EntryNotFoundError):
        ledger.timeline("no", "such")


def test_cli_snapshot_as_of_and_stats(ledger_dir: Path, run_cli: Run, tmp_path: Path) -> None:
    clock = FakeClock(step=dt.timedelta(minutes=1))
    ledger = Ledger(ledger_dir, clock=clock)
    ledger.set_video_metadata(entry("a", "1", status="generating"))  # 09:00
    ledger.set_video_metadata(entry("a", "1", status="ready"))  # 09:01
    code, out, _ = run_cli("snapshot", "--as-of", "2026-11-24T09:00:30Z")
    assert code == 0
    assert [item["status"] for item in json.loads(out)] == ["generating"]
    code, out, _ = run_cli("snapshot", "--seq", "2", "-o", str(tmp_path / "then.json"))
    assert code == 0
    assert (tmp_path / "then.json").read_bytes() == ledger.snapshot_path.read_bytes()
    assert run_cli("snapshot")[0] == 2
    code, out, _ = run_cli("stats", "--json")
    figures = json.loads(out)
    assert figures["byStatus"] == {"ready": 1}
    assert figures["generationSecondsMedian"] == pytest.approx(60, rel=0.011)
    code, out, _ = run_cli("stats")
    assert "success:   100.0%" in out
