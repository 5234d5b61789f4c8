"""I/O faults on every file operation of an append and a projection, through the FileOps seam.

For each k, the k-th operation fails (once, or for good), with EIO, ENOSPC, EACCES or a short write. Each
time: a typed error or an acknowledged write, never a lost acknowledged event; the snapshot on disk is a
whole file; the log is clean or has only a torn tail; and a new Ledger works once the fault clears.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from ledger import DurabilityError, Ledger, LedgerClosedError, LedgerError, LedgerIOError, SnapshotUpdateError
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import FakeClock, entry, files_state
from .faults import SHORT, FaultyOps, temp_leftovers


def _ops_in_one_write(ledger_dir: Path) -> int:
    ops = FaultyOps()
    with Ledger(ledger_dir / "probe", ops=ops) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        ops.arm()
        ledger.set_video_metadata(entry(status="ready"))
        return len(ops.trace)


KINDS = [errno.EIO, errno.ENOSPC, errno.EACCES, SHORT]


@pytest.mark.parametrize("forever", [False, True], ids=["once", "forever"])
@pytest.mark.parametrize("kind", KINDS, ids=["EIO", "ENOSPC", "EACCES", "short"])
def test_a_fault_at_every_operation_of_a_write(tmp_path: Path, kind: int | str, forever: bool) -> None:
    total = _ops_in_one_write(tmp_path)
    assert total > 10
    for k in range(1, total + 1):
        directory = tmp_path / f"k{k}"
        clock = FakeClock()
        with Ledger(directory, clock=clock) as ledger:
            ledger.set_video_metadata(entry(status="generating"))  # acknowledged before the fault
        ops = FaultyOps(k, err=kind, forever=forever)
        faulty = Ledger(directory, clock=clock, ops=ops)
        ops.arm()
        acknowledged = recorded = False
        try:
            faulty.set_video_metadata(entry(status="ready"))
            acknowledged = recorded = True
        except SnapshotUpdateError:
            recorded = True  # in the log, fsynced; only the snapshot lags
        except LedgerIOError:
            pass
        if kind == SHORT and not ops.fired:
            continue  # no write at this k
        _check_after_fault(directory, clock, acknowledged, recorded, where=f"k={k} {ops.fired}")


def _check_after_fault(
    directory: Path, clock: FakeClock, acknowledged: bool, recorded: bool, where: str
) -> None:
    # The snapshot on disk is always a whole JSON array.
    json.loads((directory / "generated-videos.json").read_text())
    # The log is clean or has only a torn tail, and holds every acknowledged event.
    report = Ledger(directory, readonly=True).verify()
    assert report.problem is None or "snapshot" in report.problem, (where, report)
    statuses = [e.STATUS for e in Ledger(directory, readonly=True).history()]
    assert statuses[0] == "generating", where
    # Readers show what the fsynced-size record vouches for: when the fault also kept the writer from
    # updating (or removing) the record, the recorded event waits for the next writer's open, as the
    # writer's own reads (get) always did; no reader is ever shown a line that is not fsynced.
    assert statuses in (["generating"], ["generating", "ready"]), where
    Ledger(directory, clock=clock).close()  # the fault cleared: a writer's open settles the log
    statuses = [e.STATUS for e in Ledger(directory, readonly=True).history()]
    if recorded:
        assert statuses == ["generating", "ready"], where
    elif not acknowledged:
        assert statuses in (["generating"], ["generating", "ready"]), where
    # After the fault clears, a new Ledger works and brings everything up to date.
    with Ledger(directory, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="ready"))
        ledger.set_video_metadata(entry("another", "era", status="pending"))
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.torn is None, (where, report)
    assert temp_leftovers(directory) == [], where
    lines = (directory / "events.jsonl").read_bytes().splitlines()
    assert report.events == len(lines)


def test_fsync_failure_is_not_retried_and_leaves_no_trace_of_the_event(
    ledger_dir: Path, clock: FakeClock
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    before = files_state(ledger_dir)
    ops = FaultyOps(1, only=("fsync",))
    ledger = Ledger(ledger_dir, clock=clock, ops=ops)
    ops.arm()
    with pytest.raises(DurabilityError, match="fsync failed"):
        ledger.set_video_metadata(entry(status="ready"))
    assert ops.trace.count("fsync") == 1, "a failed fsync is never retried"
    assert files_state(ledger_dir) == before, "the unacknowledged line was cut back out"
    with pytest.raises(LedgerClosedError, match="fsync failed"):
        ledger.set_video_metadata(entry(status="ready"))
    # reads still work on the poisoned handle; a new handle writes
    assert ledger.get_video_metadata("colosseum", "rome-80ad").status == "generating"  # type: ignore[union-attr]
    with Ledger(ledger_dir, clock=clock) as fresh:
        assert fresh.set_video_metadata(entry(status="ready")).status == "ready"


def test_a_short_write_is_cut_back_before_the_error(ledger_dir: Path, clock: FakeClock) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    log_before = (ledger_dir / "events.jsonl").read_bytes()
    ops = FaultyOps(1, err=SHORT, only=("write",))
    ledger = Ledger(ledger_dir, clock=clock, ops=ops)
    ops.arm()
    with pytest.raises(LedgerIOError, match="short write"):
        ledger.set_video_metadata(entry(status="ready"))
    assert (ledger_dir / "events.jsonl").read_bytes() == log_before
    assert ledger.set_video_metadata(entry(status="ready")).status == "ready", "the handle carries on"


def test_a_failed_snapshot_rename_keeps_the_old_snapshot_and_says_the_event_was_recorded(
    ledger_dir: Path, clock: FakeClock
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    old_snapshot = (ledger_dir / "generated-videos.json").read_bytes()
    ops = FaultyOps(1, only=("replace",))
    ledger = Ledger(ledger_dir, clock=clock, ops=ops)
    ops.arm()
    with pytest.raises(SnapshotUpdateError, match="event 2 was recorded") as info:
        ledger.set_video_metadata(entry(status="ready"))
    assert info.value.seq == 2
    assert (ledger_dir / "generated-videos.json").read_bytes() == old_snapshot
    assert temp_leftovers(ledger_dir) == []
    # retrying the call records nothing more and brings the snapshot up to date
    assert ledger.set_video_metadata(entry(status="ready")).status == "ready"
    events = list(ledger.history())
    assert len(events) == 2
    assert (ledger_dir / "generated-videos.json").read_bytes() == encode_snapshot(fold(events))


def test_errors_during_cleanup_do_not_hide_the_first(ledger_dir: Path, clock: FakeClock) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    ops = FaultyOps(1, only=("replace", "unlink"), err=errno.ENOSPC, forever=True)
    ledger = Ledger(ledger_dir, clock=clock, ops=ops)
    ops.arm()
    with pytest.raises(SnapshotUpdateError, match="No space left") as info:
        ledger.set_video_metadata(entry(status="ready"))
    assert isinstance(info.value, LedgerError)
    assert ops.fired[:2] == ["replace", "unlink"]


def test_a_failed_directory_fsync_on_creation_is_reported(tmp_path: Path) -> None:
    ops = FaultyOps(2, only=("fsync",))  # the log file's fsync, then its directory's
    ops.arm()
    with pytest.raises(LedgerIOError, match="cannot create"):
        Ledger(tmp_path / "new", ops=ops)
    with Ledger(tmp_path / "new") as ledger:  # the fault cleared
        ledger.set_video_metadata(entry())
    assert Ledger(tmp_path / "new", readonly=True).verify().ok


EFBIG_CHILD = """
import os, resource, signal, sys
from ledger import Ledger, LedgerIOError, VideoMetadata
directory = sys.argv[1]
ledger = Ledger(directory)
size = os.path.getsize(os.path.join(directory, "events.jsonl"))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the kernel answers EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (size + int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    ledger.set_video_metadata(VideoMetadata(spot_id="big", era_id="e", prompt="x" * 5000, status="pending"))
    print("acknowledged")
except LedgerIOError as exc:
    print("refused", exc.errno, exc)
"""


@pytest.mark.parametrize("room", [0, 100], ids=["EFBIG", "short-write"])
def test_file_size_limit_in_a_child_process(ledger_dir: Path, room: int) -> None:
    import subprocess
    import sys

    from .conftest import ROOT

    with Ledger(ledger_dir) as ledger:  # on the real clock, as the child
        ledger.set_video_metadata(entry(status="generating"))
    log_before = (ledger_dir / "events.jsonl").read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(ledger_dir), str(room)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused"), result.stdout
    if room == 0:
        assert f"refused {errno.EFBIG} " in result.stdout
    else:
        assert "short write" in result.stdout
    assert (ledger_dir / "events.jsonl").read_bytes() == log_before, "cut back to the last whole event"
    with Ledger(ledger_dir) as ledger:  # the limit is gone: a new Ledger works
        ledger.set_video_metadata(entry("big", "e", status="pending", prompt="x" * 5000))
    assert Ledger(ledger_dir, readonly=True).verify().ok
