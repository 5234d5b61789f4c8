"""One wrong clock: a reading far ahead of the log is refused unless forced; a reading behind it is recorded
at the log's time with the reading kept; verify and stats report the skew they see."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ledger import ClockSkewError, Ledger
from ledger.store import MAX_CLOCK_LEAD

from .conftest import FakeClock, Run, entry, files_state

START = dt.datetime(2026, 11, 24, 9, 0, 0, tzinfo=dt.UTC)
TEN_YEARS = dt.timedelta(days=3652)


def test_one_clock_ten_years_ahead_is_refused_and_the_history_keeps_the_right_time(ledger_dir: Path) -> None:
    """Before: the one set from a clock 10 years ahead was recorded, and every later event from a right
    clock carried that time (times never go backwards), so reap, stats and as-of went wrong."""
    right = FakeClock(START)
    with Ledger(ledger_dir, clock=right) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="generating"))
    before = files_state(ledger_dir)
    wrong = FakeClock(START + TEN_YEARS)
    with Ledger(ledger_dir, clock=wrong) as ledger, pytest.raises(ClockSkewError) as caught:
        ledger.set_video_metadata(entry("b", "1", status="pending"))
    assert files_state(ledger_dir) == before, "nothing written"
    assert caught.value.seq == 1 and caught.value.last == "2026-11-24T09:00:00.000000Z"
    assert "3652 days after the log's last event (event 1" in str(caught.value)
    assert "force_clock=True (--force-clock)" in str(caught.value)
    with Ledger(ledger_dir, clock=right) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="ready"))
        assert [e.ts[:4] for e in ledger.history()] == ["2026", "2026"]
        assert ledger.stats().clock_skew is None
        assert ledger.verify().skew is None
        reaped = ledger.reap(dt.timedelta(hours=2), now=START + dt.timedelta(hours=3))
        assert reaped == []  # the entry was finished at the right time, not stuck


def test_the_lead_bound_is_exact_and_an_empty_log_takes_any_clock(ledger_dir: Path) -> None:
    clock = FakeClock(START + TEN_YEARS, step=dt.timedelta(0))
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="pending"))  # nothing to compare with
        clock.now += MAX_CLOCK_LEAD
        ledger.set_video_metadata(entry("b", "1", status="pending"))  # exactly the bound: accepted
        clock.now += MAX_CLOCK_LEAD + dt.timedelta(microseconds=1)
        with pytest.raises(ClockSkewError, match="more than 30 days is refused"):
            ledger.set_video_metadata(entry("c", "1", status="pending"))
        ledger.set_video_metadata(entry("b", "1", status="pending"))  # writes nothing: reads no clock
        assert [e.seq for e in ledger.history()] == [1, 2]


def test_a_forced_clock_is_recorded_and_the_later_clamped_events_keep_their_writers_reading(
    ledger_dir: Path,
) -> None:
    right = FakeClock(START)
    with Ledger(ledger_dir, clock=right) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="generating"))
    with Ledger(ledger_dir, clock=FakeClock(START + TEN_YEARS), force_clock=True) as ledger:
        ledger.set_video_metadata(entry("b", "1", status="pending"))
    with Ledger(ledger_dir, clock=right) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="ready"))
        ledger.set_video_metadata(entry("c", "1", status="pending"))
        events = list(ledger.history())
        assert [e.ts for e in events][1:] == [events[1].ts] * 3, "times never go backwards"
        assert [e.clock for e in events] == [
            None,
            None,
            "2026-11-24T09:00:00.001000Z",
            "2026-11-24T09:00:00.002000Z",
        ]
        for report in (ledger.verify().skew, ledger.stats().clock_skew):
            assert report is not None
            assert (report.events, report.seq, report.set_by) == (2, 3, 2)
            assert report.largest_seconds == pytest.approx(TEN_YEARS.total_seconds(), abs=1)
        assert ledger.verify().ok, "a skew is reported, not a broken log"


def test_a_clock_that_steps_back_is_logged_and_its_reading_kept(
    ledger_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        clock.now -= dt.timedelta(seconds=5)
        ledger.set_video_metadata(entry(status="ready"))
        first, second = ledger.history()
    assert second.ts == first.ts and second.clock == "2026-11-24T08:59:55.001000Z"
    assert "clock skew: this clock reads 2026-11-24T08:59:55.001000Z, 5.0 s before the log's last event" in (
        caplog.text
    )
    line = (ledger_dir / "events.jsonl").read_bytes().splitlines()[1]
    assert b'"prev":"' in line and b',"clock":"2026-11-24T08:59:55.001000Z",' in line


def test_the_cli_refuses_a_clock_far_ahead_in_one_line_and_forces_it_on_request(
    ledger_dir: Path, run_cli: Run
) -> None:
    """The last event is 40 days old by this host's clock: an idle ledger looks like a clock far ahead."""
    with Ledger(ledger_dir, clock=FakeClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=40))) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    before = files_state(ledger_dir)
    code, out, err = run_cli("fail", "colosseum", "rome-80ad", "boom")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "days after the log's last event (event 1 at" in err, err
    assert files_state(ledger_dir) == before
    code, out, err = run_cli("--force-clock", "fail", "colosseum", "rome-80ad", "boom")
    assert code == 0, err
    code, out, err = run_cli("set", "colosseum", "rome-80ad", "--status", "generating")
    assert code == 0, "forced once: the log's time is current again"
    code, out, err = run_cli("fail", "colosseum", "rome-80ad", "boom")
    assert (code, err) == (0, "")


def test_verify_and_stats_print_the_skew_they_see(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir, clock=FakeClock(START + dt.timedelta(hours=5))) as ledger:
        ledger.set_video_metadata(entry(status="generating"))  # a clock 5 hours ahead
    with Ledger(ledger_dir, clock=FakeClock(START)) as ledger:
        ledger.set_video_metadata(entry(status="ready"))
    code, out, _ = run_cli("verify")
    assert code == 0
    assert out.splitlines()[-1] == (
        "warning: clock skew: 1 event(s) recorded after their writer's clock read; the largest gap is 5.0 h "
        "at event 2 (its clock read 2026-11-24T09:00:00.000000Z, the log's time was "
        "2026-11-24T14:00:00.000000Z, set by event 1)"
    )
    code, out, _ = run_cli("stats")
    assert code == 0 and "clock skew: 1 event(s) recorded after their writer's clock read" in out
    code, out, _ = run_cli("stats", "--json")
    assert json.loads(out)["clockSkew"]["setBy"] == 1
    code, out, _ = run_cli("verify", "--json")  # the warning the text prints, as stats --json has it
    assert code == 0 and json.loads(out)["clockSkew"]["setBy"] == 1
