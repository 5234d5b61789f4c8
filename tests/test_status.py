"""``video-ledger status`` (ledger/health.py): the health figures, the exit code a monitor reads, and that it
reads no more than the log after the checkpoint and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import NoLedgerError
from ledger.health import status

from .conftest import PYTHON, ROOT, Run, entry, recent_clock


def _stat_all(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_a_current_ledger_is_healthy_and_says_its_figures(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one", "pending"))
        ledger.set_video_metadata(entry("b", "one"))
        ledger.set_video_metadata(entry("c", "one"))
        ledger.set_video_metadata(entry("c", "one", "ready"))
        head = ledger.head()
    before = _stat_all(ledger_dir)
    code, out, _ = run_cli("status", "--json")
    found = json.loads(out)
    assert code == 0 and found["healthy"] and found["problems"] == []
    assert (found["headSeq"], found["snapshotSeq"], found["lagEvents"]) == (head.seq, 4, 0)
    assert found["byStatus"] == {"pending": 1, "generating": 1, "ready": 1, "failed": 0}
    assert (found["entries"], found["liveAttempts"], found["watcher"]) == (3, 1, False)
    assert found["headTime"] == head.ts and found["lastEventAgeSeconds"] > 0
    code, out, _ = run_cli("status")
    assert code == 0 and out.startswith(f"healthy: head 4 at {head.ts}\n")
    assert _stat_all(ledger_dir) == before  # nothing created or written


def test_a_snapshot_left_behind_is_a_problem_once_it_waits_too_long(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
    with Ledger(ledger_dir, projection="deferred") as deferred:  # appends; no watch projects them
        deferred.set_video_metadata(entry("a", "one", "ready"))
        deferred.set_video_metadata(entry("b", "one", "pending"))
    soon = status(ledger_dir)
    assert soon.healthy and (soon.lag_events, soon.snapshot_seq, soon.head_seq) == (2, 1, 3)
    assert soon.by_status == {"pending": 1, "generating": 0, "ready": 1, "failed": 0}  # as the log has them
    later = status(ledger_dir, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    assert not later.healthy and later.lag_seconds >= 300
    assert "2 events behind the log" in later.problems[0]
    code, out, _ = run_cli("status", "--max-lag", "0")
    assert code == 1 and "problem: the app's file is 2 events behind the log" in out


def test_it_reads_only_the_log_after_the_checkpoint(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_many(entry(f"s{i}", "era", "pending") for i in range(50))
        ledger.set_video_metadata(entry("s1", "era"))
    log = ledger_dir / "events.jsonl"
    data = bytearray(log.read_bytes())
    data[40] ^= 0x01  # damage in the first line, long since in the snapshot: verify would fail here
    log.write_bytes(bytes(data))
    found = status(ledger_dir)
    assert found.healthy and found.head_seq == 51 and found.entries == 50
    assert found.by_status["generating"] == 1


def test_a_running_watch_is_seen(ledger_dir: Path) -> None:
    Ledger(ledger_dir).close()
    watcher = subprocess.Popen(
        [PYTHON, "-m", "ledger", "--dir", str(ledger_dir), "watch"], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not status(ledger_dir).watcher:
            assert time.monotonic() < deadline, "status never saw the watch"
            time.sleep(0.05)
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
    assert not status(ledger_dir).watcher  # its lock went with it


def test_a_checkpoint_the_log_does_not_hold_is_a_problem(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
    checkpoint = ledger_dir / "checkpoint.json"
    forged = json.loads(checkpoint.read_text())
    forged["lastHash"] = "0" * 64
    checkpoint.write_text(json.dumps(forged))
    code, out, _ = run_cli("status")
    assert code == 1 and "which the log does not hold as it says" in out


def test_no_ledger_is_said_and_nothing_is_made(tmp_path: Path, run_cli: Run) -> None:
    with pytest.raises(NoLedgerError):
        status(tmp_path / "none")
    code, _, err = run_cli("status")
    assert code == 1 and "no ledger" in err and err.count("\n") == 1
    assert not (tmp_path / "ledger").exists()


def test_status_over_postgresql(pg_url: str, ledger_dir: Path) -> None:
    from ledger.postgres import init

    init(pg_url)
    with Ledger(ledger_dir, store=pg_url, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
        ledger.set_video_metadata(entry("a", "one", "ready"))
    found = status(ledger_dir, store=pg_url)
    assert found.healthy and (found.head_seq, found.snapshot_seq, found.lag_events) == (2, 2, 0)
    assert found.by_status["ready"] == 1


def test_verify_says_how_far_the_app_file_lags(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
    assert "lag:" not in run_cli("verify")[1]
    assert json.loads(run_cli("verify", "--json")[1])["snapshotLag"] == 0
    with Ledger(ledger_dir, projection="deferred") as deferred:
        deferred.set_video_metadata(entry("a", "one", "ready"))
    code, out, _ = run_cli("verify")
    assert code == 0 and "lag: the app's file is 1 event behind the log" in out
    assert json.loads(run_cli("verify", "--json")[1])["snapshotLag"] == 1


def _forge(ledger_dir: Path, snapshot: bytes) -> None:
    """A snapshot and a checkpoint written by hand to agree (the checkpoint is a checksum, not a seal)."""
    import zlib

    (ledger_dir / "generated-videos.json").write_bytes(snapshot)
    checkpoint = ledger_dir / "checkpoint.json"
    fields = json.loads(checkpoint.read_text())
    fields["snapshotSize"], fields["snapshotCrc32"] = len(snapshot), f"{zlib.crc32(snapshot):08x}"
    checkpoint.write_text(json.dumps(fields))


@pytest.mark.parametrize(
    "forged",
    [
        b'[{"spotId":"x","eraId":"y","status":"bogus"}]',
        b'[{"spotId":"x","eraId":"y","status":"ready"},{"spotId":1}]',
    ],
)
def test_a_snapshot_forged_with_its_checkpoint_is_a_problem_not_a_crash(
    ledger_dir: Path, run_cli: Run, forged: bytes
) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
    _forge(ledger_dir, forged)
    code, out, err = run_cli("status")
    assert code == 1 and "is not the one its checkpoint names" in out and err == ""


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_snapshot_that_is_no_regular_file_is_a_problem_at_once(ledger_dir: Path, kind: str) -> None:
    import os

    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
    snapshot = ledger_dir / "generated-videos.json"
    snapshot.unlink()
    if kind == "fifo":
        os.mkfifo(snapshot)
    else:
        snapshot.symlink_to("/dev/zero")
    began = time.monotonic()
    found = status(ledger_dir)
    assert time.monotonic() - began < 10
    assert not found.healthy and "cannot be read" in found.problems[0]


def test_without_a_checkpoint_the_lag_is_the_whole_log_and_said_plainly(tmp_path: Path, run_cli: Run) -> None:
    from ledger.copy import copy_ledger

    source = tmp_path / "source"
    with Ledger(source, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
        ledger.set_video_metadata(entry("b", "one"))
    copy_ledger(source, tmp_path / "ledger")  # a copy holds the log only
    found = status(tmp_path / "ledger")
    assert (found.snapshot_seq, found.lag_events) == (None, 2) and found.lag_seconds > 3600
    code, out, _ = run_cli("status")
    assert code == 1 and "app's file: no checkpoint yet, 2 events behind" in out and "None" not in out
