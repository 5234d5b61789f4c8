"""What is known fsynced: the record in ``events.jsonl.sync.lock`` says how far the log was fsynced.

A crash can only tear bytes beyond it; damage before it is corruption (verify fails naming the line, writers
refuse and move nothing). Readers and projectors take in only what it vouches for: lines a writer that died
between its write and its fsync left in the log wait for the next writer, which fsyncs them.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ledger import CorruptLogError, EntryNotFoundError, Ledger
from ledger.cli import main
from ledger.events import check_line
from ledger.fileops import FileOps
from ledger.projector import read_checkpoint
from ledger.syncstate import decode_record
from ledger.watch import follow, watch

from .conftest import ROOT, entry, files_state
from .faults import FaultyOps

DEFERRED_CHILD = """
import sys
from ledger import Ledger, VideoMetadata
from tests.faults import KillAt
ledger = Ledger(sys.argv[1], projection="deferred", ops=KillAt("log.after_write", int(sys.argv[2])))
for i in range(10):
    ledger.set_video_metadata(VideoMetadata(spot_id=f"s{i}", era_id="e", prompt="p", status="pending"))
    print("ack", ledger.last_seq, flush=True)
"""


def _deferred_writer_killed_before_its_fsync(directory: Path, acked: int) -> None:
    """A deferred writer that records ``acked`` events, writes the next one and is SIGKILLed before its
    fsync."""
    proc = subprocess.run(
        [sys.executable, "-c", DEFERRED_CHILD, str(directory), str(acked + 1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == [w for i in range(1, acked + 1) for w in ("ack", str(i))]
    assert (directory / "events.jsonl").read_bytes().count(b"\n") == acked + 1, "the line is in the log"


def test_readers_and_watch_take_no_line_a_dead_writer_left_unfsynced(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    _deferred_writer_killed_before_its_fsync(directory, acked=2)
    reader = Ledger(directory, readonly=True)
    assert reader.get_video_metadata("s2", "e") is None, "a power loss could still take it"
    assert [e.spot_id for e in reader.get_all_video_metadata()] == ["s0", "s1"]
    stop = threading.Event()
    stop.set()
    watch(directory, stop_event=stop)  # what `video-ledger watch` writes first
    checkpoint = read_checkpoint(directory / "checkpoint.json")
    assert checkpoint is not None and checkpoint.seq == 2, "the snapshot is never ahead of the fsynced log"
    assert b'"s2"' not in (directory / "generated-videos.json").read_bytes()
    assert [e.seq for _, e in follow(directory, since_seq=0, stop_event=stop)] == [1, 2]  # history --follow
    # the next writer fsyncs the line (a valid event that was never acknowledged) and then it is read
    Ledger(directory, projection="deferred").close()
    assert reader.get_video_metadata("s2", "e") is not None
    watch(directory, stop_event=stop)
    checkpoint = read_checkpoint(directory / "checkpoint.json")
    assert checkpoint is not None and checkpoint.seq == 3
    assert Ledger(directory, readonly=True).verify().ok


def test_a_reader_that_cannot_tell_what_is_fsynced_fsyncs_the_log_first(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    _deferred_writer_killed_before_its_fsync(directory, acked=2)
    (directory / "events.jsonl.sync.lock").unlink()  # no record (a copied directory may have none)
    ops = FaultyOps()  # only traces
    reader = Ledger(directory, readonly=True, ops=ops)
    assert reader.get_video_metadata("s2", "e") is not None
    assert ops.trace.index("fsync") < ops.trace.index("pread"), "fsynced before it was read"
    assert not (directory / "events.jsonl.sync.lock").exists(), "a read-only reader creates nothing"


def _has_timeline(ledger: Ledger) -> bool:
    try:
        return ledger.timeline("s2", "e").first is not None
    except EntryNotFoundError:
        return False


WHOLE_LOG_VIEWS = {  # whether each shows event 3, the line the dead writer left
    "history": lambda ledger: [e.seq for e in ledger.history()] == [1, 2, 3],
    "timeline": _has_timeline,
    "stats": lambda ledger: ledger.stats().events == 3,
    "as-of": lambda ledger: [e.spot_id for e in ledger.entries_as_of(seq=3)] == ["s0", "s1", "s2"],
}


@pytest.mark.parametrize("view", sorted(WHOLE_LOG_VIEWS))
def test_whole_log_views_show_no_line_a_dead_writer_left_unfsynced(tmp_path: Path, view: str) -> None:
    """history, timeline, stats and as-of (and verify --files, the same read) read through the store's
    ``read``, as every reader does: only what the fsynced-size record vouches for, with no fsync of their
    own. The next writer's open fsyncs it; then they show it."""
    directory = tmp_path / "ledger"
    _deferred_writer_killed_before_its_fsync(directory, acked=2)
    ops = FaultyOps()  # only traces
    reader = Ledger(directory, readonly=True, ops=ops)
    ops.trace.clear()
    assert not WHOLE_LOG_VIEWS[view](reader), "a power loss could still take it"
    assert "fsync" not in ops.trace
    Ledger(directory, projection="deferred").close()  # a writer's open fsyncs the line
    assert WHOLE_LOG_VIEWS[view](Ledger(directory, readonly=True)), "the dead writer's line is read"


