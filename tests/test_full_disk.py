"""A full disk is transient: `watch` backs off and retries, and every error says whether the event is in
the log. Faults come through the FileOps seam; everything else is real."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import InvalidEntryError, Ledger, LedgerIOError, SnapshotUpdateError
from ledger import watch as watch_view
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import FakeClock, entry
from .faults import FaultyOps
from .test_watch import checkpoint_seq, until

pytestmark = pytest.mark.timeout(60)


def test_an_inline_writer_records_while_the_snapshot_cannot_be_written(
    ledger_dir: Path, clock: FakeClock
) -> None:
    """The choice made: an inline writer may record while the snapshot is stale. Opening a ledger whose
    snapshot cannot be brought up to date logs a warning instead of failing, so the next `set` records its
    event and says so (SnapshotUpdateError), not a snapshot error as if nothing could be recorded."""
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    full = FaultyOps(1, only=("replace", "unlink"), err=errno.ENOSPC, forever=True)
    first = Ledger(ledger_dir, clock=clock, ops=full)
    full.arm()
    with pytest.raises(SnapshotUpdateError, match="event 2 was recorded"):
        first.set_video_metadata(entry(status="ready"))
    first.close()
    # the next writer (the next `video-ledger set`): the snapshot is behind and still cannot be written
    second = Ledger(ledger_dir, clock=clock, ops=full)
    with pytest.raises(SnapshotUpdateError, match="event 3 was recorded") as info:
        second.set_video_metadata(entry("acropolis", status="generating"))
    assert info.value.seq == 3
    assert [e.seq for e in second.history()] == [1, 2, 3]
    second.close()
    with Ledger(ledger_dir, clock=clock) as ledger:  # space again: the next handle catches up
        events = list(ledger.history())
    assert (ledger_dir / "generated-videos.json").read_bytes() == encode_snapshot(fold(events))


def test_an_append_that_fails_says_nothing_was_recorded(ledger_dir: Path, clock: FakeClock) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    ops = FaultyOps(1, only=("write", "pwrite"), err=errno.ENOSPC, forever=True)
    with Ledger(ledger_dir, clock=clock, ops=ops) as ledger:
        ops.arm()
        with pytest.raises(LedgerIOError, match="No space left on device; nothing was recorded") as info:
            ledger.set_video_metadata(entry(status="ready"))
        assert not isinstance(info.value, SnapshotUpdateError)
        assert info.value.errno == errno.ENOSPC
    assert [e.seq for e in Ledger(ledger_dir, readonly=True).history()] == [1]


def test_watch_survives_a_full_disk_and_catches_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "ledger"
    writer = Ledger(directory, projection="deferred")
    writer.set_video_metadata(entry("s0", "e", status="pending"))
    full = FaultyOps(1, only=("replace", "unlink"), err=errno.ENOSPC, forever=True)
    full.arm()
    stop = threading.Event()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(watch_view.watch(directory, stop_event=stop, step=5, idle_check_ms=50, ops=full))
        except BaseException as exc:
            outcome.append(exc)

    watch_view.RETRY_FIRST = 0.05  # the back-off's first step, short for the test
    thread = threading.Thread(target=run)
    with caplog.at_level(logging.WARNING, logger="ledger"):
        thread.start()
        for i in range(1, 4):
            writer.set_video_metadata(entry(f"s{i}", "e", status="pending"))
        until(lambda: len(full.fired) >= 6, what="several failed tries")
        assert thread.is_alive(), outcome  # it did not exit on the full disk
        assert checkpoint_seq(directory) == -1
        full.armed = False  # space again
        until(lambda: checkpoint_seq(directory) == 4, what="the watcher to catch up")
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert outcome == [1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("No space left on device" in w and "nothing recorded is lost; next try" in w for w in warnings)
    assert any("up to date again" in w for w in warnings)
    assert (directory / "generated-videos.json").read_bytes() == encode_snapshot(fold(writer.history()))


@pytest.fixture(autouse=True)
def _restore_back_off() -> object:
    first = getattr(watch_view, "RETRY_FIRST", 0.5)
    yield None
    watch_view.RETRY_FIRST = first


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: watch_view.watch(d, step=-5), "step must be between 1 and 3600000 ms, not -5"),
        (lambda d: watch_view.watch(d, debounce=-5), "debounce must be between 1 and 3600000 ms, not -5"),
        (lambda d: watch_view.wait_for_seq(d, 1, timeout=float("nan")), "timeout must be between 0 and"),
        (lambda d: watch_view.wait_for_seq(d, 1, timeout=-1), "timeout must be between 0 and"),
    ],
    ids=["step", "debounce", "nan-timeout", "negative-timeout"],
)
def test_the_library_refuses_numbers_out_of_range(
    tmp_path: Path, call: Callable[[Path], object], message: str
) -> None:
    with pytest.raises(InvalidEntryError, match=message):
        call(tmp_path)
