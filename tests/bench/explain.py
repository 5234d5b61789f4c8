"""Evidence for docs/performance.md: where an append's time goes, and how writers share fsyncs.

    python tests/bench/explain.py overhead     # µs of ledger work per append, with fsync taken out
    python tests/bench/explain.py overhead --profile
    python tests/bench/explain.py syscalls     # an append's system calls besides fsync, timed alone
    python tests/bench/explain.py fsyncs       # 1, 2, 4, 8 writer processes: events, fsyncs, CPU time
    python tests/bench/explain.py record       # does a pwrite to a second file make fsyncs dearer?
    python tests/bench/explain.py split        # a real durable append: time in the sync, time around it
    python tests/bench/explain.py set          # a set with 10,000 entries kept current: where it goes
    python tests/bench/explain.py batch        # set_many of 1,000 events: cProfile
    python tests/bench/explain.py crc          # CRC-32: zlib's against ISA-L's (as shipped), lines and 3 MB
    python tests/bench/explain.py rebuild      # rebuild and verify beside the msgspec floor and the limit
    python tests/bench/explain.py writers -w 4 -n 300   # W writer processes, N appends each (for strace)

``writers`` runs the benchmark's group-commit writers (``bench_ledger.GROUP_CHILD``) on one fresh ledger and
prints their fsyncs and CPU per event; run it under ``strace -f -c`` with ``-n 300`` and with ``-n 0`` and
subtract, to count the system calls per event without the start-up.

Both go through the ledger's own FileOps seam: ``overhead`` replaces fsync by nothing (so what is left is
the Python and the other system calls of an append); ``fsyncs`` counts the fsyncs each writer process
makes and the CPU time it uses (``time.process_time``, user + system).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_ledger import GROUP_CHILD, ROOT, Clock, entry, write_log

from ledger import Ledger
from ledger.fileops import FileOps


class NoFsync(FileOps):
    def fsync(self, fd: int) -> None:
        pass


def overhead(n: int, profile: bool) -> None:
    directory = Path(tempfile.mkdtemp()) / "l"
    ledger = Ledger(directory, projection="deferred", clock=Clock(), ops=NoFsync())
    ledger.set_many([entry(i, "generating") for i in range(100)])
    entries = [entry(i % 100, "ready" if (i // 100) % 2 == 0 else "generating") for i in range(n)]

    def run() -> None:
        for e in entries:
            ledger.set_video_metadata(e)

    if profile:
        import cProfile
        import pstats

        cProfile.runctx("run()", globals(), {"run": run}, "/tmp/explain.prof")
        pstats.Stats("/tmp/explain.prof").sort_stats("tottime").print_stats(25)
        return
    walls, cpus = [], []
    for _ in range(5):  # the least of five: what the work costs when nothing else takes the core
        start, cpu = time.perf_counter(), time.thread_time()
        run()
        walls.append(time.perf_counter() - start)
        cpus.append(time.thread_time() - cpu)
    print(
        f"{min(walls) / n * 1e6:.1f} µs of ledger work per append (fsync taken out), "
        f"{min(cpus) / n * 1e6:.1f} µs CPU (least of 5 runs of {n})"
    )


def syscalls(n: int) -> None:
    """The system calls of an uncontended append other than its fsync (queue lock, stat, staged read, sync
    lock, write, fsync-size record), timed alone in a loop, beside the raw loop's one write."""
    import fcntl

    d = Path(tempfile.mkdtemp())
    log = os.open(d / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    queue, sync = (os.open(d / name, os.O_RDWR | os.O_CREAT, 0o644) for name in ("q.lock", "s.lock"))
    staged = os.open(d / "events.jsonl.staged", os.O_RDWR | os.O_CREAT, 0o644)
    line, record, path = b"x" * 240 + b"\n", b"r" * 20, d / "events.jsonl"

    def append_calls() -> float:
        cpu = time.thread_time()
        for _ in range(n):
            fcntl.flock(queue, fcntl.LOCK_EX)
            os.stat(path, follow_symlinks=False)
            os.pread(staged, 1 << 20, 0)
            fcntl.flock(sync, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(log, line)
            fcntl.flock(queue, fcntl.LOCK_UN)
            os.pwrite(sync, record, 0)
            fcntl.flock(sync, fcntl.LOCK_UN)
        return (time.thread_time() - cpu) / n * 1e6

    def write_only() -> float:
        cpu = time.thread_time()
        for _ in range(n):
            os.write(log, line)
        return (time.thread_time() - cpu) / n * 1e6

    print(
        f"an append's 8 system calls besides fsync: {min(append_calls() for _ in range(5)):.1f} µs CPU; "
        f"the raw loop's write alone: {min(write_only() for _ in range(5)):.1f} µs (least of 5 runs of {n})"
    )


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from ledger import Ledger, VideoMetadata
    from ledger.fileops import FileOps

    class Counting(FileOps):
        fsyncs = 0
        def fsync(self, fd):
            Counting.fsyncs += 1
            super().fsync(fd)

    directory, me, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    ledger = Ledger(directory, projection="deferred", ops=Counting())
    Counting.fsyncs = 0
    while time.time() < go:
        time.sleep(0.001)
    cpu = time.process_time()
    for i in range(n):
        status = ("generating", "ready")[i % 2]
        ledger.set_video_metadata(VideoMetadata(spot_id=me, era_id="e", prompt="p", status=status,
                                                local_path="v.mp4" if status == "ready" else None))
    print(Counting.fsyncs, time.process_time() - cpu)
    """
)


def fsyncs(n: int) -> None:
    print("| writers | events/s | events | fsyncs | events per fsync | CPU µs per event |")
    print("|---|---|---|---|---|---|")
    for writers in (1, 2, 4, 8):
        directory = Path(tempfile.mkdtemp()) / "l"
        Ledger(directory).close()
        os.sync()
        go = time.time() + 1.0
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(directory), f"w{w}", str(n), str(go)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for w in range(writers)
        ]
        outs = [p.communicate()[0].split() for p in procs]
        elapsed = time.time() - go
        events = writers * n
        synced = sum(int(o[0]) for o in outs)
        cpu = sum(float(o[1]) for o in outs)
        print(
            f"| {writers} | {events / elapsed:,.0f} | {events:,} | {synced:,} | {events / synced:.2f} "
            f"| {cpu / events * 1e6:,.0f} |"
        )


def record(n: int) -> None:
    """Raw write+fsync appends, without and with a 20-byte pwrite to a second file after each fsync (what
    the group commit's fsynced-size record adds), in interleaved pairs."""
    directory = Path(tempfile.mkdtemp())
    line = b"x" * 290 + b"\n"

    def run(extra: bool) -> float:
        fd = os.open(directory / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        side = os.open(directory / "record", os.O_RDWR | os.O_CREAT, 0o644)
        start = time.perf_counter()
        for i in range(n):
            os.write(fd, line)
            os.fsync(fd)
            if extra:
                os.pwrite(side, i.to_bytes(20, "little"), 0)
        elapsed = time.perf_counter() - start
        os.close(fd)
        os.close(side)
        return n / elapsed

    for _ in range(3):
        print(f"appends/s: plain {run(False):,.0f}, with the record {run(True):,.0f}")


class Timed(FileOps):
    """Times every fsync, rename and write made through the seam."""

    def __init__(self) -> None:
        self.times = {"sync": 0.0, "replace": 0.0, "write": 0.0}
        self.syncs = 0

    def fsync(self, fd: int) -> None:
        start = time.perf_counter()
        super().fsync(fd)
        self.times["sync"] += time.perf_counter() - start
        self.syncs += 1

    def replace(self, src: Path, dst: Path) -> None:
        start = time.perf_counter()
        super().replace(src, dst)
        self.times["replace"] += time.perf_counter() - start

    def write(self, fd: int, data: bytes) -> int:
        start = time.perf_counter()
        written = super().write(fd, data)
        self.times["write"] += time.perf_counter() - start
        return written


def split(n: int) -> None:
    """Durable deferred appends as the benchmark makes them, with the time spent in the sync measured
    through the seam, beside a raw write+fsync loop timed the same way, in interleaved rounds."""
    line = b"x" * 290 + b"\n"
    print(
        "| round | ledger µs per append | in its sync | outside it | raw µs per append | in fsync | outside |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in range(5):
        directory = Path(tempfile.mkdtemp()) / "l"
        with Ledger(directory, projection="deferred", clock=Clock()) as ledger:
            ledger.set_many([entry(i, "generating") for i in range(100)])
        ops = Timed()
        ledger = Ledger(directory, projection="deferred", clock=Clock(), ops=ops)
        entries = [entry(i % 100, "ready" if (i // 100) % 2 == 0 else "generating") for i in range(n)]
        os.sync()
        ops.times["sync"] = 0.0
        start = time.perf_counter()
        for e in entries:
            ledger.set_video_metadata(e)
        total = (time.perf_counter() - start) / n * 1e6
        synced = ops.times["sync"] / n * 1e6
        ledger.close()
        fd = os.open(directory.parent / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.sync()
        in_fsync = 0.0
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, line)
            t = time.perf_counter()
            os.fsync(fd)
            in_fsync += time.perf_counter() - t
        raw = (time.perf_counter() - start) / n * 1e6
        os.close(fd)
        raw_sync = in_fsync / n * 1e6
        print(
            f"| {r + 1} | {total:.0f} | {synced:.0f} | {total - synced:.0f} | {raw:.0f} | {raw_sync:.0f} "
            f"| {raw - raw_sync:.0f} |"
        )


def set_profile(n: int, entries: int) -> None:
    """``n`` sets on a ledger of ``entries`` entries with the snapshot kept current: ms per set, the part
    in syncs, renames and writes (through the seam), then a cProfile of the same loop."""
    import cProfile
    import pstats

    directory = Path(tempfile.mkdtemp()) / "l"
    with Ledger(directory, projection="deferred", clock=Clock()) as ledger:
        ledger.set_many([entry(i, "generating") for i in range(entries)])
        ledger.rebuild()
    ops = Timed()
    ledger = Ledger(directory, clock=Clock(), ops=ops)
    for status in ("ready", "generating"):
        batch = [entry(i % entries, status) for i in range(n)]
        os.sync()
        ops.times = dict.fromkeys(ops.times, 0.0)
        ops.syncs = 0
        start = time.perf_counter()
        for e in batch:
            ledger.set_video_metadata(e)
        per = (time.perf_counter() - start) / n * 1e3
        parts = ", ".join(f"{k} {v / n * 1e3:.2f}" for k, v in ops.times.items())
        print(f"{status}: {per:.2f} ms per set ({parts}; {ops.syncs / n:.0f} syncs per set)")
    batch = [entry(i % entries, "ready") for i in range(n)]
    cProfile.runctx(
        "for e in batch: ledger.set_video_metadata(e)", globals(), {"batch": batch, "ledger": ledger},
        "/tmp/explain.prof",
    )  # fmt: skip
    pstats.Stats("/tmp/explain.prof").sort_stats("tottime").print_stats(25)


def batch_profile(n: int) -> None:
    """``n`` events in set_many batches of 1,000 (deferred): events/s, then a cProfile of the same."""
    import cProfile
    import pstats

    directory = Path(tempfile.mkdtemp()) / "l"
    size = min(n, 1000)
    ledger = Ledger(directory, projection="deferred", clock=Clock())
    ledger.set_many([entry(i, "generating") for i in range(size)])
    batches = [
        [entry(i, "ready" if r % 2 == 0 else "generating") for i in range(size)] for r in range(n // size)
    ]
    start = time.perf_counter()
    for b in batches[: len(batches) // 2]:
        ledger.set_many(b)
    print(f"{size * (len(batches) // 2) / (time.perf_counter() - start):,.0f} events/s")
    cProfile.runctx(
        "for b in rest: ledger.set_many(b)", globals(), {"rest": batches[len(batches) // 2 :], "ledger": ledger},
        "/tmp/explain.prof",
    )  # fmt: skip
    pstats.Stats("/tmp/explain.prof").sort_stats("tottime").print_stats(14)


def crc(n: int) -> None:
    """zlib's CRC-32 against ISA-L's (what the ledger uses): per framed body of a 240-byte line, with the
    slice a reader makes, and over a 3 MB snapshot; medians of 7 interleaved repeats."""
    import operator
    import zlib

    from isal import isal_zlib

    path = Path(tempfile.mkdtemp()) / "events.jsonl"
    write_log(path, n, 10_000)  # the benchmark's own lines
    lines = path.read_bytes().split(b"\n")[:-1]
    body = operator.itemgetter(slice(None, -18))
    snapshot = os.urandom(3_000_000)
    results: dict[str, tuple[list[float], list[float]]] = {"zlib": ([], []), "isal": ([], [])}
    for _ in range(7):
        for name, fn in (("zlib", zlib.crc32), ("isal", isal_zlib.crc32)):
            start = time.perf_counter()
            list(map(fn, map(body, lines)))
            results[name][0].append((time.perf_counter() - start) / n * 1e9)
            start = time.perf_counter()
            fn(snapshot)
            results[name][1].append((time.perf_counter() - start) * 1e3)
    average = sum(map(len, lines)) / n
    for name, (per_line, big) in results.items():
        print(
            f"{name}: {sorted(per_line)[3]:.0f} ns per {average:.0f}-byte line (with its slice), "
            f"{sorted(big)[3]:.2f} ms per 3 MB"
        )


REPLAY_LIMIT = textwrap.dedent(
    """
    import itertools, operator, os, sys, time
    from ledger import Ledger, lifecycle
    from ledger.events import EventType, check_lines, decode_events, line_hashes
    import msgspec
    mode, log = sys.argv[1], sys.argv[2]
    key_of, seq_of, ts_of, prev_of = (
        operator.attrgetter(*a) for a in (("spot_id", "era_id"), ("seq",), ("ts",), ("prev",))
    )
    start, n = time.perf_counter(), 0
    if mode == "floor":  # bench_ledger's replay.msgspec_floor
        decoder, state = msgspec.json.Decoder(EventType), {}
        with open(log, "rb", buffering=1 << 20) as f:
            for line in f:
                e = decoder.decode(line)
                state[(e.spot_id, e.era_id)] = e
                n += 1
    elif mode.startswith("limit"):  # the format's checks and a last-event fold, nothing else
        fd, offset, pending, last, seq = os.open(log, os.O_RDONLY), 0, b"", {}, 0
        statuses, last_ts = {}, ""
        while chunk := os.pread(fd, 1 << 20, offset):
            offset += len(chunk)
            data = pending + chunk if pending else chunk
            lines = data.split(b"\\n")
            pending = lines.pop()
            assert check_lines(lines)
            events = decode_events(memoryview(data)[: len(data) - len(pending)])
            assert len(events) == len(lines)
            assert list(map(seq_of, events)) == list(range(seq + 1, seq + 1 + len(events)))
            seq = events[-1].seq
            if mode == "limit+chain":  # the SHA-256 chain, as verify checks it
                hashes = line_hashes(lines)
                assert list(map(prev_of, events[1:])) == hashes[:-1]
            keys = list(map(key_of, events))
            if mode == "limit+rules":  # the lifecycle and the time order, as rebuild checks them
                times = list(map(ts_of, events))
                assert not any(map(operator.lt, times, [last_ts, *times]))
                last_ts = times[-1]
                assert lifecycle.first_illegal(events, statuses, keys) is None
            last.update(zip(keys, events))
        n = seq
    elif mode == "rebuild":
        directory = os.path.join(os.path.dirname(log), "rebuild")
        os.makedirs(directory, exist_ok=True)
        if not os.path.exists(os.path.join(directory, "events.jsonl")):
            os.symlink(log, os.path.join(directory, "events.jsonl"))
        ledger = Ledger(directory, follow_symlinks=True, projection="deferred")
        start = time.perf_counter()
        n = ledger.rebuild().events
    else:
        directory = os.path.join(os.path.dirname(log), "verify")
        os.makedirs(directory, exist_ok=True)
        if not os.path.exists(os.path.join(directory, "events.jsonl")):
            os.symlink(log, os.path.join(directory, "events.jsonl"))
        report = Ledger(directory, follow_symlinks=True, readonly=True).verify()
        assert report.ok, report
        n = report.events
    rate = n / (time.perf_counter() - start)
    hwm = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(rate, hwm)
    """
)


def rebuild_limit(n: int, rounds: int = 5) -> None:
    """rebuild and verify of an ``n``-event log (10,000 entries) beside the msgspec floor
    (``bench_ledger.py``'s) and the limit: a loop with only the format's checks (chunked read, the lines'
    framing and CRC-32 by ``check_lines``, one ``decode_lines`` per chunk, the seq check) and a last-event
    fold; ``limit+rules`` adds the lifecycle and time checks as rebuild makes them, ``limit+chain`` the
    SHA-256 chain as verify checks it (but not the rules). Fresh processes,
    interleaved rounds; the ratios are per round, then their median and range."""
    import statistics

    directory = Path(tempfile.mkdtemp())
    log = directory / "events.jsonl"
    write_log(log, n, 10_000)
    modes = ["floor", "limit", "limit+rules", "limit+chain", "rebuild", "verify"]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    peaks: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            os.sync()
            out = subprocess.run(
                [sys.executable, "-c", REPLAY_LIMIT, mode, str(log)], cwd=ROOT, capture_output=True,
                text=True, check=True,
            ).stdout.split()  # fmt: skip
            rates[mode].append(float(out[0]))
            peaks[mode].append(float(out[1]))
            print(
                f"round {r + 1} {mode}: {float(out[0]):,.0f} events/s, peak {float(out[1]):.1f} MiB",
                flush=True,
            )
    print("\n| ÷ floor, same round | median | min..max | peak MiB (max) |\n|---|---|---|---|")
    for mode in modes[1:]:
        ratios = [a / b for a, b in zip(rates[mode], rates["floor"], strict=True)]
        print(
            f"| {mode} | {statistics.median(ratios):.2f} | {min(ratios):.2f}..{max(ratios):.2f} "
            f"| {max(peaks[mode]):.1f} |"
        )
    print(
        f"| (floor events/s, median) | {statistics.median(rates['floor']):,.0f} | | {max(peaks['floor']):.1f} |"
    )


def writers(w: int, n: int, delay: float) -> None:
    directory = Path(tempfile.mkdtemp()) / "l"
    Ledger(directory).close()
    go = time.time() + 1.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GROUP_CHILD, str(directory), f"w{i}", str(n), str(go), str(delay)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(w)
    ]
    outs = [p.communicate()[0].split() for p in procs]
    events = max(1, w * n)
    print(
        f"{w} writers x {n} events: {sum(int(o[0]) for o in outs)} fsyncs, "
        f"{sum(float(o[1]) for o in outs) / events * 1e6:,.0f} CPU µs per event"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what",
        choices=[
            "overhead",
            "syscalls",
            "fsyncs",
            "record",
            "split",
            "set",
            "batch",
            "crc",
            "rebuild",
            "writers",
        ],
    )
    parser.add_argument("-w", type=int, default=4, help="writers: how many writer processes")
    parser.add_argument("--slow", type=float, default=0.0, help="writers: seconds added to each fsync")
    parser.add_argument("-n", type=int, default=None, help="events (per writer for fsyncs)")
    parser.add_argument("--profile", action="store_true", help="overhead: cProfile instead of a timing")
    args = parser.parse_args()
    if args.what == "overhead":
        overhead(args.n or 5000, args.profile)
    elif args.what == "syscalls":
        syscalls(args.n or 5000)
    elif args.what == "fsyncs":
        fsyncs(args.n or 300)
    elif args.what == "split":
        split(args.n or 1000)
    elif args.what == "set":
        set_profile(args.n or 200, 10_000 if args.n is None else 200)
    elif args.what == "batch":
        batch_profile(args.n or 20_000)
    elif args.what == "writers":
        writers(args.w, 300 if args.n is None else args.n, args.slow)
    elif args.what == "crc":
        crc(args.n or 50_000)
    elif args.what == "rebuild":
        rebuild_limit(args.n or 1_000_000)
    else:
        record(args.n or 1500)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
