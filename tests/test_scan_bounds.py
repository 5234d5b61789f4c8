"""Scanning the log is bounded in time and memory, whatever the log ends with.

No line is longer than 1 MiB (``docs/format.md``), so the scan holds at most that of any one line: a
longer run of bytes without a newline is a damaged line, judged from its last megabyte, and a hole in a
sparse file (``truncate -s +N``) is not read at all. The verdicts stay those of a reader that holds the
whole tail: a torn tail if nothing whole follows it beyond the fsynced part, corruption otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger
from ledger.backend import GENESIS, TornTail
from ledger.events import MAX_LINE_BYTES, check_line
from ledger.fileops import FileOps
from ledger.log import EventLog

from .conftest import ROOT, entry, recent_clock

MiB = 1 << 20

_MEASURE = """
import json, resource, subprocess, sys, time
began = time.monotonic()
result = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300)
print(json.dumps({
    "seconds": time.monotonic() - began,
    "max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "code": result.returncode, "out": result.stdout, "err": result.stderr,
}))
"""


def measured(directory: Path, *args: str) -> dict[str, object]:
    """``video-ledger --dir DIRECTORY ARGS`` in a process of its own, measured by a parent of its own (so
    ``RUSAGE_CHILDREN`` sees that one command only): seconds, peak memory (KiB), exit code and output."""
    command = [sys.executable, "-m", "ledger", "--dir", str(directory), *args]
    wrapper = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, cwd=ROOT, timeout=320
    )
    assert wrapper.returncode == 0, wrapper.stderr
    result: dict[str, object] = json.loads(wrapper.stdout)
    return result


def two_events(directory: Path) -> int:
    with Ledger(directory, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("colosseum", status="pending"))
        ledger.set_video_metadata(entry("acropolis", status="pending"))
    return (directory / "events.jsonl").stat().st_size


@pytest.mark.parametrize("tail", [256 * MiB, 2048 * MiB], ids=["256MiB", "2GiB"])
def test_a_long_sparse_tail_without_a_newline_is_judged_in_bounded_time_and_memory(
    tmp_path: Path, tail: int
) -> None:
    """Two events, then ``truncate -s +N events.jsonl``: NUL bytes without a newline, as a file system can
    leave after a power loss. ``verify`` reports a torn tail and ``set`` sets it aside and records its
    event, each in seconds and in the memory of a verify over two events (plus a few MiB)."""
    directory = tmp_path / "ledger"
    size = two_events(directory)
    baseline = measured(directory, "verify")
    assert baseline["code"] == 0, baseline
    os.truncate(directory / "events.jsonl", size + tail)  # sparse: no disk

    verify = measured(directory, "verify")
    assert verify["code"] == 0, verify
    out = str(verify["out"])
    assert out.startswith("ok: 2 events"), out
    assert f"note: {tail} bytes at the end of the log (from line 3) are not a whole event" in out
    assert (directory / "events.jsonl").stat().st_size == size + tail, "verify changes nothing"

    update = measured(directory, "set", "forum", "rome-80ad", "--status", "pending", "--prompt", "p")
    assert update["code"] == 0, update
    assert f"set aside {tail} torn bytes from line 3 (offset {size})" in str(update["err"])
    assert (directory / "events.jsonl").stat().st_size > size
    (aside,) = directory.glob("events.jsonl.torn-*")
    assert aside.stat().st_size == tail
    assert aside.stat().st_blocks * 512 < MiB, "the copy of a hole stays a hole"
    assert Ledger(directory, readonly=True).verify().events == 3

    print(f"tail {tail >> 20} MiB: verify {verify['seconds']:.2f} s, set {update['seconds']:.2f} s")
    for run in (verify, update):
        assert float(str(run["seconds"])) < 20, run
        extra = int(str(run["max_rss_kib"])) - int(str(baseline["max_rss_kib"]))
        assert extra < 24 * 1024, f"{extra} KiB more than a verify of two events"


def test_a_long_unterminated_staging_file_is_dropped_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """The staging file read under the queue lock stops at its first line that does not continue the log:
    ``truncate -s +2G events.jsonl.staged`` costs the next write no more than a write."""
    directory = tmp_path / "ledger"
    two_events(directory)
    baseline = measured(directory, "set", "forum", "rome-80ad", "--status", "pending", "--prompt", "p")
    assert baseline["code"] == 0, baseline
    os.truncate(directory / "events.jsonl.staged", 2048 * MiB)
    update = measured(directory, "set", "forum", "rome-80ad", "--status", "generating")
    assert update["code"] == 0, update
    assert f"dropped {2048 * MiB} staged bytes that do not continue the log" in str(update["err"])
    assert (directory / "events.jsonl.staged").stat().st_size == 0
    assert Ledger(directory, readonly=True).verify().events == 4
    assert float(str(update["seconds"])) < 20, update
    extra = int(str(update["max_rss_kib"])) - int(str(baseline["max_rss_kib"]))
    assert extra < 24 * 1024, f"{extra} KiB more than a write"


def scan_all(path: Path) -> tuple[int, object]:
    """The events a whole-chain scan reads, and what it ends with (the torn tail, or the error)."""
    scan = EventLog(path, FileOps()).scan(GENESIS, chain=True)
    count = 0
    try:
        for _, events in scan.runs():
            count += len(events)
    except CorruptLogError as exc:
        return count, exc.reason
    return count, scan.torn


def test_a_long_run_of_garbage_without_a_newline_is_a_torn_tail_read_in_bounded_memory(
    ledger_dir: Path,
) -> None:
    size = two_events(ledger_dir)
    path = ledger_dir / "events.jsonl"
    with path.open("ab") as f:
        f.write(b"x" * (64 * MiB))  # stored bytes, not a hole: every one is read
    tracemalloc.start()
    try:
        count, torn = scan_all(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 2 and isinstance(torn, TornTail)
    assert (torn.offset, torn.size, torn.line) == (size, 64 * MiB, 3)
    assert peak < 12 * MiB, peak  # a few chunks of 1 MiB, not the tail


def test_an_overlong_damaged_line_followed_by_a_whole_event_is_corruption(ledger_dir: Path) -> None:
    two_events(ledger_dir)
    path = ledger_dir / "events.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(lines[0] + b"\n" + b"x" * (3 * MiB) + b"\n" + lines[1] + b"\n")
    count, reason = scan_all(path)
    assert count == 1
    assert reason == "damaged line (bad framing or crc), followed by a valid line (line 3)"


def test_a_whole_event_after_a_long_hole_is_found(ledger_dir: Path) -> None:
    """A hole is not read, but what is stored after it is: a whole line after it is corruption, and so is
    a whole event at the end of the hole's line (its newline lost)."""
    two_events(ledger_dir)
    path = ledger_dir / "events.jsonl"
    first, second = path.read_bytes().split(b"\n")[:2]
    for between, reason in [
        (b"\n", "damaged line (bad framing or crc), followed by a valid line (line 3)"),
        (b"", "damaged line (bad framing or crc), and a whole event follows on the same line (lost newline)"),
    ]:
        with path.open("wb") as f:
            f.write(first + b"\n")
            f.truncate(len(first) + 1 + 8 * MiB)  # a hole of 8 MiB
            f.seek(0, os.SEEK_END)
            f.write(between + second + b"\n")
        assert scan_all(path) == (1, reason)


