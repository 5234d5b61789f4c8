"""Benchmark: the ledger beside the physical limits and the alternatives, measured in one run.

Every measurement runs ``--rounds`` times (12 by default) under the protocol of ``protocol.py``: rounds
interleaved (round 1 of everything, then round 2, ...), ``os.sync()`` before each measurement, the load
average read before each round and a round above ``--max-load`` dropped and counted; each ratio is taken
per round against a reference measured in that round, and quoted as median, quartiles and min..max with
its verdict (met only when the lower quartile clears the target).

    python tests/bench/bench_ledger.py              # the size published in docs/performance.md
    python tests/bench/bench_ledger.py --tiny       # seconds; CI runs this to prove it still works
    python tests/bench/bench_ledger.py --only append,set,replay

Groups (``--only``): append, set, batch, concurrent, group, replay, tail, open, watch.

``group`` is the group commit measured where it exists for: 1 and 4 writer processes on a simulated slow
disk (the FileOps seam makes each fsync sleep 2 ms, then fsync) and on the real disk, each writer reporting
its fsyncs and its CPU time (``resource.getrusage``: user + system) over its appends.
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
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ledger import Ledger, VideoMetadata
from ledger.events import GENESIS_HASH, Generating, Ready, encode_line, line_hash
from ledger.fileops import FileOps
from ledger.projector import encode_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Protocol, Ratio  # a sibling script, not a package

perf = time.perf_counter
ROOT = Path(__file__).resolve().parents[2]
LINE = (
    b'{"type":"generating","v":1,"seq":1,"ts":"2026-11-24T09:00:00.000000Z","spotId":"spot-00042",'
    b'"eraId":"era-07","prev":"'
    + b"0" * 64
    + b'","prompt":"A cinematic view of the spot","crc":"00000000"}\n'
)


class Clock:
    """A fast deterministic clock (reading the system clock costs as much as a syscall)."""

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


def flip(status: str) -> str:
    return "ready" if status == "generating" else "generating"


# -- the references --------------------------------------------------------------------------------------


CPU = time.thread_time
"""CPU time of this thread, user + system: what other work on the machine moves least."""
OUTSIDE_FSYNC = "CPU µs/append outside fsync"


def raw_fsync(tmp: Path, n: int) -> tuple[float, float]:
    """Appends a second, and the CPU µs per append outside the fsync calls."""
    fd = os.open(tmp / "raw.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    in_fsync = 0.0
    cpu, start = CPU(), perf()
    for _ in range(n):
        os.write(fd, LINE)
        began = CPU()
        os.fsync(fd)
        in_fsync += CPU() - began
    elapsed, cpu = perf() - start, CPU() - cpu
    os.close(fd)
    return n / elapsed, (cpu - in_fsync) / n * 1e6


def raw_batched(tmp: Path, n: int, batch: int) -> float:
    fd = os.open(tmp / "raw.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    block = LINE * batch
    start = perf()
    for _ in range(n // batch):
        os.write(fd, block)
        os.fsync(fd)
    elapsed = perf() - start
    os.close(fd)
    return n / elapsed


def sqlite_full(tmp: Path, n: int) -> float:
    db = sqlite3.connect(tmp / "bench.db", isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=full")
    db.execute("create table if not exists events(id integer primary key, body text)")
    body = LINE.decode()
    start = perf()
    for _ in range(n):
        db.execute("begin")
        db.execute("insert into events(body) values (?)", (body,))
        db.execute("commit")
    elapsed = perf() - start
    db.close()
    return n / elapsed


_es_job: type | None = None


def eventsourcing_save(tmp: Path, n: int) -> float | None:
    """The eventsourcing library on SQLite, save() after every event (as ../shared/bench/anchors.py)."""
    global _es_job
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return None
    if _es_job is None:  # the library registers each aggregate class once per process

        class Job(Aggregate):
            @event("Changed")
            def change(self, status: str) -> None:
                self.status = status

        _es_job = Job
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp / "es.db")})
    job = _es_job()
    app.save(job)
    start = perf()
    for i in range(n):
        job.change(status=str(i))
        app.save(job)
    return n / (perf() - start)


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


def set_io_floor(tmp: Path, n: int, entries: int) -> float:
    """What a set with the snapshot kept current must do on disk, with no CPU of its own: append a line
    and fsync it, replace the snapshot of ``entries`` entries durably (temp file, write, fsync, rename,
    directory fsync) and its checkpoint (temp file, rename). The ceiling of ``set.ledger`` on this disk."""
    stamp = "2026-11-24T09:00:00.000000Z"
    state = {
        e.key: msgspec.structs.replace(e, created_at=stamp, updated_at=stamp)
        for e in (entry(i, "generating") for i in range(entries))
    }
    data = encode_snapshot(state)
    log, snapshot, checkpoint = tmp / "events.jsonl", tmp / "generated-videos.json", tmp / "checkpoint.json"
    snapshot.write_bytes(data)
    checkpoint.write_bytes(b"{}" * 150)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    dfd = os.open(tmp, os.O_RDONLY)
    start = perf()
    for _ in range(n):
        os.write(fd, LINE)
        os.fsync(fd)
        for target, body, durable in ((snapshot, data, True), (checkpoint, b"{}" * 150, False)):
            temp = target.with_name(target.name + ".tmp")
            tfd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(tfd, body)
            if durable:
                os.fsync(tfd)
            os.close(tfd)
            os.replace(temp, target)
            if durable:
                os.fsync(dfd)
    elapsed = perf() - start
    os.close(fd)
    os.close(dfd)
    return n / elapsed


# -- the ledger ------------------------------------------------------------------------------------------


def write_log(path: Path, events: int, entries: int) -> None:
    """A valid log of ``events`` events over ``entries`` entries (about 290 bytes a line), written fast:
    every entry in turn becomes generating, then ready, then generating again, ... (legal changes only, so
    ``verify`` reads it all)."""
    prev = GENESIS_HASH
    with open(path, "wb") as f:
        for seq in range(1, events + 1):
            i = (seq - 1) % entries
            # the day before Clock's first reading: the writers that follow are not behind the log's time
            ts = f"2026-11-23T{9 + seq // 3_600_000_000:02d}:00:00.000000Z"
            spot, era = f"spot-{i:05d}", f"era-{i % 10:02d}"
            if ((seq - 1) // entries) % 2 == 0:
                ev: Generating | Ready = Generating(
                    1, seq, ts, spot, era, prev, prompt="A cinematic view, golden hour"
                )
            else:
                ev = Ready(1, seq, ts, spot, era, prev, local_path=f"videos/{spot}.mp4")
            line = encode_line(ev)
            f.write(line)
            prev = line_hash(line[:-1])


def prefilled(directory: Path, entries: int, projection: str = "inline") -> Ledger:
    ledger = Ledger(directory, clock=Clock(), projection="deferred")  # type: ignore[arg-type]
    ledger.set_many([entry(i, "generating") for i in range(entries)])
    ledger.rebuild()
    ledger.close()
    return Ledger(directory, clock=Clock(), projection=projection)  # type: ignore[arg-type]


class _TimedFsync(FileOps):
    """The file operations seam with the CPU time spent in fsync summed."""

    in_fsync = 0.0

    def fsync(self, fd: int) -> None:
        began = CPU()
        super().fsync(fd)
        self.in_fsync += CPU() - began


def ledger_appends(tmp: Path, n: int) -> tuple[float, float]:
    """Durable appends, one writer, writers only appending (deferred projection): appends a second, and
    the CPU µs per append outside the fsync calls (the ledger's own work, measured through its seam)."""
    prefilled(tmp / "l", 101, "deferred").close()
    ops = _TimedFsync()
    ledger = Ledger(tmp / "l", clock=Clock(), projection="deferred", ops=ops)  # type: ignore[arg-type]
    ledger.set_video_metadata(entry(100, "ready"))  # a handle's first append settles the log (recovery)
    ops.in_fsync = 0.0
    cpu, start = CPU(), perf()
    for i in range(n):
        ledger.set_video_metadata(entry(i % 100, "ready" if (i // 100) % 2 == 0 else "generating"))
    elapsed, cpu = perf() - start, CPU() - cpu
    ledger.close()
    return n / elapsed, (cpu - ops.in_fsync) / n * 1e6


_CHILD_APPENDS = (
    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import bench_ledger; "
    "print(*bench_ledger.ledger_appends(Path(sys.argv[2]), int(sys.argv[3])))"
)


def tree_appends(tmp: Path, n: int, tree: Path) -> tuple[float, float]:
    """:func:`ledger_appends` in a child process whose ``ledger`` package is the one in source tree
    ``tree`` (``--baseline``: this tree and another one, in the same rounds)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-c", _CHILD_APPENDS, str(Path(__file__).resolve().parent), str(tmp), str(n)]
    # run in tmp: a child started in a source tree would import that tree's ledger first
    done = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True, check=True)
    rate, cpu = done.stdout.split()
    return float(rate), float(cpu)


def ledger_set(tmp: Path, n: int, entries: int) -> float:
    """set_video_metadata with the snapshot kept current on every write."""
    ledger = prefilled(tmp / "l", entries)
    start = perf()
    for i in range(n):
        ledger.set_video_metadata(entry(i % entries, "ready" if (i // entries) % 2 == 0 else "generating"))
    elapsed = perf() - start
    ledger.close()
    return n / elapsed


def ledger_batch(tmp: Path, n: int, batch: int) -> float:
    ledger = prefilled(tmp / "l", batch, "deferred")
    start = perf()
    for r in range(n // batch):
        ledger.set_many([entry(i, "ready" if r % 2 == 0 else "generating") for i in range(batch)])
    elapsed = perf() - start
    ledger.close()
    return n / elapsed


CONCURRENT_CHILD = textwrap.dedent(
    """
    import sys, time
    from ledger import Ledger, VideoMetadata
    directory, me, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    ledger = Ledger(directory, projection="deferred")
    while time.time() < go:
        time.sleep(0.001)
    for i in range(n):
        status = ("generating", "ready")[i % 2]
        ledger.set_video_metadata(VideoMetadata(spot_id=me, era_id="e", prompt="p", status=status,
                                                local_path="v.mp4" if status == "ready" else None))
    """
)

SQLITE_CHILD = textwrap.dedent(
    """
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
    db.execute("pragma synchronous=full")
    n, go, body = int(sys.argv[3]), float(sys.argv[4]), "x" * 280
    while time.time() < go:
        time.sleep(0.001)
    for _ in range(n):
        db.execute("begin immediate")
        db.execute("insert into events(body) values (?)", (body,))
        db.execute("commit")
    """
)


def concurrent(tmp: Path, n: int, writers: int, kind: str) -> float:
    """Aggregate events/s of ``writers`` processes writing ``n`` events each, from a common start."""
    if kind == "ledger":
        target, code = tmp / "l", CONCURRENT_CHILD
        Ledger(target).close()
    else:
        target, code = tmp / "c.db", SQLITE_CHILD
        db = sqlite3.connect(target)
        db.execute("pragma journal_mode=wal")
        db.execute("create table events(id integer primary key, body text)")
        db.close()
    go = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(target), f"w{w}", str(n), str(go)], cwd=ROOT)
        for w in range(writers)
    ]
    for proc in procs:
        proc.wait()
    return writers * n / (time.time() - go)


GROUP_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    from ledger import Ledger, VideoMetadata
    from ledger.fileops import FileOps
    directory, me, n, go, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

    class Disk(FileOps):
        # a disk whose flush takes ``delay`` seconds longer (0: the real disk), counting the fsyncs
        fsyncs = 0
        def fsync(self, fd):
            Disk.fsyncs += 1
            if delay:
                time.sleep(delay)
            super().fsync(fd)

    ledger = Ledger(directory, projection="deferred", ops=Disk())
    entries = [VideoMetadata(spot_id=me, era_id="e", prompt="p", status=status,
                             local_path="v.mp4" if status == "ready" else None)
               for status in ("generating", "ready")]
    Disk.fsyncs = 0
    while time.time() < go:
        time.sleep(0.001)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(n):
        ledger.set_video_metadata(entries[i % 2])
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(Disk.fsyncs, cpu, time.time())
    """
)


def group_commit(
    tmp: Path, n: int, writers: int, delay: float, *, apart: bool = False
) -> tuple[float, float]:
    """``writers`` processes appending ``n`` events each from a common start, on a disk whose fsync takes
    ``delay`` s longer: aggregate events/s, and the writers' CPU time (user + system) per event in µs. With
    ``apart`` each writes its own ledger (no group commit: what running that many processes costs here)."""
    targets = [tmp / (f"l{w}" if apart else "l") for w in range(writers)]
    for target in set(targets):
        Ledger(target).close()
    go = time.time() + 1.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GROUP_CHILD, str(targets[w]), f"w{w}", str(n), str(go), str(delay)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    outs = [proc.communicate()[0].split() for proc in procs]
    done = max(float(out[2]) for out in outs)
    events = writers * n
    return events / (done - go), sum(float(out[1]) for out in outs) / events * 1e6


REPLAY_CHILD = textwrap.dedent(
    """
    import json, sys, time, shutil
    from pathlib import Path
    import msgspec
    from ledger import Ledger
    from ledger.events import EventType
    mode, log = sys.argv[1], Path(sys.argv[2])
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    if mode in ("ledger", "bare", "prepare"):  # opening reads the log; the rebuild after it is timed
        directory = log.parent / "rebuild"
        directory.mkdir(exist_ok=True)
        if not (directory / "events.jsonl").exists():
            (directory / "events.jsonl").symlink_to(log)
        ledger = Ledger(directory, follow_symlinks=True, readonly=False, projection="deferred")
    start, cpu = time.perf_counter(), time.process_time()
    if mode in ("ledger", "bare", "prepare"):
        n = ledger.rebuild().events
    elif mode == "verify":
        directory = log.parent / "verify"
        directory.mkdir()
        (directory / "events.jsonl").symlink_to(log)
        report = Ledger(directory, follow_symlinks=True, readonly=True).verify()
        assert report.ok, report  # a verify that stops early would time only part of the log
        n = report.events
    elif mode == "msgspec":
        decoder = msgspec.json.Decoder(EventType)
        state, n = {}, 0
        with open(log, "rb", buffering=1 << 20) as f:
            for line in f:
                e = decoder.decode(line)
                state[(e.spot_id, e.era_id)] = e
                n += 1
    else:
        state, n = {}, 0
        with open(log, encoding="utf-8") as f:
            for line in f:
                e = json.loads(line)
                state[(e["spotId"], e["eraId"])] = e
                n += 1
    print(n / (time.perf_counter() - start), hwm(), n / (time.process_time() - cpu))
    """
)


def replay(tmp: Path, log: Path, mode: str) -> tuple[float, float, float]:
    """(events/s by the wall clock, peak MiB, events/s of CPU time) of a fresh process replaying ``log``:
    ``msgspec`` and ``json`` the floors; ``ledger`` a rebuild of a ledger whose snapshot and Merkle tree
    are there (as ``video-ledger rebuild`` runs on a kept ledger: the tree follows only what it lacks),
    prepared by an untimed rebuild in another process; ``bare`` a rebuild of the log alone (no snapshot,
    no tree: the rebuild builds the tree too); ``verify`` a verify of the log alone."""
    work = tmp / "work"
    work.mkdir()
    shutil.copy(log, work / "events.jsonl")
    with open(work / "events.jsonl", "rb") as f:  # warm the page cache, as anchors.py does
        while f.read(1 << 20):
            pass

    def child(mode: str) -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", REPLAY_CHILD, mode, str(work / "events.jsonl")], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip

    if mode == "ledger":
        child("prepare")
    out = child(mode)
    return float(out[0]), float(out[1]), float(out[2])


def tail_projection(tmp: Path, log: Path) -> float:
    """ms to append one event and bring the snapshot current, on a ledger whose log is ``log``."""
    directory = tmp / "l"
    directory.mkdir()
    shutil.copy(log, directory / "events.jsonl")
    Ledger(directory, projection="deferred").rebuild()
    ledger = Ledger(directory, clock=Clock())
    os.sync()  # the copy left the whole log dirty: do not charge its writeback to the first fsync
    times = []
    for i in range(30):
        t0 = perf()
        ledger.set_video_metadata(entry(1_000_000 + i, "pending"))  # a new entry each time
        times.append(perf() - t0)
    return statistics.median(times) * 1000


def open_and_read(tmp: Path, log: Path) -> float:
    """ms to open a ledger with a current checkpoint and read one entry, in a fresh process."""
    directory = tmp / "l"
    directory.mkdir()
    shutil.copy(log, directory / "events.jsonl")
    Ledger(directory, projection="deferred").rebuild()
    code = (
        "import sys, time; from ledger import Ledger; t = time.perf_counter(); "
        "e = Ledger(sys.argv[1], readonly=True).get_video_metadata('spot-00007', 'era-07'); "
        "print((time.perf_counter() - t) * 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(directory)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def watcher_latency(tmp: Path, n: int) -> tuple[float, float]:
    directory = tmp / "l"
    writer = Ledger(directory, projection="deferred", clock=Clock())
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--dir", str(directory), "watch", "--step", "10"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    proc.stderr.readline()
    time.sleep(0.3)
    checkpoint = directory / "checkpoint.json"
    lat = []
    for i in range(n):
        writer.set_video_metadata(entry(i, "pending"))
        seq = writer.last_seq
        t0 = perf()
        while True:
            try:
                if json.loads(checkpoint.read_bytes())["seq"] >= seq:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.001)
        lat.append((perf() - t0) * 1000)
        time.sleep(0.02)
    proc.terminate()
    proc.communicate()
    lat.sort()
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


@dataclass
class Case:
    key: str
    group: str
    unit: str
    run: Callable[[Path], float | tuple[float, ...] | None]
    second: str | None = None  # name of a second figure returned (peak memory, p99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    parser.add_argument(
        "--max-load", type=float, default=1.5,
        help="drop (and count) a round whose 1-minute load average starts above this (default 1.5)",
    )  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, 1 round: proves the script works")
    parser.add_argument("--only", default="", help="comma-separated groups")
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument(
        "--baseline", metavar="DIR",
        help="append: also this tree's and DIR's (a checkout of another commit) appends, each in a child "
        "process, in the same rounds",
    )  # fmt: skip
    args = parser.parse_args(argv)
    tiny = args.tiny
    rounds = 1 if tiny else args.rounds
    groups = set(args.only.split(",")) if args.only else {
        "append", "set", "batch", "concurrent", "group", "replay", "tail", "open", "watch",
    }  # fmt: skip
    n = 40 if tiny else 1000
    big_events, big_entries = (3000, 100) if tiny else (1_000_000, 10_000)
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=args.tmp_dir))
    big_log, small_log = scratch / "big.jsonl", scratch / "small.jsonl"
    if groups & {"replay", "tail", "open"}:
        print(f"writing a {big_events:,}-event log ...", file=sys.stderr, flush=True)
        write_log(big_log, big_events, big_entries)
        # the same entries in the same state as the big log ends with (each generating, then ready), so both
        # snapshots are the same bytes and only the log's length differs: a log 50 times shorter (with each
        # entry once, generating, its snapshot was 1.89 MB against 2.64 MB, and a set writes the snapshot)
        assert big_events % (2 * big_entries) == 0, "the big log must end with every entry ready"
        write_log(small_log, 2 * big_entries, big_entries)
    sizes = [100] if tiny else [1000, 10_000]
    cases = [
        Case("append.raw_fsync", "append", "appends/s", lambda t: raw_fsync(t, n), OUTSIDE_FSYNC),
        Case("append.sqlite_full", "append", "events/s", lambda t: sqlite_full(t, n)),
        Case("append.eventsourcing", "append", "events/s", lambda t: eventsourcing_save(t, n)),
        Case("append.ledger_deferred", "append", "events/s", lambda t: ledger_appends(t, n), OUTSIDE_FSYNC),
        *[
            Case(f"append.{name}", "append", "events/s", lambda t, tree=tree: tree_appends(t, n, tree), OUTSIDE_FSYNC)
            for name, tree in ([("tree_child", ROOT), ("baseline_child", Path(args.baseline).resolve())] if args.baseline else [])
        ],
        *[Case(f"set.ledger.E{e}", "set", "sets/s", lambda t, e=e: ledger_set(t, max(20, n // 5), e)) for e in sizes],
        *[Case(f"set.naive.E{e}", "set", "updates/s", lambda t, e=e: naive_rewrite(t, 10 if e > 1000 else 40, e)) for e in sizes],
        Case(f"set.io_floor.E{sizes[-1]}", "set", "sets/s", lambda t: set_io_floor(t, max(20, n // 5), sizes[-1])),
        Case("batch.raw_fsync_1000", "batch", "lines/s", lambda t: raw_batched(t, 20_000, 1000)),
        Case("batch.ledger_1000", "batch", "events/s", lambda t: ledger_batch(t, 4000 if tiny else 20_000, 1000)),
        *[
            Case(f"concurrent.{kind}.{w}", "concurrent", "events/s", lambda t, w=w, kind=kind: concurrent(t, 30 if tiny else 300, w, kind))
            for kind in ("ledger", "sqlite")
            for w in (1, 2, 4, 8)
        ],
        *[
            Case(f"group.{disk}.{w}", "group", "events/s", lambda t, w=w, d=d: group_commit(t, 20 if tiny else 200 if d else 400, w, d), "CPU µs/event")
            for disk, d in (("slow2ms", 0.002), ("real", 0.0))
            for w in (1, 4)
        ],
        Case("group.real.4apart", "group", "events/s", lambda t: group_commit(t, 20 if tiny else 400, 4, 0.0, apart=True), "CPU µs/event"),
        Case("replay.msgspec_floor", "replay", "events/s", lambda t: replay(t, big_log, "msgspec"), "peak MiB"),
        Case("replay.json_fold", "replay", "events/s", lambda t: replay(t, big_log, "json"), "peak MiB"),
        Case("replay.ledger_rebuild", "replay", "events/s", lambda t: replay(t, big_log, "ledger"), "peak MiB"),
        Case("replay.ledger_rebuild_bare", "replay", "events/s", lambda t: replay(t, big_log, "bare"), "peak MiB"),
        Case("replay.ledger_verify", "replay", "events/s", lambda t: replay(t, big_log, "verify"), "peak MiB"),
        Case("tail.one_event_big_log", "tail", "ms", lambda t: tail_projection(t, big_log)),
        Case("tail.one_event_small_log", "tail", "ms", lambda t: tail_projection(t, small_log)),
        Case("open.read_one_big_log", "open", "ms", lambda t: open_and_read(t, big_log)),
        Case("watch.latency", "watch", "ms (median)", lambda t: watcher_latency(t, 20 if tiny else 100), "p99 ms"),
    ]  # fmt: skip
    cases = [c for c in cases if c.group in groups]
    protocol = Protocol(rounds, float("inf") if tiny else args.max_load)  # tiny proves it runs, on any load

    def measure(case: Case) -> Callable[[int], float | dict[str, float] | None]:
        def run(r: int) -> float | dict[str, float] | None:
            tmp = scratch / f"{case.key}-{r}"
            tmp.mkdir()
            os.sync()
            value = case.run(tmp)
            shutil.rmtree(tmp)
            if isinstance(value, tuple):
                names = [case.key, f"{case.key} ({case.second})", f"{case.key} (CPU)"]
                return dict(zip(names, value, strict=False))  # the CPU rate where the case gives one
            return value

        return run

    protocol.run(((c.key, measure(c)) for c in cases), lambda line: print(line, file=sys.stderr, flush=True))
    shutil.rmtree(scratch)
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"msgspec {msgspec.__version__}; big log {big_events:,} events / {big_entries:,} entries"
    )
    print(protocol.header())
    print("\n| measurement | median | q1..q3 | min..max | unit |\n|---|---|---|---|---|")
    for case in cases:
        v = protocol.summary(case.key)
        if v is None:
            print(f"| `{case.key}` | n/a | | | {case.unit} |")
            continue
        print(
            f"| `{case.key}` | {v.median:,.1f} | {v.q1:,.1f}..{v.q3:,.1f} | {v.low:,.1f}..{v.high:,.1f} | {case.unit} |"
        )
        s = protocol.summary(f"{case.key} ({case.second})")
        if s is not None:
            print(
                f"| `{case.key}` ({case.second}) | {s.median:,.1f} | {s.q1:,.1f}..{s.q3:,.1f} | {s.low:,.1f}..{s.high:,.1f} | {case.second} |"
            )
        c = protocol.summary(f"{case.key} (CPU)")
        if c is not None:
            print(
                f"| `{case.key}` (CPU) | {c.median:,.1f} | {c.q1:,.1f}..{c.q3:,.1f} | {c.low:,.1f}..{c.high:,.1f} | {case.unit} of CPU time |"
            )
    ratios = [
        ("appends (deferred) / raw write+fsync", "append.ledger_deferred", "append.raw_fsync", "≥ 0.78"),
        ("appends (deferred) / SQLite FULL", "append.ledger_deferred", "append.sqlite_full", "≥ 1"),
        ("appends (deferred) / eventsourcing", "append.ledger_deferred", "append.eventsourcing", "≥ 2"),
        ("CPU outside fsync per append, ledger / raw", f"append.ledger_deferred ({OUTSIDE_FSYNC})", f"append.raw_fsync ({OUTSIDE_FSYNC})", ""),
        ("appends, this tree / --baseline (child processes)", "append.tree_child", "append.baseline_child", ""),
        ("CPU outside fsync per append, this tree / --baseline", f"append.tree_child ({OUTSIDE_FSYNC})", f"append.baseline_child ({OUTSIDE_FSYNC})", ""),
        *[(f"set / naive rewrite, {e:,} entries", f"set.ledger.E{e}", f"set.naive.E{e}", "≥ 5" if e == 10_000 else "") for e in sizes],
        (f"a set's I/O alone / naive rewrite, {sizes[-1]:,} entries (the ceiling)", f"set.io_floor.E{sizes[-1]}", f"set.naive.E{sizes[-1]}", ""),
        (f"set / its I/O alone, {sizes[-1]:,} entries", f"set.ledger.E{sizes[-1]}", f"set.io_floor.E{sizes[-1]}", ""),
        ("batch of 1,000 / raw batched fsync", "batch.ledger_1000", "batch.raw_fsync_1000", "≥ 0.3"),
        ("4 writer processes / 1", "concurrent.ledger.4", "concurrent.ledger.1", "≥ 2"),
        ("4 writers / 1, fsync 2 ms slower (simulated slow disk)", "group.slow2ms.4", "group.slow2ms.1", "≥ 3"),
        ("4 writers / 1, real disk (group commit bench)", "group.real.4", "group.real.1", ""),
        ("4 writer processes / SQLite FULL, 4 processes", "concurrent.ledger.4", "concurrent.sqlite.4", "≥ 2"),
        ("rebuild / msgspec streaming floor", "replay.ledger_rebuild", "replay.msgspec_floor", "≥ 0.6"),
        ("rebuild / stdlib json fold", "replay.ledger_rebuild", "replay.json_fold", "≥ 3"),
        ("rebuild / msgspec floor, CPU time", "replay.ledger_rebuild (CPU)", "replay.msgspec_floor (CPU)", "≥ 0.6"),
        ("rebuild of the log alone (the tree built too) / msgspec floor", "replay.ledger_rebuild_bare", "replay.msgspec_floor", ""),
        ("verify / msgspec streaming floor", "replay.ledger_verify", "replay.msgspec_floor", "≥ 0.45"),
        ("verify / msgspec floor, CPU time", "replay.ledger_verify (CPU)", "replay.msgspec_floor (CPU)", "≥ 0.45"),
        ("one-event projection, big log / small log", "tail.one_event_big_log", "tail.one_event_small_log", "≤ 1.1"),
        ("CPU per event, 4 writers / 1 (slow disk)", "group.slow2ms.4 (CPU µs/event)", "group.slow2ms.1 (CPU µs/event)", ""),
        ("CPU per event, 4 writers / 1 (real disk)", "group.real.4 (CPU µs/event)", "group.real.1 (CPU µs/event)", "≤ 1.3"),
        ("CPU per event, 4 writers apart / 1 (floor)", "group.real.4apart (CPU µs/event)", "group.real.1 (CPU µs/event)", ""),
    ]  # fmt: skip
    print()
    print("\n".join(protocol.ratio_table(Ratio(*r) for r in ratios)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
