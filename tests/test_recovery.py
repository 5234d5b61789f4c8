"""Torn tails and corruption: what a crash can leave at the end is set aside; damage inside is an error."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger

from .conftest import entry, recent_clock


def _make_log(directory: Path, n: int = 6) -> list[bytes]:
    clock = recent_clock()  # the tests continue this log on the real clock
    with Ledger(directory, clock=clock) as ledger:
        for i in range(n):
            ledger.set_video_metadata(entry(f"spot{i % 3}", "era", status="pending", prompt=f"prompt {i}"))
    return (directory / "events.jsonl").read_bytes().splitlines(keepends=True)


def _log_only(directory: Path, data: bytes) -> Path:
    """A ledger directory holding only this log (no snapshot, no checkpoint)."""
    directory.mkdir(parents=True)
    (directory / "events.jsonl").write_bytes(data)
    return directory


def test_a_log_cut_at_any_byte_keeps_exactly_the_whole_events(tmp_path: Path) -> None:
    lines = _make_log(tmp_path / "src", n=4)
    data = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    for cut in range(len(data) + 1):
        directory = _log_only(tmp_path / f"cut{cut}", data[:cut])
        whole = sum(1 for end in ends if end <= cut)
        reader = Ledger(directory, readonly=True)
        assert [e.seq for e in reader.history()] == list(range(1, whole + 1)), cut
        report = reader.verify()
        assert report.ok, (cut, report)
        assert report.events == whole
        assert (report.torn is not None) == (cut not in [0, *ends]), cut
        # the next writer sets the torn bytes aside and carries on after the whole events
        with Ledger(directory) as writer:
            writer.set_video_metadata(entry("new", "entry", status="pending"))
        report = Ledger(directory, readonly=True).verify()
        assert report.ok and report.torn is None
        assert report.events == whole + 1
        shutil.rmtree(directory)


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00" * 4096,
        b"\x00\x00\n\x00\x00\n",
        b"garbage\nmore garbage\n",
        b'{"type":"pending","v":1,"seq":7',
        b"\n",
        b"\xff\xfe\n",
    ],
    ids=["zeros", "zero-lines", "garbage-lines", "half-event", "empty-line", "bad-utf8"],
)
def test_junk_at_the_end_is_a_torn_tail_that_is_set_aside(
    tmp_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "ledger"
    lines = _make_log(directory)
    with (directory / "events.jsonl").open("ab") as f:
        f.write(tail)
    report = Ledger(directory, readonly=True).verify()
    assert report.ok
    assert report.torn is not None
    assert report.torn.line == len(lines) + 1
    with caplog.at_level(logging.WARNING, logger="ledger"), Ledger(directory) as writer:
        writer.set_video_metadata(entry("next", "one", status="pending"))
    assert "set aside" in caplog.text
    aside = list(directory.glob("events.jsonl.torn-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes() == tail, "the bad bytes are kept where an auditor can see them"
    assert (directory / "events.jsonl").read_bytes().startswith(b"".join(lines))
    final = Ledger(directory, readonly=True).verify()
    assert final.ok and final.torn is None and final.events == len(lines) + 1


def _damage(lines: list[bytes], how: str, i: int) -> tuple[bytes, int]:
    """The log with line ``i`` (0-based) damaged ``how``; returns it and the 1-based line to be named."""
    lines = list(lines)
    if how == "flip":
        lines[i] = lines[i][:10] + bytes([lines[i][10] ^ 0x20]) + lines[i][11:]
    elif how == "drop":
        del lines[i]
    elif how == "duplicate":
        lines.insert(i, lines[i])
        return b"".join(lines), i + 2
    elif how == "swap":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif how == "join":  # a deleted newline
        lines[i] = lines[i][:-1]
    elif how == "insert-garbage":
        lines.insert(i, b"not an event\n")
    return b"".join(lines), i + 1


@pytest.mark.parametrize("how", ["flip", "drop", "duplicate", "swap", "join", "insert-garbage"])
@pytest.mark.parametrize("i", [0, 2, 4])
def test_damage_inside_the_log_is_a_hard_error_naming_the_line(tmp_path: Path, how: str, i: int) -> None:
    lines = _make_log(tmp_path / "src")
    data, line_no = _damage(lines, how, i)
    directory = _log_only(tmp_path / "bad", data)
    with pytest.raises(CorruptLogError) as info:
        list(Ledger(directory, readonly=True).history())
    assert info.value.line == line_no
    assert f"line {line_no}" in str(info.value)
    report = Ledger(directory, readonly=True).verify()
    assert not report.ok
    assert report.line == line_no
    before = (directory / "events.jsonl").read_bytes()
    with pytest.raises(CorruptLogError):
        Ledger(directory).set_video_metadata(entry("x", "y", status="pending"))
    assert (directory / "events.jsonl").read_bytes() == before, "a corrupt log is never written to"


def test_an_edited_line_with_a_recomputed_crc_is_caught_by_the_chain(tmp_path: Path) -> None:
    import zlib

    lines = _make_log(tmp_path / "src")
    forged = lines[2][:-1].replace(b"prompt 2", b"prompt X")
    body = forged[: forged.rindex(b',"crc":"')]
    lines[2] = b'%s,"crc":"%08x"}\n' % (body, zlib.crc32(body))
    directory = _log_only(tmp_path / "forged", b"".join(lines))
    report = Ledger(directory, readonly=True).verify()
    assert not report.ok
    assert report.line == 4, "the next line's prev no longer matches"
    assert "chain" in (report.problem or "")
