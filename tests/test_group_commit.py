"""Group commit across writer processes: writers that arrive while an fsync is in flight stage their lines,
and one of them moves them all into the log with one write and one fsync.

Real processes and real files; the only seam is the ledger's own FileOps (to count fsyncs, to slow one
down, or to make one fail), never a mock of the ledger.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
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


class Points(FaultyOps):
    """Traces operations (:class:`FaultyOps`, never armed) and the named points reached; with ``slow``,
    every fsync takes that many seconds longer (a disk whose flush takes milliseconds)."""

    def __init__(self, slow: float = 0.0) -> None:
        super().__init__()
        self.points: list[str] = []
        self.slow = slow

    def point(self, name: str) -> None:
        self.points.append(name)

    def fsync(self, fd: int) -> None:
        time.sleep(self.slow)
        super().fsync(fd)


def _fsync_in_flight(directory: Path) -> int:
    """Hold the sync lock as a leader between its write and its fsync does; close the result to let go."""
    fd = os.open(directory / "events.jsonl.sync.lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _commit_in_thread(ledger: Ledger, spot: str, directory: Path, staged_before: int) -> threading.Thread:
    """Start ``ledger`` recording an entry in a thread; return once its line is staged (past
    ``staged_before`` bytes)."""
    thread = threading.Thread(target=ledger.set_video_metadata, args=(entry(spot, "e", status="pending"),))
    thread.start()
    deadline = time.monotonic() + 30
    while (directory / "events.jsonl.staged").stat().st_size <= staged_before:
        assert thread.is_alive() and time.monotonic() < deadline, "the writer did not stage"
        time.sleep(0.005)
    return thread


def test_a_writer_waiting_for_another_leader_opens_no_file_per_commit(ledger_dir: Path) -> None:
    """A writer that staged and then leads for what is staged reads the log through a descriptor it keeps
    open: after its first commit, no commit of it opens a file."""
    ops = Points()
    with Ledger(ledger_dir, projection="deferred", ops=ops) as ledger:
        ledger.set_video_metadata(entry("first", "e", status="pending"))
        for n in range(3):
            fd = _fsync_in_flight(ledger_dir)
            ops.trace = []
            thread = _commit_in_thread(ledger, f"w{n}", ledger_dir, 0)
            os.close(fd)  # the leader lets go without having fsynced the staged line: the writer leads
            thread.join(30)
            assert "fsync" in ops.trace and "staged.after_write" in ops.points
            if n:
                assert ops.trace.count("open") == 0, ops.trace
    spots = [e.spot_id for e in Ledger(ledger_dir, readonly=True).history()]
    assert spots == ["first", "w0", "w1", "w2"]
    assert (ledger_dir / "events.jsonl.staged").read_bytes() == b""


def test_a_writer_whose_line_a_dead_leader_moved_is_told_it_is_recorded(ledger_dir: Path) -> None:
    """A leader wrote a waiting writer's staged line to the log and died before its fsync (and before
    emptying the staging file): the waiter leads, fsyncs the line where it is, and is told it is recorded."""
    with Ledger(ledger_dir, projection="deferred") as ledger:
        ledger.set_video_metadata(entry("first", "e", status="pending"))
        fd = _fsync_in_flight(ledger_dir)
        outcome: list[object] = []

        def commit() -> None:
            try:
                outcome.append(ledger.set_video_metadata(entry("moved", "e", status="pending")))
            except Exception as exc:  # reported below
                outcome.append(exc)

        thread = threading.Thread(target=commit)
        thread.start()
        deadline = time.monotonic() + 30
        while not (ledger_dir / "events.jsonl.staged").stat().st_size:
            assert time.monotonic() < deadline, "the writer did not stage"
            time.sleep(0.005)
        with (ledger_dir / "events.jsonl").open("ab") as log:  # the leader's write, then it died
            log.write((ledger_dir / "events.jsonl.staged").read_bytes())
        os.close(fd)
        thread.join(30)
        assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
    assert [e.spot_id for e in Ledger(ledger_dir, readonly=True).history()] == ["first", "moved"]


def test_writers_that_shared_an_fsync_stage_their_next_lines_and_a_lone_writer_never_does(
    ledger_dir: Path,
) -> None:
    """On a disk whose fsync takes milliseconds, writers come back together once an fsync they shared
    returns: each stages its next lines even with no fsync in flight, so that the first back does not fsync
    alone while the rest stage behind it (one of them leads for all after a pause). A writer alone writes
    its lines itself."""
    lone = Points(slow=0.002)
    with Ledger(ledger_dir, projection="deferred", ops=lone) as ledger:
        lone.trace = []
        for n in range(3):
            ledger.set_video_metadata(entry(f"lone{n}", "e", status="pending"))
        assert "staged.after_write" not in lone.points
        assert lone.trace.count("fsync") == 3  # one per commit
    ops_a, ops_b = Points(slow=0.002), Points(slow=0.002)
    a = Ledger(ledger_dir, projection="deferred", ops=ops_a)
    b = Ledger(ledger_dir, projection="deferred", ops=ops_b)
    ops_a.trace, ops_b.trace = [], []  # opening fsyncs: not counted
    fd = _fsync_in_flight(ledger_dir)
    first = _commit_in_thread(a, "a0", ledger_dir, 0)
    second = _commit_in_thread(b, "b0", ledger_dir, (ledger_dir / "events.jsonl.staged").stat().st_size)
    os.close(fd)
    first.join(30)
    second.join(30)  # one of them led for both: one fsync carried two writers' lines
    assert ops_a.trace.count("fsync") + ops_b.trace.count("fsync") == 1
    ops_b.points, ops_b.trace = [], []
    b.set_video_metadata(entry("b1", "e", status="pending"))  # nothing in flight, and yet it stages
    assert "staged.after_write" in ops_b.points
    assert ops_b.trace.count("fsync") == 1  # and then leads for what is staged
    a.close()
    b.close()
    spots = [e.spot_id for e in Ledger(ledger_dir, readonly=True).history()]
    assert spots[:3] == ["lone0", "lone1", "lone2"] and sorted(spots[3:5]) == ["a0", "b0"]
    assert spots[5:] == ["b1"]
    assert (ledger_dir / "events.jsonl.staged").read_bytes() == b""
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is None, report


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
