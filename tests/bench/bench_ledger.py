"""Benchmark: the ledger beside the physical limits and the alternatives, measured in one run.

Each measurement runs ``--rounds`` times; rounds are interleaved (round 1 of everything, then round 2, ...)
so that machine drift touches every measurement alike, and ``os.sync()`` runs before each one. The table
gives medians [min..max] and ratios of medians against references measured in the same run.

    python tests/bench/bench_ledger.py              # the size published in docs/performance.md
    python tests/bench/bench_ledger.py --tiny       # seconds; CI runs this to prove it still works
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from ledger import Ledger, VideoMetadata
from ledger.events import Generating, Ready

perf = time.perf_counter
LINE = b'{"type":"generating","v":1,"seq":1,"ts":"2026-11-24T09:00:00.000000Z","spotId":"spot-00042",' + (
    b'"eraId":"era-07","prev":"'
    + b"0" * 64
    + b'","prompt":"A cinematic view of the spot","crc":"00000000"}\n'
)


class Clock:
    """A fast deterministic clock (the system clock costs as much as a syscall)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(microseconds=10)
        return self.now


def entry(i: int, status: str) -> VideoMetadata:
    return VideoMetadata(
        spot_id=f"spot-{i:05d}",
        era_id=f"era-{i % 10:02d}",
        prompt=f"A cinematic, historically faithful view of spot {i} in its era, golden hour",
        status=status,  # type: ignore[arg-type]
        local_path=f"videos/spot-{i:05d}.mp4" if status == "ready" else None,
    )


# -- measurements: each returns (value, unit), higher is better unless the unit says ms ------------------


