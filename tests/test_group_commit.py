"""Group commit across writer processes: writers that arrive while an fsync is in flight stage their lines,
and one of them moves them all into the log with one write and one fsync.

Real processes and real files; the only seam is the ledger's own FileOps (to count fsyncs, to slow one
down, or to make one fail), never a mock of the ledger.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger, LedgerIOError
from ledger.events import Pending, decode_event, encode_line, line_hash

from .conftest import ROOT, entry
from .faults import FaultyOps

# A writer process: opens the ledger, says "open", waits for a line on stdin, records one event, and
# prints how it ended and how many fsyncs it made. With "slow" its fsyncs take a second (printing
# "fsyncing" first); with "fail" they also fail.
WRITER = """
import errno, os, sys, time
from ledger import Ledger, LedgerError, VideoMetadata
from ledger.fileops import FileOps

directory, spot, mode = sys.argv[1], sys.argv[2], sys.argv[3]

class Ops(FileOps):
    fsyncs = 0
    armed = False
    def fsync(self, fd):
        if self.armed and mode in ("slow", "fail"):
            print("fsyncing", flush=True)
            time.sleep(1.0)
            if mode == "fail":
                raise OSError(errno.EIO, "injected")
        Ops.fsyncs += 1
        super().fsync(fd)
    def point(self, name):
        if self.armed and name == "staged.after_write":
            print("staged", flush=True)

ops = Ops()
ledger = Ledger(directory, projection="deferred", ops=ops)
print("open", flush=True)
sys.stdin.readline()
ops.armed, Ops.fsyncs = True, 0
try:
    ledger.set_video_metadata(VideoMetadata(spot_id=spot, era_id="e", prompt="p", status="pending"))
    print("ack", ledger.last_seq, Ops.fsyncs, flush=True)
except LedgerError as exc:
    print("error", type(exc).__name__, Ops.fsyncs, flush=True)
    if mode == "retry":  # the handle is still usable after another writer's failure
        ledger.set_video_metadata(VideoMetadata(spot_id=spot, era_id="e", prompt="p2", status="pending"))
        print("ack", ledger.last_seq, Ops.fsyncs, flush=True)
"""


def _writer(directory: Path, spot: str, mode: str = "plain") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), spot, mode], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "open"
    return proc


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def _finish(proc: subprocess.Popen[str]) -> list[str]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.split()


def test_writers_that_arrive_during_an_fsync_share_the_next_one(ledger_dir: Path) -> None:
    Ledger(ledger_dir).close()
    slow = _writer(ledger_dir, "slow", "slow")
    others = [_writer(ledger_dir, f"w{i}") for i in range(3)]
    _go(slow)
    assert _line(slow) == "fsyncing"  # it holds the sync lock for a second, its line written
    for proc in others:
        _go(proc)
    assert [_line(proc) for proc in others] == ["staged"] * 3  # each staged its line and waits
    assert _finish(slow)[:2] == ["ack", "1"]
    acks = [_finish(proc) for proc in others]
    assert all(a[0] == "ack" for a in acks), acks
    assert sorted(int(a[1]) for a in acks) == [2, 3, 4]
    assert sum(int(a[2]) for a in acks) == 1, f"one fsync for the three staged writers: {acks}"
    events = list(Ledger(ledger_dir, readonly=True).history())
    assert events[0].spot_id == "slow"
    assert sorted(e.spot_id for e in events[1:]) == ["w0", "w1", "w2"]  # in the order they staged
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is None, report
    assert (ledger_dir / "events.jsonl.staged").read_bytes() == b""


def test_readers_never_see_staged_lines(ledger_dir: Path) -> None:
    Ledger(ledger_dir).close()
    slow = _writer(ledger_dir, "slow", "slow")
    other = _writer(ledger_dir, "other")
    _go(slow)
    assert _line(slow) == "fsyncing"
    _go(other)
    assert _line(other) == "staged"
    # its line is only in the staging file, which no reader looks at
    assert b'"spotId":"other"' in (ledger_dir / "events.jsonl.staged").read_bytes()
    assert b'"spotId":"other"' not in (ledger_dir / "events.jsonl").read_bytes()
    # a reader waits for the slow fsync, and then sees what was fsynced by then: the slow line, and the
    # other one only if its leader's fsync came first
    seen = [e.spot_id for e in Ledger(ledger_dir, readonly=True).get_all_video_metadata()]
    assert seen in (["slow"], ["other", "slow"])
    assert _finish(slow)[0] == "ack" and _finish(other)[0] == "ack"
    after = Ledger(ledger_dir, readonly=True).get_all_video_metadata()
    assert [e.spot_id for e in after] == ["other", "slow"]


def test_a_failed_fsync_drops_the_lines_staged_after_it_and_tells_their_writers(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("before", "e", status="pending"))
    failing = _writer(ledger_dir, "failing", "fail")
    other = _writer(ledger_dir, "other", "retry")
    _go(failing)
    assert _line(failing) == "fsyncing"
    _go(other)
    assert _line(other) == "staged"  # chained on the failing writer's line, which is written, not fsynced
    assert _finish(failing) == ["error", "DurabilityError", "0"]
    said = _finish(other)
    assert said[:2] == ["error", "LedgerIOError"], "told: not recorded (and its handle is not poisoned)"
    assert said[3:5] == ["ack", "2"], said
    events = list(Ledger(ledger_dir, readonly=True).history())
    assert [e.spot_id for e in events] == ["before", "other"]
    assert getattr(events[1], "prompt", None) == "p2", "the retried event, not the dropped one"
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is None, report


def _staged_line(directory: Path, spot: str) -> bytes:
    """The line a writer would stage next: it continues the log's seq and chain."""
    last = (directory / "events.jsonl").read_bytes().splitlines()[-1]
    event = decode_event(last)
    return encode_line(Pending(1, event.seq + 1, event.ts, spot, "e", line_hash(last), prompt="p"))