def _deferred_log(directory: Path, n: int = 3) -> list[bytes]:
    """A log written by deferred writers (no checkpoint reaches it), each event acknowledged."""
    for i in range(n):
        with Ledger(directory, projection="deferred") as ledger:
            ledger.set_video_metadata(entry(f"spot{i}", "era", status="pending"))
    return (directory / "events.jsonl").read_bytes().splitlines(keepends=True)


DAMAGE = {
    "flip": lambda line: line[:20] + bytes([line[20] ^ 0x01]) + line[21:],  # the newline kept
    "zeros": lambda line: b"\0" * (len(line) - 1) + b"\n",
    "newline": lambda line: line[:-1] + b" ",  # the last line loses its newline, same size
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damage_in_the_fsynced_part_is_corruption_not_a_torn_tail(
    ledger_dir: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    lines = _deferred_log(ledger_dir)
    lines[-1] = DAMAGE[how](lines[-1])
    (ledger_dir / "events.jsonl").write_bytes(b"".join(lines))
    before = files_state(ledger_dir)
    report = Ledger(ledger_dir, readonly=True).verify()
    assert not report.ok and report.line == 3 and report.torn is None, report
    assert "fsynced" in (report.problem or "")
    assert main(["--dir", str(ledger_dir), "verify"]) == 1
    assert "FAILED" in capsys.readouterr().out
    with pytest.raises(CorruptLogError) as info:
        Ledger(ledger_dir, readonly=True).get_all_video_metadata()
    assert info.value.line == 3
    with pytest.raises(CorruptLogError):
        Ledger(ledger_dir, projection="deferred")
    assert (
        main(
            [
                "--dir",
                str(ledger_dir),
                "--no-project",
                "set",
                "x",
                "e",
                "--status",
                "pending",
                "--prompt",
                "p",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "line 3" in err, err
    assert files_state(ledger_dir) == before, "nothing moved aside, nothing appended"
    assert not list(ledger_dir.glob("events.jsonl.torn-*"))


def test_a_torn_tail_beyond_the_fsynced_part_is_still_set_aside(ledger_dir: Path) -> None:
    lines = _deferred_log(ledger_dir)
    with (ledger_dir / "events.jsonl").open("ab") as f:
        f.write(lines[-1][:30])  # a crash cut the next append short: beyond what was fsynced
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is not None and report.torn.line == 4, report
    Ledger(ledger_dir).close()
    assert [p.read_bytes() for p in ledger_dir.glob("events.jsonl.torn-*")] == [lines[-1][:30]]


def test_a_record_that_claims_more_than_the_log_holds_says_nothing(ledger_dir: Path) -> None:
    """A log put back from a shorter backup, or a directory copied while a writer appended: the record
    belongs to a longer file, and a torn tail at the end of this one is a torn tail."""
    lines = _deferred_log(ledger_dir, n=4)
    (ledger_dir / "events.jsonl").write_bytes(b"".join(lines[:2]) + lines[2][:25])
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is not None and report.torn.line == 3, report
    assert [e.seq for e in Ledger(ledger_dir, readonly=True).history()] == [1, 2]
    Ledger(ledger_dir).close()
    assert Ledger(ledger_dir, readonly=True).verify().events == 2


def test_a_longer_log_put_in_place_of_the_recorded_one_needs_the_record_removed(ledger_dir: Path) -> None:
    """The one lie the record cannot detect (docs/format.md): events.jsonl replaced by a longer file with a
    torn tail inside the size on record. It is refused as damage; removing the record with it, as the docs
    say, makes the tail a torn tail again."""
    lines = _deferred_log(ledger_dir, n=2)
    backup = _deferred_log(ledger_dir.parent / "backup", n=4)  # another ledger's log, torn inside
    replaced = b"".join(backup[:1]) + backup[1][:20] + b"\0" * 4096
    (ledger_dir / "events.jsonl").write_bytes(replaced)
    assert len(backup[0]) < sum(map(len, lines)) <= len(replaced), "torn inside the size on record"
    assert not Ledger(ledger_dir, readonly=True).verify().ok
    (ledger_dir / "events.jsonl.sync.lock").unlink()
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is not None and report.torn.line == 2, report


def test_a_writer_handle_appends_to_the_log_in_place_not_the_one_it_opened_before_a_replace(
    ledger_dir: Path,
) -> None:
    """events.jsonl replaced under a live writer handle (a restore, ``cp`` then ``mv``): the handle sees the
    new file (StaleHeadError, reload), but it kept appending through the descriptor it had opened on the
    old, now unlinked file: its next write was acknowledged (``last_seq`` 7) and lost."""
    with Ledger(ledger_dir) as ledger:
        ledger.set_many(entry(f"spot-{i}", "era", "pending") for i in range(6))
        log = ledger_dir / "events.jsonl"
        restored = ledger_dir / "restored"
        restored.write_bytes(log.read_bytes())  # the same log, another file
        restored.replace(log)
        ledger.set_video_metadata(entry("after", "era", "pending"))
        assert ledger.last_seq == 7
    assert [e.spot_id for e in Ledger(ledger_dir, readonly=True).history()][-1] == "after"
    assert log.read_bytes().count(b"\n") == 7
    assert Ledger(ledger_dir, readonly=True).verify().ok


class _ReadRacingAWrite(FileOps):
    """The log as a reader without the lock sees it while a writer's one write is being copied in: its
    first read ends halfway through the last line, and the next read finds no more (yet)."""

    def __init__(self, log: Path, cut: int) -> None:
        self.log_ino, self.cut, self.reads = log.stat().st_ino, cut, 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        if os.fstat(fd).st_ino == self.log_ino and self.reads < 2:
            self.reads += 1
            return super().pread(fd, self.cut, offset) if self.reads == 1 else b""
        return super().pread(fd, size, offset)


def test_a_reader_without_the_lock_racing_a_write_is_not_told_of_damage(ledger_dir: Path) -> None:
    """By the time it looks at the record, the write it caught halfway is whole and fsynced."""
    lines = _deferred_log(ledger_dir)
    log = ledger_dir / "events.jsonl"
    reader = Ledger(ledger_dir, readonly=True, ops=_ReadRacingAWrite(log, len(lines[0]) + len(lines[1]) + 9))
    report = reader.verify()  # verify reads the log without the lock (history fsyncs it under the lock first)
    assert report.ok and report.events == 2, report


@pytest.mark.parametrize("name", ["append", "group commit"])
def test_after_a_power_loss_the_record_never_claims_more_than_survived(tmp_path: Path, name: str) -> None:
    """The power-loss model of tests/powerloss.py, cut before every operation: in every crash state the
    record (when intact) is no larger than the log and only whole lines lie before it, so the torn-tail
    rule never mistakes what a power loss left for damage."""
    from .powerloss import PowerCut, PowerLossOps
    from .test_power_loss import SCENARIOS

    scenario = SCENARIOS[name]
    probe = tmp_path / "probe"
    scenario.setup(probe)
    ops = PowerLossOps(probe)
    scenario.run(probe, ops, [])
    rng = random.Random(f"record-{name}")
    intact = beyond = 0
    for k in range(1, ops.count + 2):
        directory = tmp_path / f"k{k}"
        scenario.setup(directory)
        cut = PowerLossOps(directory, cut_at=k)
        with contextlib.suppress(PowerCut):
            scenario.run(directory, cut, [])
        for _ in range(5):
            state = cut.crash_state(rng)
            recorded = decode_record(state.get("events.jsonl.sync.lock", b""))
            if recorded is None:
                continue
            log = state.get("events.jsonl", b"")
            intact += 1
            assert recorded <= len(log), k
            assert all(map(check_line, log[:recorded].split(b"\n")[:-1])) and log[:recorded].endswith(b"\n")
            beyond += len(log) > recorded
    assert intact > 100 and beyond > 0, (intact, beyond)


def test_a_record_ending_inside_a_line_is_another_files_and_says_nothing(ledger_dir: Path) -> None:
    """A record that ends inside a line of this log (an events.jsonl.sync.lock from another ledger, a
    directory put together from two copies) cannot be this log's, whose record only ever ends at a line's
    end. Readers fsync the log and read it all, as where there is no record; before, they stopped at the
    record and called the whole line it cut "damage" while `verify` said ok."""
    import struct
    import zlib

    lines = _deferred_log(ledger_dir, n=3)
    inside = len(lines[0]) + 10  # inside line 2
    record = struct.pack("<8sQ", b"VLSYNC01", inside)  # as docs/format.md describes it
    (ledger_dir / "events.jsonl.sync.lock").write_bytes(record + zlib.crc32(record).to_bytes(4, "little"))
    assert Ledger(ledger_dir, readonly=True).verify().ok
    ops = FaultyOps()  # only traces
    reader = Ledger(ledger_dir, readonly=True, ops=ops)
    assert [e.spot_id for e in reader.get_all_video_metadata()] == ["spot0", "spot1", "spot2"]
    assert "fsync" in ops.trace, "the log is fsynced before what the record does not vouch for is read"
    stop = threading.Event()
    stop.set()
    watch(ledger_dir, stop_event=stop)
    checkpoint = read_checkpoint(ledger_dir / "checkpoint.json")
    assert checkpoint is not None and checkpoint.seq == 3
    # a damaged line at the record is still damage: its newline lost, it runs into the next line
    (ledger_dir / "checkpoint.json").unlink()
    damaged = lines[0] + lines[1][:-1] + b" " + lines[2]
    (ledger_dir / "events.jsonl").write_bytes(damaged)
    record = struct.pack("<8sQ", b"VLSYNC01", len(lines[0]) + len(lines[1]))
    (ledger_dir / "events.jsonl.sync.lock").write_bytes(record + zlib.crc32(record).to_bytes(4, "little"))
    with pytest.raises(CorruptLogError, match="line 2"):
        Ledger(ledger_dir, readonly=True).get_all_video_metadata()


def test_verify_keeps_no_head_a_power_loss_can_take(tmp_path: Path) -> None:
    """verify reads without the lock, so it reads a line a writer killed before its fsync left; the head it
    prints (to be kept elsewhere) is the last event known fsynced. Before, it printed that line's event: a
    power loss then took it, the next writer wrote another event with its seq, and every later
    `verify --expect-head` of the kept head reported the log rewritten."""
    directory = tmp_path / "ledger"
    _deferred_writer_killed_before_its_fsync(directory, acked=2)
    log = directory / "events.jsonl"
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.head is not None and report.head.startswith("2:"), report
    kept = report.head
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]))  # the power loss: the unfsynced line is gone
    with Ledger(directory) as ledger:
        ledger.set_video_metadata(entry("other", "era", status="pending"))
    assert Ledger(directory, readonly=True).verify(expect_head=kept).ok


def test_verify_counts_the_events_up_to_the_head_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line a writer killed before its fsync left is verified, but it is no head: the count of events is
    that of the head's, and the line is reported apart (``undurable``)."""
    from ledger.cli import main

    directory = tmp_path / "ledger"
    _deferred_writer_killed_before_its_fsync(directory, acked=2)
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.events == 2 and report.undurable == 1, report
    assert report.head is not None and report.head.startswith("2:")
    assert main(["--dir", str(directory), "verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok: 2 events, ") and lines[1].startswith("head: 2:"), lines


def test_a_reader_reads_a_remade_record_not_the_one_it_held_open(ledger_dir: Path) -> None:
    """events.jsonl.sync.lock removed (as docs/format.md says to with a replaced log) and made anew by the
    next writer: a reader that held the old file open reads the new record. Before, it went on reading
    the old one, stopped there, and never saw another event."""
    _deferred_log(ledger_dir, n=1)
    reader = Ledger(ledger_dir, readonly=True)
    assert [e.spot_id for e in reader.get_all_video_metadata()] == ["spot0"]
    (ledger_dir / "events.jsonl.sync.lock").unlink()
    _deferred_log(ledger_dir, n=2)
    assert reader.get_video_metadata("spot1", "era") is not None


def test_an_acknowledged_write_whose_record_update_failed_is_seen_by_every_reader(ledger_dir: Path) -> None:
    """The fsync succeeded, so the write is acknowledged; only the record of it failed (found by the state
    machine: an EIO on that pwrite). A reader must not stop at the stale record before an acknowledged
    event: the writer leaves no record then, and readers fsync the log themselves and read it all."""
    reader = Ledger(ledger_dir, projection="deferred")
    reader.set_video_metadata(entry("s0", "e", status="pending"))
    ops = FaultyOps(1, only=("pwrite",))
    writer = Ledger(ledger_dir, projection="deferred", ops=ops)
    ops.arm()
    writer.set_video_metadata(entry("s1", "e", status="pending"))  # acknowledged
    assert ops.fired == ["pwrite"]
    assert reader.get_video_metadata("s1", "e") is not None
    assert Ledger(ledger_dir, readonly=True).get_video_metadata("s1", "e") is not None
    writer.close()
    reader.close()
