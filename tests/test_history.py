"""One event filter for ``history`` and ``follow``: the same filters, ids compared in NFC."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.retry import RetryPolicy

from .conftest import PYTHON, ROOT, FakeClock, entry, recent_clock

pytestmark = pytest.mark.timeout(120)


NFC = "caf\u00e9"
DECOMPOSED = unicodedata.normalize("NFD", NFC)
assert NFC != DECOMPOSED


def _story(ledger: Ledger) -> None:
    """Events of every type for two entries, one of them with an id not in ASCII."""
    ledger.set_video_metadata(entry(NFC, "era", status="pending"))
    ledger.set_video_metadata(entry("other", "era", status="generating"))
    ledger.set_video_metadata(entry(NFC, "era", status="generating"))
    ledger.set_video_metadata(entry(NFC, "era", status="failed"))
    ledger.set_video_metadata(entry("other", "era", status="ready"))
    ledger.set_video_metadata(entry(NFC, "era", status="generating"))
    ledger.set_video_metadata(entry(NFC, "era", status="ready"))
    ledger.import_entries(
        b'[{"spotId":"imp","eraId":"era","prompt":"p","status":"pending","createdAt":"2026-01-01T00:00:00Z"}]'
    )


def _followed(ledger: Ledger, *ids: str, **filters: Any) -> list[int]:
    """The seqs ``follow`` yields up to the end of the log, with these ids and filters."""
    stop = threading.Event()
    filters.setdefault("since_seq", 0)  # from the start: the events already in the log
    return [
        event.seq
        for _, event in ledger.follow(*ids, stop_event=stop, on_caught_up=lambda seq: stop.set(), **filters)
    ]


FILTERS: list[dict[str, Any]] = [
    {},
    {"since_seq": 3},
    {"since": "2026-11-24T09:00:00.003Z"},
    {"until": "2026-11-24T09:00:00.004Z"},
    {"since": "2026-11-24T09:00:00.002Z", "until": "2026-11-24T09:00:00.005Z"},
    {"status": "generating"},
    {"type": "failed"},
    {"type": "imported"},
    {"since_seq": 2, "status": "ready", "until": "2026-11-24T09:00:01Z"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
@pytest.mark.parametrize("ids", [(), (DECOMPOSED, "era"), (NFC, "era"), ("other", "era")], ids=repr)
def test_follow_takes_every_filter_history_takes_and_finds_the_same_events(
    ledger_dir: Path, ids: tuple[str, ...], filters: dict[str, Any]
) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        _story(ledger)
        expected = [e.seq for e in ledger.history(*ids, **{"since_seq": 0, **filters})]
        assert _followed(ledger, *ids, **filters) == expected


def test_an_id_given_decomposed_finds_the_entry_stored_in_nfc(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        _story(ledger)
        mine = [e.seq for e in ledger.history(NFC, "era")]
        assert mine == [1, 3, 4, 6, 7]
        assert [e.seq for e in ledger.history(DECOMPOSED, "era")] == mine
        assert _followed(ledger, DECOMPOSED, "era") == mine
        assert _followed(ledger, DECOMPOSED, "era", type="failed") == [4]


def test_follow_filters_the_events_appended_while_it_waits(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        ledger.set_video_metadata(entry(NFC, "era", status="pending"))
        stop, caught_up = threading.Event(), threading.Event()
        seen: list[int] = []

        def consume() -> None:
            for _, event in ledger.follow(
                DECOMPOSED,
                "era",
                status="generating",
                stop_event=stop,
                on_caught_up=lambda _: caught_up.set(),
            ):
                seen.append(event.seq)
                stop.set()

        reader = threading.Thread(target=consume)
        reader.start()
        assert caught_up.wait(10)
        ledger.set_video_metadata(entry("other", "era", status="generating"))  # another entry: not shown
        ledger.set_video_metadata(entry(NFC, "era", status="generating"))
        reader.join(10)
        stop.set()
        assert not reader.is_alive()
        assert seen == [3]


def test_the_cli_follow_finds_an_nfc_id_given_decomposed(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        _story(ledger)
        mine = [e.seq for e in ledger.history(NFC, "era", status="generating")]
    argv = ["--dir", str(ledger_dir), "history", DECOMPOSED, "era", "--status", "generating"]
    proc = subprocess.Popen(
        [PYTHON, "-m", "ledger", *argv, "--since-seq", "0", "--follow", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "caught up at event 8" in line, line
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [json.loads(text)["seq"] for text in out.splitlines()] == mine == [3, 6]


def test_history_follow_combines_with_the_filters(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    writer = Ledger(directory)
    writer.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
    argv = ["--dir", str(directory), "history", "s", "e", "--follow", "--type", "failed", "--json"]
    with subprocess.Popen(
        [sys.executable, "-m", "ledger", *argv],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as follower:  # fmt: skip
        assert follower.stdout is not None and follower.stderr is not None
        assert "caught up at event 1" in follower.stderr.readline()
        writer.mark_video_failed("s", "e", "boom")  # 2: shown
        writer.set_video_metadata({"spotId": "t", "eraId": "e", "prompt": "p", "status": "generating"})
        writer.mark_video_failed("t", "e", "other entry")  # 4: another entry
        writer.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
        writer.mark_video_failed("s", "e", "again")  # 6: shown
        got = [json.loads(follower.stdout.readline()) for _ in range(2)]
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=20)
    assert follower.returncode == 0
    assert [(e["seq"], e["error"]) for e in got] == [(2, "boom"), (6, "again")]


def test_history_follow_finds_an_id_given_in_another_unicode_form_as_history_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``history`` and ``history --follow`` are one filter: an id typed decomposed (``cafe`` and a
    combining accent) finds the entry stored in NFC (``café``) both ways, and no other entry's events."""
    directory = tmp_path / "ledger"
    writer = Ledger(directory)
    writer.set_video_metadata({"spotId": "caf\u00e9", "eraId": "e", "prompt": "p", "status": "generating"})
    writer.set_video_metadata({"spotId": "cafe", "eraId": "e", "prompt": "p", "status": "generating"})
    writer.mark_video_failed("caf\u00e9", "e", "boom")
    typed = ["history", "cafe\u0301", "e", "--since-seq", "0", "--json"]
    assert main(["--dir", str(directory), *typed]) == 0
    printed = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert printed == [1, 3]
    with subprocess.Popen(
        [sys.executable, "-m", "ledger", "--dir", str(directory), *typed, "--follow"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as follower:  # fmt: skip
        assert follower.stdout is not None and follower.stderr is not None
        assert "caught up at event 3" in follower.stderr.readline()
        writer.mark_video_failed("cafe", "e", "another entry")  # 4: not shown
        writer.set_video_metadata(
            {"spotId": "caf\u00e9", "eraId": "e", "prompt": "p", "status": "generating"}
        )
        data, deadline = b"", time.monotonic() + 30  # three lines, or the follower missed one
        while data.count(b"\n") < 3 and time.monotonic() < deadline:
            if select.select([follower.stdout], [], [], 1)[0]:
                data += os.read(follower.stdout.fileno(), 65536) or b"\n\n\n"
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=20)
    assert follower.returncode == 0
    assert [json.loads(line)["seq"] for line in data.splitlines() if line] == [1, 3, 5]


LASTS = [None, 1, 2, 100]


def _forward(ledger: Ledger, ids: tuple[str, ...], filters: dict[str, Any]) -> list[int]:
    return [event.seq for event in ledger.history(*ids, **filters)]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
@pytest.mark.parametrize("ids", [(), (DECOMPOSED, "era"), ("other", "era")], ids=repr)
def test_last_and_reverse_take_every_filter_and_agree_with_the_whole_history(
    ledger_dir: Path, ids: tuple[str, ...], filters: dict[str, Any]
) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        _story(ledger)
        whole = _forward(ledger, ids, filters)
        for last in LASTS:
            tail = whole if last is None else whole[-last:]
            assert [e.seq for e in ledger.history(*ids, last=last, **filters)] == tail
            assert [e.seq for e in ledger.history(*ids, last=last, reverse=True, **filters)] == tail[::-1]


def test_last_and_reverse_over_postgresql_read_newest_first(pg_url: str, ledger_dir: Path) -> None:
    """The same answers over PostgreSQL (``ORDER BY seq DESC``; one entry's through the index by entry)."""
    from ledger.postgres import init

    init(pg_url)
    with Ledger(ledger_dir, store=pg_url, clock=FakeClock()) as ledger:
        _story(ledger)
        for ids in [(), (DECOMPOSED, "era")]:
            for filters in FILTERS:
                whole = _forward(ledger, ids, filters)
                assert [e.seq for e in ledger.history(*ids, last=2, **filters)] == whole[-2:]
                assert [e.seq for e in ledger.history(*ids, reverse=True, **filters)] == whole[::-1]


def test_history_last_stops_reading_where_it_has_what_it_needs(ledger_dir: Path) -> None:
    """``--last``/``--reverse`` read from the end and no further than needed: a damaged line near the start
    of the log is never met by the last events nor by a time range after it, and is named by a whole
    reverse read (which reaches it)."""
    from ledger.errors import CorruptLogError

    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        _story(ledger)
    log = ledger_dir / "events.jsonl"
    data = bytearray(log.read_bytes())
    data[data.index(b"\n") + 20] ^= 1  # line 2
    log.write_bytes(bytes(data))
    with Ledger(ledger_dir, readonly=True) as ledger:
        assert [e.seq for e in ledger.history(last=3)] == [6, 7, 8]
        assert [e.seq for e in ledger.history(NFC, "era", last=1)] == [7]
        assert [e.seq for e in ledger.history(since_seq=4, reverse=True)] == [8, 7, 6, 5]
        with pytest.raises(CorruptLogError) as caught:
            list(ledger.history(reverse=True))
        assert caught.value.line == 2


def test_history_last_refuses_a_negative_count(ledger_dir: Path) -> None:
    from ledger.errors import InvalidEntryError

    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        _story(ledger)
        with pytest.raises(InvalidEntryError, match="last must be 0 or more"):
            list(ledger.history(last=-1))
        assert list(ledger.history(last=0)) == []


def test_the_cli_history_last_and_reverse_print_lines_as_stored(
    ledger_dir: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        _story(ledger)
    stored = (ledger_dir / "events.jsonl").read_text().splitlines()
    code, out, _ = run_cli("history", "--last", "2", "--json")
    assert code == 0 and out.splitlines() == stored[-2:]
    code, out, _ = run_cli("history", "--reverse", "--json", "--type", "generating")
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [6, 3, 2]
    assert out.splitlines() == [stored[5], stored[2], stored[1]]
    code, out, _ = run_cli("history", DECOMPOSED, "era", "--last", "1", "--csv")
    assert code == 0 and out.splitlines()[0].startswith("seq,") and out.splitlines()[1].startswith("7,")
    code, out, _ = run_cli("history", "--last", "2")
    assert code == 0 and [row.split()[0] for row in out.splitlines()] == ["seq", "7", "8"]
    code, _, err = run_cli("history", "--last", "0")
    assert code == 2 and "--last" in err
    code, _, err = run_cli("history", "--last", "1", "--follow")
    assert code == 2 and "not with --last or --reverse" in err


def test_a_status_filter_passes_no_policy_event(tmp_path: Path) -> None:
    """A policy event belongs to no entry, so no entry's status filter lets it through (its placeholder
    status is never an entry's); a type filter still finds it."""
    with Ledger(tmp_path) as ledger:
        ledger.set_retry_policy(RetryPolicy(max_attempts=3, backoff=30.0))
        ledger.set_video_metadata(entry("s", "e", "pending"))
        assert [e.type for e in ledger.history(status="pending")] == ["pending"]
        assert [e.type for e in ledger.history(type="policy")] == ["policy"]