def test_lines_left_staged_by_a_writer_that_died_are_recorded_by_the_next_leader(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("first", "e", status="pending"))
    (ledger_dir / "events.jsonl.staged").write_bytes(_staged_line(ledger_dir, "orphan"))
    with Ledger(ledger_dir) as ledger:
        assert ledger.get_video_metadata("orphan", "e") is not None
        ledger.set_video_metadata(entry("next", "e", status="pending"))
    assert [e.spot_id for e in Ledger(ledger_dir, readonly=True).history()] == ["first", "orphan", "next"]
    assert (ledger_dir / "events.jsonl.staged").read_bytes() == b""


@pytest.mark.parametrize(
    "junk",
    [b'{"type":"pending","v":1,"se', b"\0" * 300, b"garbage\n"],
    ids=["torn by a writer that died", "zeros after a power loss", "not an event"],
)
def test_staged_bytes_that_do_not_continue_the_log_are_dropped_with_a_warning(
    ledger_dir: Path, junk: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("first", "e", status="pending"))
    log_before = (ledger_dir / "events.jsonl").read_bytes()
    good = _staged_line(ledger_dir, "good")
    (ledger_dir / "events.jsonl.staged").write_bytes(good + junk)
    with caplog.at_level(logging.WARNING, logger="ledger"), Ledger(ledger_dir) as ledger:
        assert [e.spot_id for e in ledger.get_all_video_metadata()] == ["first", "good"]
    assert "dropped" in caplog.text
    assert (ledger_dir / "events.jsonl").read_bytes() == log_before + good
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is None, report


def test_staged_lines_already_moved_by_a_leader_that_died_are_not_recorded_twice(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("first", "e", status="pending"))
    line = _staged_line(ledger_dir, "moved")
    with (ledger_dir / "events.jsonl").open("ab") as f:
        f.write(line)  # the leader wrote it to the log, then died before emptying the staging file
    (ledger_dir / "events.jsonl.staged").write_bytes(line)
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("next", "e", status="pending"))
    assert [e.spot_id for e in Ledger(ledger_dir, readonly=True).history()] == ["first", "moved", "next"]


def test_a_stale_fsync_record_never_stands_in_for_an_fsync(ledger_dir: Path) -> None:
    """The record of how far the log is fsynced is only a hint between live writers: every writer that
    opens the ledger fsyncs and records afresh, so a record that survived a crash (or came with a copied
    directory) cannot make a writer skip its fsync."""
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("a", "e", status="pending"))
    ops = FaultyOps()  # only traces here
    Ledger(ledger_dir, ops=ops).close()  # the record says the whole log is fsynced; opening fsyncs anyway
    assert "fsync" in ops.trace
    record = (ledger_dir / "events.jsonl.sync.lock").read_bytes()
    (ledger_dir / "events.jsonl.sync.lock").write_bytes(b"\xff" * len(record))  # damaged: ignored
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("b", "e", status="pending"))
    assert (ledger_dir / "events.jsonl.sync.lock").read_bytes() != b"\xff" * len(record)
    (ledger_dir / "events.jsonl.sync.lock").unlink()
    (ledger_dir / "events.jsonl.sync.lock").mkdir()
    with pytest.raises(LedgerIOError):  # a directory where the record should be: a clear error
        Ledger(ledger_dir)


