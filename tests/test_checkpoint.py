"""The checkpoint is a cache: trusted only as far as the log line it points at proves it."""

from __future__ import annotations

import errno
import io
import json
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import msgspec
import pytest

from ledger import CorruptLogError, Ledger, SnapshotUpdateError
from ledger.cli import main
from ledger.events import crc32
from ledger.fileops import FileOps
from ledger.projector import encode_snapshot

from .conftest import PYTHON, ROOT, FakeClock, entry, files_state, recent_clock
from .faults import FaultyOps


def three_events(directory: Path, clock: FakeClock) -> None:
    with Ledger(directory, clock=clock) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="generating"))
        ledger.set_video_metadata(entry("a", "1", status="ready"))
        ledger.set_video_metadata(entry("b", "1", status="pending"))


def edit_checkpoint(directory: Path, **changes: object) -> None:
    path = directory / "checkpoint.json"
    checkpoint = json.loads(path.read_bytes())
    checkpoint.update(changes)
    path.write_bytes(json.dumps(checkpoint).encode() + b"\n")


def lines_of(directory: Path) -> list[bytes]:
    return (directory / "events.jsonl").read_bytes().splitlines(keepends=True)


# -- every field a writer takes from the checkpoint is checked against the log -------------------------


def test_a_checkpoint_whose_seq_was_raised_is_not_trusted(ledger_dir: Path, clock: FakeClock) -> None:
    three_events(ledger_dir, clock)
    edit_checkpoint(ledger_dir, seq=5)
    with Ledger(ledger_dir, clock=clock) as ledger:  # before: the next event was seq 6, after seq 3
        assert ledger.set_video_metadata(entry("c", "1", status="pending")).spot_id == "c"
        assert ledger.last_seq == 4
    assert [e.seq for e in Ledger(ledger_dir, readonly=True).history()] == [1, 2, 3, 4]
    assert Ledger(ledger_dir, readonly=True).verify().ok


def test_a_checkpoint_whose_last_ts_was_moved_ahead_is_not_trusted(
    ledger_dir: Path, clock: FakeClock
) -> None:
    three_events(ledger_dir, clock)
    edit_checkpoint(ledger_dir, lastTs="2099-01-01T00:00:00.000000Z")
    with Ledger(ledger_dir, clock=clock) as ledger:  # before: every later event was stamped 2099
        ledger.set_video_metadata(entry("c", "1", status="pending"))
    last = list(Ledger(ledger_dir, readonly=True).history())[-1]
    assert last.ts.startswith("2026-"), last.ts
    assert Ledger(ledger_dir, readonly=True).verify().ok


