"""What the Merkle tree costs and what a proof costs, measured (docs/performance.md's protocol).

    python tests/bench/bench_proofs.py                  # 1,000,000 events; appends with the tree on and off
    python tests/bench/bench_proofs.py --tiny           # seconds: what CI runs

- append: inline appends (set_video_metadata, one fsynced event each, the snapshot and the tree written
  after each) with the tree on and with it off (``TreeFile.keep`` made a no-op), interleaved rounds;
  the ratio on/off per round (target ≥ 0.95). Beside it, the tree's upkeep timed inside the tree-on
  appends: the CPU time (``time.process_time``) spent in ``TreeFile.keep`` per append against the CPU time
  of the whole append, per round (target ≤ 0.05): another process's load slows both alike, so this share
  decides where the wall-clock ratio's quartiles cannot.
- at N events (write_log's log, every entry of a few events): the tree's first build; ``prove`` of one
  entry against the last signed checkpoint and ``verify --previous`` (``Proofs.extends``) of a checkpoint
  signed 1,000 events earlier: time per call (target < 50 ms) and the bytes each read (through the
  ledger's file operations: the log, the tree files), against the log's size; the bundle's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger import Ledger
from ledger.events import GENESIS_HASH, Generating, Pending, Ready, VideoMetadata, encode_line, line_hash
from ledger.fileops import FileOps
from ledger.note import generate_key
from ledger.proofs import encode_bundle, verify_bundle
from ledger.tree import TreeFile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Protocol, Ratio


class Counting(FileOps):
    """The ledger's file operations, counting the bytes read (in all, and by file name)."""

    def __init__(self) -> None:
        self.read = 0
        self.names: dict[int, str] = {}
        self.by_name: dict[str, int] = {}

    def open_regular(self, path: Path, flags: int, mode: int = 0o666) -> int:
        fd = super().open_regular(path, flags, mode)
        self.names[fd] = path.name
        return fd

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        data = super().pread(fd, size, offset)
        self.read += len(data)
        name = self.names.get(fd, "other")
        self.by_name[name] = self.by_name.get(name, 0) + len(data)
        return data


def write_log(path: Path, events: int, per_entry: int) -> None:
    """A valid log of ``events`` events, each entry pending, generating, ready, generating, ... for
    ``per_entry`` events, then the next entry (about 280 bytes a line)."""
    prev = GENESIS_HASH
    kinds = (Generating, Ready)
    with open(path, "wb") as f:
        for seq in range(1, events + 1):
            i, k = divmod(seq - 1, per_entry)
            ts = f"2026-11-23T{9 + seq // 1_000_000:02d}:00:00.000000Z"
            spot, era = f"spot-{i:07d}", f"era-{i % 10:02d}"
            ev: Pending | Generating | Ready
            if k == 0:
                ev = Pending(1, seq, ts, spot, era, prev, prompt="A cinematic view, golden hour")
            elif kinds[(k - 1) % 2] is Generating:
                ev = Generating(1, seq, ts, spot, era, prev, prompt="A cinematic view, golden hour")
            else:
                ev = Ready(1, seq, ts, spot, era, prev, local_path=f"videos/{spot}.mp4")
            line = encode_line(ev)
            f.write(line)
            prev = line_hash(line[:-1])


@contextmanager
def tree_off() -> Iterator[None]:
    keep = TreeFile.keep
    TreeFile.keep = lambda self, store, head: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        TreeFile.keep = keep  # type: ignore[method-assign]


UPKEEP = {"cpu": 0.0, "wall": 0.0}
"""CPU and wall time spent in TreeFile.keep during one round's tree-on appends."""


@contextmanager
def timed_keep() -> Iterator[None]:
    keep = TreeFile.keep

    def timed(self: TreeFile, store: object, head: object) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        keep(self, store, head)  # type: ignore[arg-type]
        UPKEEP["cpu"] += time.process_time() - cpu
        UPKEEP["wall"] += time.perf_counter() - wall

    TreeFile.keep = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        TreeFile.keep = keep  # type: ignore[method-assign]


def appends(base: Path, n: int, tree: bool) -> dict[str, float]:
    """``n`` inline set_video_metadata calls on a fresh ledger of 1,000 events: appends per second, and
    with the tree on, the CPU and wall microseconds per append spent in the tree's upkeep and in all."""
    directory = base / f"append-{'on' if tree else 'off'}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    write_log(directory / "events.jsonl", 1000, 4)
    UPKEEP.update(cpu=0.0, wall=0.0)
    with Ledger(directory) as ledger:
        ledger.rebuild()
        with tree_off() if not tree else timed_keep():
            cpu, start = time.process_time(), time.perf_counter()
            for i in range(n):
                ledger.set_video_metadata(
                    VideoMetadata(spot_id="bench", era_id="era", prompt=f"p{i}", status="pending")
                )
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if not tree:
        return {"append.tree_off": n / elapsed}
    return {
        "append.tree_on": n / elapsed,
        "upkeep.cpu_pct": 100 * UPKEEP["cpu"] / cpu if cpu else 0.0,
        "upkeep.wall_pct": 100 * UPKEEP["wall"] / elapsed,
        "one": 1.0,
        "upkeep.cpu_us": UPKEEP["cpu"] / n * 1e6,
        "append.cpu_us": cpu / n * 1e6,
        "upkeep.wall_us": UPKEEP["wall"] / n * 1e6,
        "append.wall_us": elapsed / n * 1e6,
    }


