"""Corruption and tamper evidence: random damage anywhere in a valid log is found, at the right line.

Damage in the middle (byte flips, lost newlines, duplicated, dropped and swapped lines) makes every read
of the log and ``verify`` fail naming the line; damage at the end (a cut at any offset, zeros, garbage)
leaves exactly the whole events before it. ``--long`` runs 100,000 random mutations.
"""

from __future__ import annotations

import random
import shutil
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import CorruptLogError, Ledger

from .conftest import FakeClock, Tally, entry

N_EVENTS = 40


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    directory = tmp_path_factory.mktemp("valid") / "ledger"
    rng = random.Random("valid-log")
    with Ledger(directory, clock=FakeClock()) as ledger:
        status: dict[str, str] = {}
        prompts: dict[str, str] = {}
        step = {None: "generating", "generating": "ready", "ready": "pending", "pending": "generating"}
        for _ in range(N_EVENTS):
            spot = f"spot{rng.randrange(6)}"
            status[spot] = step[status.get(spot)]  # type: ignore[index]
            if status[spot] != "ready":
                prompts[spot] = rng.choice(
                    ["short", "a much longer prompt " * rng.randint(1, 30), "ünïcødé\nprompt"]
                )
            ledger.set_video_metadata(entry(spot, "era", status=status[spot], prompt=prompts[spot]))
    return directory, (directory / "events.jsonl").read_bytes().splitlines(keepends=True)


def mutate(lines: list[bytes], rng: random.Random) -> tuple[str, bytes, int]:
    """Damage the middle of the log; returns (kind, the log, the 1-based line to be named)."""
    i = rng.randrange(len(lines) - 1)  # never only the last line: that is a tail case
    out = list(lines)
    kind = rng.choice(["flip", "newline", "duplicate", "drop", "swap"])
    if kind == "flip":
        j = rng.randrange(len(out[i]) - 1)  # any byte of the line but its newline
        out[i] = out[i][:j] + bytes([out[i][j] ^ rng.randint(1, 255)]) + out[i][j + 1 :]
        return kind, b"".join(out), i + 1
    if kind == "newline":
        out[i] = out[i][:-1]
        return kind, b"".join(out), i + 1
    if kind == "duplicate":
        out.insert(i + 1, out[i])
        return kind, b"".join(out), i + 2
    if kind == "drop":
        del out[i]
        return kind, b"".join(out), i + 1
    out[i], out[i + 1] = out[i + 1], out[i]
    return kind, b"".join(out), i + 1


def test_random_damage_in_the_middle_is_found_at_its_line(
    valid: tuple[Path, list[bytes]], tmp_path: Path, long_run: bool
) -> None:
    source, lines = valid
    rng = random.Random("mutations")
    tally = Tally("corruption")
    directory = tmp_path / "damaged"
    shutil.copytree(source, directory)
    log = directory / "events.jsonl"
    for _ in range(100_000 if long_run else 1_500):
        kind, data, line = mutate(lines, rng)
        log.write_bytes(data)
        with pytest.raises(CorruptLogError) as info:
            for _ in Ledger(directory, readonly=True).history():
                pass
        assert info.value.line == line, (kind, info.value)
        report = Ledger(directory, readonly=True).verify()
        assert not report.ok
        assert report.line == line, (kind, report)
        tally.add(kind)
        tally.add("detected")
    tally.report()


def test_damage_at_the_end_keeps_the_whole_events_before_it(
    valid: tuple[Path, list[bytes]], tmp_path: Path, long_run: bool
) -> None:
    _, lines = valid
    data = b"".join(lines)
    ends = [sum(len(x) for x in lines[: i + 1]) for i in range(len(lines))]
    rng = random.Random("tails")
    tally = Tally("torn tails")
    directory = tmp_path / "tail"
    directory.mkdir()
    log = directory / "events.jsonl"
    cuts = range(len(data) + 1) if long_run else rng.sample(range(len(data) + 1), 400)
    for cut in cuts:
        tail = rng.choice([b"", b"\0" * rng.randint(1, 5000), rng.randbytes(rng.randint(1, 300)), b"\n\n"])
        final = data[:cut] + tail
        log.write_bytes(final)
        whole = sum(1 for end in ends if final[:end] == data[:end])  # a tail "\n" can complete a cut line
        report = Ledger(directory, readonly=True).verify()
        assert report.ok, (cut, report)
        assert report.events == whole, cut
        tally.add("tails")
    tally.report()


@given(st.data())
def test_tamper_evidence(valid: tuple[Path, list[bytes]], data: st.DataObject) -> None:
    """Any edit, insertion, deletion or reordering of whole lines fails verify at the first line that no
    longer fits; an edit whose crc was recomputed is caught by the chain at the line after it (or at the
    line itself when what it now says breaks the lifecycle)."""
    source, lines = valid
    n = len(lines)
    how = data.draw(st.sampled_from(["edit", "forge", "insert", "delete", "move"]))
    i = data.draw(st.integers(0, n - 2))
    out = list(lines)
    if how == "edit":
        out[i] = out[i].replace(b'"era"', b'"ERA"')
        first_bad = i + 1
    elif how == "forge":  # change the content and recompute the crc, as a careful forger would
        body = out[i][: out[i].rindex(b',"crc":"')].replace(b'"era"', b'"ERA"')
        out[i] = b'%s,"crc":"%08x"}\n' % (body, zlib.crc32(body))
        first_bad = i + 2  # or the line itself, if the forged content breaks the lifecycle
    elif how == "insert":
        copied = data.draw(st.integers(0, n - 1))
        out.insert(i, out[copied])
        first_bad = i + 2 if copied == i else i + 1  # the first line that differs from the original
    elif how == "delete":
        del out[i]
        first_bad = i + 1
    else:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        out.insert(j, out.pop(i))
        first_bad = min(i, j) + 1
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "ledger"
        shutil.copytree(source, directory)
        (directory / "events.jsonl").write_bytes(b"".join(out))
        report = Ledger(directory, readonly=True).verify()
    assert not report.ok
    allowed = {first_bad, first_bad - 1} if how == "forge" else {first_bad}
    assert report.line in allowed, (how, i, report)


@given(st.integers(1, N_EVENTS - 1))
def test_cutting_whole_trailing_lines_is_caught_by_the_checkpoint(
    valid: tuple[Path, list[bytes]], keep: int
) -> None:
    import tempfile

    source, lines = valid
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "ledger"
        shutil.copytree(source, directory)
        (directory / "events.jsonl").write_bytes(b"".join(lines[:keep]))
        report = Ledger(directory, readonly=True).verify()
        assert not report.ok
        assert "trailing events are missing" in (report.problem or "")
        with pytest.raises(CorruptLogError, match="trailing events are missing"):
            Ledger(directory, readonly=True).get_all_video_metadata()