def test_rebuild_and_verify_agree_on_a_change_recorded_through_a_forged_snapshot(
    ledger_dir: Path, clock: FakeClock
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        ready = ledger.set_video_metadata(entry(status="ready"))
    # a snapshot forged to say "generating", with a checkpoint whose size and CRC-32 match it
    forged = msgspec.structs.replace(ready, status="generating", local_path=None, completed_at=None)
    data = encode_snapshot({forged.key: forged})
    (ledger_dir / "generated-videos.json").write_bytes(data)
    edit_checkpoint(ledger_dir, snapshotSize=len(data), snapshotCrc32=f"{crc32(data):08x}")
    with Ledger(ledger_dir, clock=clock) as ledger:  # the open cannot tell: the checkpoint fits the log
        ledger.set_video_metadata(entry(status="ready"))  # ready -> ready, as the log has it
    report = Ledger(ledger_dir, readonly=True).verify()
    assert not report.ok and report.line == 3 and "illegal change" in (report.problem or ""), report
    before = files_state(ledger_dir)
    with Ledger(ledger_dir, clock=clock) as ledger, pytest.raises(CorruptLogError) as info:
        ledger.rebuild()  # before: rebuild replayed it without a word
    assert info.value.line == 3 and "illegal change" in str(info.value)
    assert files_state(ledger_dir)["generated-videos.json"] == before["generated-videos.json"]


# -- damage is named at its own line; what a writer checks when ---------------------------------------


def six_events(directory: Path, clock: FakeClock) -> None:
    with Ledger(directory, clock=clock) as ledger:
        for spot in "abc":
            ledger.set_video_metadata(entry(spot, "1", status="generating"))
            ledger.set_video_metadata(entry(spot, "1", status="ready"))


def test_a_line_in_the_middle_replaced_by_a_shorter_one_is_named_by_every_reader(
    ledger_dir: Path, clock: FakeClock
) -> None:
    six_events(ledger_dir, clock)
    lines = lines_of(ledger_dir)
    (ledger_dir / "events.jsonl").write_bytes(b"".join([*lines[:2], b"not an event\n", *lines[3:]]))
    before = files_state(ledger_dir)
    with pytest.raises(CorruptLogError) as info:  # before: "trailing events are missing" at line 6
        Ledger(ledger_dir, clock=clock).rebuild()
    assert info.value.line == 3, info.value
    with pytest.raises(CorruptLogError) as info:
        Ledger(ledger_dir, readonly=True).get_all_video_metadata()
    assert info.value.line == 3, info.value
    assert Ledger(ledger_dir, readonly=True).verify().line == 3
    assert files_state(ledger_dir) == before  # nothing set aside, nothing appended


def test_a_damaged_line_at_the_checkpoint_is_corruption_not_a_torn_tail(
    ledger_dir: Path, clock: FakeClock
) -> None:
    six_events(ledger_dir, clock)
    lines = lines_of(ledger_dir)
    lines[-1] = lines[-1][:20] + bytes([lines[-1][20] ^ 1]) + lines[-1][21:]  # newline kept
    (ledger_dir / "events.jsonl").write_bytes(b"".join(lines))
    before = files_state(ledger_dir)
    with pytest.raises(CorruptLogError) as info:  # the fsynced-size record or the checkpoint says so
        Ledger(ledger_dir, clock=clock)
    assert info.value.line == 6
    assert files_state(ledger_dir) == before  # the acknowledged line was not moved aside


def test_a_reader_stopped_short_by_the_fsynced_size_record_does_not_call_a_doubted_checkpoint_corrupt(
    ledger_dir: Path, clock: FakeClock
) -> None:
    six_events(ledger_dir, clock)
    edit_checkpoint(ledger_dir, seq=9)  # doubted: the replay decides
    three = sum(map(len, lines_of(ledger_dir)[:3]))
    record = struct.pack("<8sQ", b"VLSYNC01", three)  # a stale record: fsynced up to line 3
    (ledger_dir / "events.jsonl.sync.lock").write_bytes(record + zlib.crc32(record).to_bytes(4, "little"))
    reader = Ledger(ledger_dir, readonly=True)
    assert reader.head().seq in (3, 6)  # the record's part (or all, had it fsynced): no CorruptLogError
    with Ledger(ledger_dir, clock=clock) as writer:  # a writer reads to the end, and rewrites the checkpoint
        assert writer.head().seq == 6
    assert Ledger(ledger_dir, readonly=True).verify().ok


def test_damage_before_the_checkpoint_is_found_by_verify_and_rebuild_not_by_opening(
    ledger_dir: Path, clock: FakeClock
) -> None:
    """What a writer checks when (docs/guarantees.md): at open, the checkpoint's line and every line after
    it; the lines before the checkpoint only verify, rebuild and a handle without a usable checkpoint read."""
    six_events(ledger_dir, clock)
    lines = lines_of(ledger_dir)
    assert b'"generating"' in lines[2]
    lines[2] = lines[2].replace(b'"generating"', b'"generatinG"')  # same length: its crc fails
    (ledger_dir / "events.jsonl").write_bytes(b"".join(lines))
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry("d", "1", status="pending"))  # appended: line 3 is not re-read
    assert Ledger(ledger_dir, readonly=True).verify().line == 3
    with pytest.raises(CorruptLogError) as info:
        Ledger(ledger_dir, clock=clock).rebuild()
    assert info.value.line == 3
    (ledger_dir / "checkpoint.json").unlink()  # no checkpoint: the open replays, and refuses
    with pytest.raises(CorruptLogError) as info:
        Ledger(ledger_dir, clock=clock)
    assert info.value.line == 3