def test_a_change_checked_against_a_line_that_was_then_dropped_is_checked_again(ledger_dir: Path) -> None:
    Ledger(ledger_dir).close()
    failing = _writer(ledger_dir, "x", "fail")
    other = _writer(ledger_dir, "x")  # asks for the very state the failing writer is recording
    _go(failing)
    assert _line(failing) == "fsyncing"
    _go(other)  # against the failing writer's line its change is a no-op: it writes nothing and waits
    assert _finish(failing) == ["error", "DurabilityError", "0"]
    said = _finish(other)
    assert said[:2] == ["ack", "1"], f"after the drop, its change is checked again and recorded: {said}"
    assert [(e.spot_id, e.type) for e in Ledger(ledger_dir, readonly=True).history()] == [("x", "pending")]


# A writer of its own entry, forever: generating, ready, generating, ... printing each try and each ack.
CYCLING_WRITER = """
import sys
from ledger import Ledger, VideoMetadata
directory, spot = sys.argv[1], sys.argv[2]
ledger = Ledger(directory, projection="deferred")
for i in range(100_000):
    status = ("generating", "ready")[i % 2]
    print("try", status, flush=True)
    ledger.set_video_metadata(VideoMetadata(spot_id=spot, era_id="e", prompt="p", status=status,
                                            local_path="v.mp4" if status == "ready" else None))
    print("ack", ledger.last_seq, status, flush=True)
"""


def test_concurrent_writers_killed_at_random_moments(tmp_path: Path, long_run: bool) -> None:
    """Several writers share fsyncs on one ledger and are SIGKILLed at random moments (while staging,
    leading, writing, fsyncing or waiting); after each round every acknowledged event is where its writer
    was told, each writer's events are its tries in order (plus at most the one in flight), and the log
    verifies."""
    import random
    import time

    from .conftest import Tally

    rounds = 200 if long_run else 4
    rng = random.Random("group-kills")
    tally = Tally("group commit kills")
    directory = tmp_path / "ledger"
    Ledger(directory).close()
    for r in range(rounds):
        spots = [f"r{r}w{w}" for w in range(rng.randint(2, 5))]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CYCLING_WRITER, str(directory), spot],
                cwd=ROOT,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for spot in spots
        ]
        deadline = time.monotonic() + rng.uniform(0.3, 0.8)
        for proc in rng.sample(procs, len(procs)):  # killed one by one, at random moments
            time.sleep(max(0.0, rng.uniform(0, deadline - time.monotonic())))
            proc.kill()
        ends = [proc.communicate(timeout=30) for proc in procs]
        for proc, (_, err) in zip(procs, ends, strict=True):
            assert proc.returncode == -signal.SIGKILL, f"a writer stopped by itself: {err}"
        outputs = [out.split("\n")[:-1] for out, _ in ends]
        events = list(Ledger(directory, readonly=True).history())
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        for spot, said in zip(spots, outputs, strict=True):
            tried = [line.split()[1] for line in said if line.startswith("try")]
            acked = [line.split()[1:] for line in said if line.startswith("ack")]
            mine = [e for e in events if e.spot_id == spot]
            for seq, status in acked:
                event = events[int(seq) - 1]
                assert (event.spot_id, event.type) == (spot, status), f"{spot}: acknowledged event {seq} lost"
            assert [e.type for e in mine] == tried[: len(mine)], f"{spot}: its tries, in order"
            assert len(acked) <= len(mine) <= len(acked) + 1, f"{spot}: at most the one in flight more"
            tally.add("acknowledged events checked", len(acked))
        tally.add("writers killed", len(procs))
        with Ledger(directory) as recovery:  # a writer opening it moves or drops what was left staged
            assert recovery.verify().ok
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.torn is None, report
    tally.report()