def raw_fsync(tmp: Path, n: int) -> float:
    fd = os.open(tmp / "raw.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = perf()
    for _ in range(n):
        os.write(fd, LINE)
        os.fsync(fd)
    elapsed = perf() - start
    os.close(fd)
    return n / elapsed


def sqlite_full(tmp: Path, n: int) -> float:
    db = sqlite3.connect(tmp / "bench.db", isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=full")
    db.execute("create table events(id integer primary key, body text)")
    body = LINE.decode()
    start = perf()
    for _ in range(n):
        db.execute("begin")
        db.execute("insert into events(body) values (?)", (body,))
        db.execute("commit")
    elapsed = perf() - start
    db.close()
    return n / elapsed


def _prefilled(tmp: Path, entries: int) -> Ledger:
    ledger = Ledger(tmp / "ledger", clock=Clock())
    for i in range(entries):
        ledger.set_video_metadata(entry(i, "generating"))
    return ledger


def ledger_set(tmp: Path, n: int, entries: int) -> float:
    """set_video_metadata with the snapshot kept current, on a ledger of ``entries`` entries."""
    ledger = _prefilled(tmp, entries)
    start = perf()
    for i in range(n):
        ledger.set_video_metadata(entry(i % entries, ("ready", "generating")[(i // entries) % 2]))
    elapsed = perf() - start
    ledger.close()
    return n / elapsed


def naive_rewrite(tmp: Path, n: int, entries: int) -> float:
    """The task card's approach: read, parse, change one entry, rewrite the whole file atomically."""
    path = tmp / "naive.json"
    items = [msgspec.to_builtins(entry(i, "generating")) for i in range(entries)]
    path.write_text(json.dumps(items))
    start = perf()
    for i in range(n):
        data = json.loads(path.read_text())
        data[i % entries]["status"] = "ready"
        temp = tmp / "naive.json.tmp"
        with open(temp, "w") as f:
            f.write(json.dumps(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        dfd = os.open(tmp, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    return n / (perf() - start)


def _write_log(path: Path, events: int, entries: int) -> None:
    """A valid log of ``events`` events over ``entries`` entries, written directly (fast)."""
    from ledger.events import GENESIS_HASH, encode_line, line_hash

    prev = GENESIS_HASH
    with open(path, "wb") as f:
        for seq in range(1, events + 1):
            i = seq % entries
            ts = f"2026-11-24T09:00:00.{seq % 1000000:06d}Z"
            if (seq // entries) % 2 == 0:
                event: Generating | Ready = Generating(
                    1,
                    seq,
                    ts,
                    f"spot-{i:05d}",
                    f"era-{i % 10:02d}",
                    prev,
                    prompt="A cinematic view, golden hour",
                )
            else:
                event = Ready(1, seq, ts, f"spot-{i:05d}", f"era-{i % 10:02d}", prev, local_path=f"v/{i}.mp4")
            line = encode_line(event)
            f.write(line)
            prev = line_hash(line[:-1])


def rebuild(tmp: Path, log: Path) -> float:
    directory = tmp / "rebuild"
    directory.mkdir()
    shutil.copy(log, directory / "events.jsonl")
    ledger = Ledger(directory)  # opening replays the log once (no checkpoint yet)...
    start = perf()
    report = ledger.rebuild()  # ...and rebuild replays it again from scratch: this is timed
    elapsed = perf() - start
    ledger.close()
    return report.events / elapsed


def msgspec_floor(tmp: Path, log: Path) -> float:
    """Stream the log, msgspec-decode every line into the event types and fold into a dict: the floor."""
    from ledger.events import EventType

    decoder = msgspec.json.Decoder(EventType)
    state: dict[tuple[str, str], object] = {}
    n = 0
    start = perf()
    with open(log, "rb", buffering=1 << 20) as f:
        for line in f:
            event = decoder.decode(line)
            state[(event.spot_id, event.era_id)] = event
            n += 1
    return n / (perf() - start)


def json_fold(tmp: Path, log: Path) -> float:
    state: dict[tuple[str, str], object] = {}
    n = 0
    start = perf()
    with open(log, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            state[(event["spotId"], event["eraId"])] = event
            n += 1
    return n / (perf() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, 1 round: proves the script works")
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args(argv)
    if args.tiny:
        args.rounds = 1
    n = 50 if args.tiny else 1000
    e_small = 20 if args.tiny else 1000
    log_events = 2000 if args.tiny else 200_000
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=args.tmp_dir))
    log = scratch / "events.jsonl"
    _write_log(log, log_events, max(10, log_events // 100))

    cases: dict[str, tuple[Callable[[Path], float], str]] = {
        "append.raw_fsync": (lambda t: raw_fsync(t, n), "appends/s"),
        "append.sqlite_full": (lambda t: sqlite_full(t, n), "events/s"),
        f"set.ledger.E{e_small}": (lambda t: ledger_set(t, n, e_small), "sets/s"),
        f"set.naive.E{e_small}": (lambda t: naive_rewrite(t, max(10, n // 10), e_small), "updates/s"),
        "replay.msgspec_floor": (lambda t: msgspec_floor(t, log), "events/s"),
        "replay.json_fold": (lambda t: json_fold(t, log), "events/s"),
        "replay.ledger_rebuild": (lambda t: rebuild(t, log), "events/s"),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.rounds):
        for key, (run, unit) in cases.items():
            tmp = scratch / f"{key}-{r}"
            tmp.mkdir()
            os.sync()
            value = run(tmp)
            samples[key].append(value)
            shutil.rmtree(tmp)
            print(f"round {r + 1} {key} {value:,.0f} {unit}", file=sys.stderr, flush=True)
    shutil.rmtree(scratch)

    med = {k: statistics.median(v) for k, v in samples.items()}
    print(
        f"machine: {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"msgspec {msgspec.__version__}; {args.rounds} rounds; log {log_events:,} events"
    )
    print("\n| measurement | median | min..max | unit |\n|---|---|---|---|")
    for key, (_, unit) in cases.items():
        print(f"| `{key}` | {med[key]:,.0f} | {min(samples[key]):,.0f}..{max(samples[key]):,.0f} | {unit} |")
    ratios = [
        (
            "ledger set (snapshot kept current) / raw write+fsync",
            f"set.ledger.E{e_small}",
            "append.raw_fsync",
        ),
        ("ledger set / SQLite FULL", f"set.ledger.E{e_small}", "append.sqlite_full"),
        (f"ledger set / naive rewrite, {e_small} entries", f"set.ledger.E{e_small}", f"set.naive.E{e_small}"),
        ("ledger rebuild / msgspec streaming floor", "replay.ledger_rebuild", "replay.msgspec_floor"),
        ("ledger rebuild / stdlib json fold", "replay.ledger_rebuild", "replay.json_fold"),
    ]
    print("\n| ratio (medians, same run) | value |\n|---|---|")
    for label, a, b in ratios:
        print(f"| {label} | {med[a] / med[b]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
