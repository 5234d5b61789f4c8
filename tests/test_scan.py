"""Reading the log in runs: the C-level checks over a whole chunk agree with reading it line by line.

The scan checks and decodes each chunk of the log at once and falls back to one line at a time only
where something is off (``ledger/scan.py``, ``Scan.runs``). These tests hold the fast path to the plain
per-line rules: the same events, the same end, the same first problem at the same line, for logs that
span many chunks, for damage anywhere, and for lines crafted to look whole to a batch decoder.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import CorruptLogError, Ledger
from ledger.backend import GENESIS
from ledger.events import (
    FORMAT_VERSION,
    GENESIS_HASH,
    EventType,
    Generating,
    Ready,
    check_line,
    check_lines,
    decode_event,
    encode_line,
    line_hash,
)
from ledger.fileops import FileOps
from ledger.lifecycle import is_legal
from ledger.log import EventLog
from projections.entries import apply


def chained(events: list[EventType]) -> bytes:
    """The log of ``events`` (their seq and prev set here), each line framed and chained."""
    out, prev = [], GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        line = encode_line(msgspec.structs.replace(event, seq=seq, prev=prev))
        out.append(line)
        prev = line_hash(line[:-1])
    return b"".join(out)


def framed(body: bytes) -> bytes:
    """``body`` framed with its crc, as the log writes a line (newline excluded)."""
    return b'%s,"crc":"%08x"}' % (body, zlib.crc32(body))


def cycle(n: int, entries: int = 50, *, prompt_size: int = 30) -> list[EventType]:
    """``n`` legal events: each entry in turn generating, ready, generating, ... with distinct times."""
    events: list[EventType] = []
    for i in range(n):
        spot, ts = f"spot-{i % entries:03d}", f"2026-11-24T09:{i // 60_000 % 60:02d}:00.{i % 60_000:06d}Z"
        envelope = (FORMAT_VERSION, 1, ts, spot, "era", GENESIS_HASH)
        if (i // entries) % 2 == 0:
            events.append(Generating(*envelope, prompt="p" * prompt_size, local_path=f"v/{spot}.mp4"))
        else:
            events.append(Ready(*envelope, local_path=f"v/{spot}.mp4"))
    return events


def line_by_line(path: Path) -> tuple[list[EventType], str | None, int | None]:
    """The reference reader: every line checked and decoded on its own, in order (what the scan did
    before it read in runs). Returns the events, and the reason and line of the first problem."""
    events: list[EventType] = []
    prev = GENESIS_HASH
    lines = path.read_bytes().split(b"\n")[:-1]
    for number, line in enumerate(lines, start=1):
        if not check_line(line):
            return events, "damaged", number
        try:
            event = decode_event(line)
        except msgspec.MsgspecError:
            return events, "undecodable", number
        if event.seq != number or event.v > FORMAT_VERSION or event.prev != prev:
            return events, "misfit", number
        events.append(event)
        prev = line_hash(line)
    return events, None, None


def read(path: Path, *, chain: bool) -> tuple[list[EventType], str | None, int | None]:
    log = EventLog(path, FileOps())
    scan = log.scan(GENESIS, chain=chain)
    events: list[EventType] = []
    try:
        for _, run in scan.runs():
            events.extend(run)
    except CorruptLogError as exc:
        return events, exc.reason, exc.line
    assert scan.end.seq == len(events)
    return events, None, None


def test_a_log_of_many_chunks_reads_as_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(chained(cycle(12_000, prompt_size=200)))  # about 4 MiB: runs of 1 MiB, lines across
    assert path.stat().st_size > 3 << 20
    expected, problem, _ = line_by_line(path)
    assert problem is None
    for chain in (False, True):
        assert read(path, chain=chain) == (expected, None, None)
    scan = EventLog(path, FileOps()).scan(GENESIS)
    runs = list(scan.runs())
    assert len(runs) > 3
    assert [line for lines, _ in runs for line in lines] == path.read_bytes().split(b"\n")[:-1]
    assert scan.end.at == path.stat().st_size
    assert scan.end.hash == line_hash(runs[-1][0][-1])


@pytest.mark.parametrize("seed", range(30))
def test_damage_anywhere_is_found_at_the_line_a_line_by_line_reader_names(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "events.jsonl"
    good = chained(cycle(6_000, prompt_size=150))
    lines = good.split(b"\n")[:-1]
    i = rng.randrange(len(lines) - 1)
    kind = rng.choice(["flip", "duplicate", "drop", "swap", "crc-case", "v2"])
    if kind == "flip":
        j = rng.randrange(len(lines[i]))
        lines[i] = lines[i][:j] + bytes([lines[i][j] ^ rng.randint(1, 255)]) + lines[i][j + 1 :]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "drop":
        del lines[i]
    elif kind == "swap":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif kind == "crc-case":  # a crc spelled in capitals is not the crc this format writes
        lines[i] = lines[i][:-10] + lines[i][-10:-2].upper() + lines[i][-2:]
        if lines[i] == good.split(b"\n")[i]:
            lines[i] = lines[i][:-3] + b"G" + lines[i][-2:]
    else:  # a newer format version, with a valid crc: refused, not misread
        newer = b'"v":%d,' % (FORMAT_VERSION + 1)
        lines[i] = framed(lines[i][:-18].replace(b'"v":%d,' % FORMAT_VERSION, newer))
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected, problem, at = line_by_line(path)
    events, reason, line = read(path, chain=True)
    assert problem is not None, kind
    assert (events, line) == (expected, at), kind
    assert reason is not None


def test_a_line_holding_two_events_is_refused_though_its_crc_is_right(tmp_path: Path) -> None:
    """A batch decoder would read two events from it; the scan must see what a line-by-line reader sees."""
    lines = chained(cycle(300)).split(b"\n")[:-1]
    first, second = lines[100][:-18], lines[101][:-18]
    lines[100:102] = [framed(first + b"}" + second)]  # one line, both events, one valid crc
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    events, reason, line = read(path, chain=False)
    assert line == 101
    assert reason is not None and reason.startswith("undecodable event")
    assert events == line_by_line(path)[0]
    assert len(events) == 100


def test_a_line_that_leaves_its_object_open_is_refused(tmp_path: Path) -> None:
    """``...,"x":[{"a":"b","crc":"…"}`` ends the way a whole line does; the next line cannot continue it."""
    lines = chained(cycle(300)).split(b"\n")[:-1]
    lines[150] = framed(lines[150][:-19] + b',"x":[{"a":"b"')
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    events, reason, line = read(path, chain=False)
    assert (len(events), line) == (150, 151)
    assert reason is not None and reason.startswith("undecodable event")


valid_lines = [line for line in chained(cycle(40)).split(b"\n")[:-1]]


@given(
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 400), st.integers(0, 255)), max_size=20), st.data()
)
def test_check_lines_agrees_with_check_line(damage: list[tuple[int, int, int]], data: st.DataObject) -> None:
    lines = list(valid_lines[: data.draw(st.integers(1, 40), label="count")])
    for i, j, byte in damage:
        i %= len(lines)
        line = lines[i]
        j %= len(line) + 1
        how = data.draw(st.sampled_from(["set", "cut", "insert"]), label="how")
        if how == "set" and j < len(line):
            lines[i] = line[:j] + bytes([byte]) + line[j + 1 :]
        elif how == "cut":
            lines[i] = line[:j]
        else:
            lines[i] = line[:j] + bytes([byte]) + line[j:]
    expected = all(check_line(line) and line.startswith(b"{") for line in lines)
    assert check_lines(lines) == expected


def reference_verify(events: list[EventType]) -> tuple[str | None, int | None]:
    """verify's lifecycle and time checks, one event at a time (as it was written before runs)."""
    state: dict[tuple[str, str], object] = {}
    last_ts = ""
    for event in events:
        current = state.get(event.key)
        before = None if current is None else current.status  # type: ignore[attr-defined]
        if not is_legal(before, event.STATUS):
            return f"illegal change {before or 'new'} -> {event.type}", event.seq
        if event.ts < last_ts:
            return f"time goes backwards ({event.ts} after {last_ts})", event.seq
        last_ts = event.ts
        state[event.key] = apply(current, event)  # type: ignore[arg-type]
    return None, None


@pytest.mark.parametrize("where", [0, 1, 4095, 4096, 4097, 7000, 11_998])
@pytest.mark.parametrize("kind", ["illegal", "backwards", "both", "backwards-then-illegal"])
def test_verify_names_the_first_misstep_as_one_event_at_a_time_would(
    tmp_path: Path, where: int, kind: str
) -> None:
    events = cycle(12_000, prompt_size=60)
    early = "2026-11-24T08:00:00.000000Z"
    stray = Ready(FORMAT_VERSION, 1, events[where].ts, "new-spot", "era", GENESIS_HASH, local_path="x")
    if kind == "illegal":  # new -> ready
        events.insert(where, stray)
    elif kind == "backwards":  # (the very first event has nothing before it to be earlier than)
        events[max(where, 1)] = msgspec.structs.replace(events[max(where, 1)], ts=early)
    elif kind == "both":  # both at the same event: the lifecycle is checked first
        events.insert(where, msgspec.structs.replace(stray, ts=early))
    else:
        events[where + 1] = msgspec.structs.replace(events[where + 1], ts=early)
        events.insert(where + 2, stray)
    directory = tmp_path / "ledger"
    directory.mkdir()
    (directory / "events.jsonl").write_bytes(chained(events))
    stored = [decode_event(line) for line in (directory / "events.jsonl").read_bytes().split(b"\n")[:-1]]
    problem, line = reference_verify(stored)
    assert problem is not None
    report = Ledger(directory, readonly=True).verify()
    assert (report.problem, report.line, report.events) == (problem, line, line)


def test_verify_compares_times_across_the_edge_of_a_run(tmp_path: Path) -> None:
    events = cycle(12_000, prompt_size=60)
    directory = tmp_path / "ledger"
    directory.mkdir()
    log = directory / "events.jsonl"
    log.write_bytes(chained(events))
    first_of_second_run = len(next(EventLog(log, FileOps()).scan(GENESIS).runs())[1])
    late = events[first_of_second_run]
    events[first_of_second_run] = msgspec.structs.replace(late, ts="2026-11-24T08:00:00.000000Z")
    log.write_bytes(chained(events))  # the same length: the same runs
    report = Ledger(directory, readonly=True).verify()
    assert report.line == first_of_second_run + 1
    assert report.problem is not None and report.problem.startswith("time goes backwards")