def test_no_line_is_longer_than_1_mib_even_with_a_right_crc(ledger_dir: Path) -> None:
    """A run of more than 1 MiB without a newline is a damaged line, whatever it ends with (the format's
    limit: a writer never writes one): at the end, a torn tail; followed by a whole line, corruption. A
    whole event at its end (a lost newline) is found there."""
    size = two_events(ledger_dir)
    path = ledger_dir / "events.jsonl"
    events = path.read_bytes()
    second = events.split(b"\n")[1]
    body = b'{"type":"pending","pad":"' + b"p" * (2 * MiB) + b'"'
    overlong = b'%s,"crc":"%08x"}' % (body, zlib.crc32(body))
    assert check_line(overlong) and len(overlong) > MAX_LINE_BYTES
    path.write_bytes(events + overlong + b"\n")
    count, torn = scan_all(path)
    assert count == 2 and isinstance(torn, TornTail)
    assert (torn.offset, torn.size, torn.line) == (size, len(overlong) + 1, 3)
    path.write_bytes(events + overlong + b"\n" + second + b"\n")
    assert scan_all(path) == (2, "damaged line (bad framing or crc), followed by a valid line (line 4)")
    path.write_bytes(events + b"x" * (2 * MiB) + second + b"\n")
    assert scan_all(path) == (
        2,
        "damaged line (bad framing or crc), and a whole event follows on the same line (lost newline)",
    )


def test_a_long_damaged_line_inside_the_fsynced_part_is_corruption_not_a_torn_tail(ledger_dir: Path) -> None:
    two_events(ledger_dir)
    path = ledger_dir / "events.jsonl"
    with path.open("ab") as f:
        f.write(b"x" * (3 * MiB) + b"\n")
    log = EventLog(path, FileOps())
    with log.syncing():
        log.record.set(path.stat().st_size)  # as if a leader had fsynced it all
    count, reason = scan_all(path)
    assert count == 2
    assert isinstance(reason, str) and reason.startswith(
        "damaged line (bad framing or crc) inside the part of the log known to be fsynced"
    )