# -- harmless crash states are harmless; snapshot and checkpoint are read as one pair -------------------


def test_enospc_on_the_checkpoint_alone_is_reported_as_harmless(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    three_events(ledger_dir, clock)
    ops = FaultyOps(2, only=("replace",), err=errno.ENOSPC)  # the snapshot's rename, then the checkpoint's
    with Ledger(ledger_dir, clock=clock, ops=ops) as ledger:
        ops.arm()
        with pytest.raises(SnapshotUpdateError):
            ledger.set_video_metadata(entry("c", "1", status="pending"))
    assert ops.fired == ["replace"]
    assert main(["--dir", str(ledger_dir), "verify"]) == 0  # before: FAILED
    out = capsys.readouterr().out
    assert "snapshot matches the log at event 4" in out and "checkpoint (event 3) is behind" in out, out


KILL_BETWEEN_RENAMES = """
import sys
sys.path.insert(0, {root!r})
from ledger import Ledger
from tests.faults import KillAt
ledger = Ledger({directory!r}, ops=KillAt("checkpoint.before_rename"))
ledger.set_video_metadata({{"spotId": "c", "eraId": "1", "prompt": "p", "status": "pending"}})
"""


def test_a_kill_between_the_snapshot_and_checkpoint_renames_is_reported_as_harmless(ledger_dir: Path) -> None:
    three_events(ledger_dir, recent_clock())  # the child writes on the real clock
    child = subprocess.run(
        [PYTHON, "-c", KILL_BETWEEN_RENAMES.format(root=str(ROOT), directory=str(ledger_dir))], check=False
    )
    assert child.returncode == -9
    started = time.monotonic()
    report = Ledger(ledger_dir, readonly=True).verify()  # before: FAILED
    assert report.ok and report.snapshot_seq == 4 and report.checkpoint_seq == 3, report
    assert report.note is not None
    reader = Ledger(ledger_dir, readonly=True)
    assert [e.spot_id for e in reader.get_all_video_metadata()] == ["a", "b", "c"]
    assert time.monotonic() - started < 1.0  # no projector holds the lock: no waiting for one
    out = io.StringIO()
    assert main(["--dir", str(ledger_dir), "verify", "--json"], out=out) == 0
    assert json.loads(out.getvalue())["note"] == report.note  # the note the text output prints


class PauseBetweenRenames(FileOps):
    """Holds a projector after it renamed the snapshot, before it renames the checkpoint."""

    def __init__(self) -> None:
        self.paused, self.go = threading.Event(), threading.Event()
        self.armed = False

    def point(self, name: str) -> None:
        if self.armed and name == "snapshot.after_rename":
            self.paused.set()
            self.go.wait(10)


def test_an_open_between_a_projectors_two_renames_trusts_the_snapshot(
    ledger_dir: Path, clock: FakeClock
) -> None:
    three_events(ledger_dir, clock)
    ops = PauseBetweenRenames()
    writer = Ledger(ledger_dir, clock=clock, ops=ops)
    ops.armed = True
    thread = threading.Thread(target=writer.set_video_metadata, args=(entry("c", "1", status="pending"),))
    thread.start()
    try:
        assert ops.paused.wait(10)
        threading.Timer(0.1, ops.go.set).start()  # the projector finishes while the reader looks
        reader = Ledger(ledger_dir, readonly=True)
        assert reader.head().seq == 4
        # before: it found the new snapshot with the old checkpoint, distrusted it and replayed the log
        assert reader._projector.problem is None  # it loaded the snapshot, vouched for by its checkpoint
    finally:
        ops.go.set()
        thread.join()
        writer.close()
    assert Ledger(ledger_dir, readonly=True).verify().ok