def at_scale(base: Path, events: int, calls: int) -> dict[str, object]:
    directory = base / "big"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    write_log(directory / "events.jsonl", events - 1000, 4)
    figures: dict[str, object] = {"events": events, "log bytes": os.path.getsize(directory / "events.jsonl")}
    key = generate_key("bench.example/ledger")
    ops = Counting()
    with Ledger(directory, projection="deferred", ops=ops) as ledger:
        start = time.perf_counter()
        ledger.rebuild()  # the snapshot, and the tree's first build (the whole log read once more)
        figures["rebuild with the tree's first build s"] = round(time.perf_counter() - start, 2)
        old = ledger.proofs().sign(key)
    # 1,000 more events, then the measured calls from a fresh handle (a new process would do the same)
    with Ledger(directory, projection="inline") as ledger:
        for i in range(1000):
            ledger.set_video_metadata(
                VideoMetadata(spot_id="late", era_id="era", prompt=f"p{i}", status="pending")
            )
        ledger.proofs().sign(key)
    spot = f"spot-{(events // 2) // 4:07d}"
    era = f"era-{((events // 2) // 4) % 10:02d}"
    for name, call in (
        ("prove", lambda proofs: proofs.prove(spot, era)),
        ("verify --previous", lambda proofs: proofs.extends(old, [key.verifier])),
    ):
        times, reads = [], []
        for _ in range(calls):
            ops = Counting()
            with Ledger(directory, readonly=False, ops=ops) as ledger:
                proofs = ledger.proofs()
                ops.read, ops.by_name = 0, {}
                start = time.perf_counter()
                result = call(proofs)
                times.append((time.perf_counter() - start) * 1000)
                reads.append(ops.read)
        figures[f"{name} ms (median of {calls})"] = round(statistics.median(times), 2)
        figures[f"{name} ms (max)"] = round(max(times), 2)
        figures[f"{name} bytes read"] = int(statistics.median(reads))
        figures[f"{name} bytes read by file"] = ops.by_name
        if name == "prove":
            data = encode_bundle(result)  # type: ignore[arg-type]
            figures["bundle bytes"] = len(data)
            figures["bundle records"] = len(result.records)  # type: ignore[attr-defined]
            start = time.perf_counter()
            verify_bundle(data, [key.verifier])
            figures["verify-proof ms"] = round((time.perf_counter() - start) * 1000, 2)
    figures["tree files bytes"] = sum(
        os.path.getsize(directory / n) for n in ("merkle.tree", "merkle.keys", "merkle.index")
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=300, help="appends per round and case")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--calls", type=int, default=15, help="prove and verify --previous calls timed")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--tiny", action="store_true", help="a few seconds (CI): 3,000 events, 2 rounds")
    parser.add_argument("--dir", type=Path, help="where to work (default: a temporary directory)")
    parser.add_argument("--appends-only", action="store_true", help="skip the measures at --events")
    args = parser.parse_args()
    if args.tiny:
        args.events, args.appends, args.rounds, args.calls, args.max_load = 3000, 20, 2, 3, 1e9
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-proofs-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        protocol = Protocol(args.rounds, args.max_load)
        protocol.run(
            [
                ("append.tree_on", lambda r: appends(base, args.appends, True)),
                ("append.tree_off", lambda r: appends(base, args.appends, False)),
            ],
            lambda line: print(line, file=sys.stderr),
        )
        print(protocol.header())
        for key, unit in (
            ("append.tree_on", "appends/s"),
            ("append.tree_off", "appends/s"),
            ("upkeep.cpu_us", "µs CPU per append in TreeFile.keep"),
            ("append.cpu_us", "µs CPU per tree-on append"),
            ("upkeep.wall_us", "µs per append in TreeFile.keep"),
            ("append.wall_us", "µs per tree-on append"),
        ):
            s = protocol.summary(key)
            if s is not None:
                print(f"{key}: median {s.median:,.1f} {unit} (q1..q3 {s.q1:,.1f}..{s.q3:,.1f})")
        ratios = [
            Ratio("append, tree on / off (wall clock)", "append.tree_on", "append.tree_off", "≥ 0.95"),
            Ratio("tree upkeep, % of the append's CPU time", "upkeep.cpu_pct", "one", "≤ 5"),
            Ratio("tree upkeep, % of the append's wall time", "upkeep.wall_pct", "one", "≤ 5"),
        ]
        print("\n".join(protocol.ratio_table(ratios)))
        if not args.appends_only:
            print(json.dumps(at_scale(base, args.events, args.calls), indent=1))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
