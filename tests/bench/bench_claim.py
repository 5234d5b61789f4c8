"""The work loop measured: worker processes claiming from one queue, claim() latency at a large queue, and
a killed worker's entry taken back by its lease.

    python tests/bench/bench_claim.py run --workers 8 --entries 400            # the file store
    python tests/bench/bench_claim.py run --workers 8 --entries 400 --postgres # a throwaway PostgreSQL
    python tests/bench/bench_claim.py latency --queued 10000 100000            # claim() median and p99
    python tests/bench/bench_claim.py kill --lease 2                           # a killed worker's lease
    python tests/bench/bench_claim.py tiny                                     # all three, tiny: CI

``run``: each worker loops ``claim()`` → its block → ``ready`` or a simulated failure (an attempt fails when
a hash of its entry and number falls under ``--fail``, so the attempts every entry needs are known in
advance), under a policy of ``--attempts`` attempts and no backoff. Checked from the log afterwards: no
``generating`` on an entry that was ready or running, no attempt started twice, every entry ready or failed
with its attempts used, and the attempts exactly what the failures explain. Prints claims per second.

``latency``: ``--queued`` entries queued; in each of ``--rounds`` interleaved rounds (tests/bench/protocol.py,
rounds above ``--max-load`` dropped), a fresh handle's first claim with no work state (it reads the whole
log, and saves the state), another fresh handle's first claim (from the work state: only the log after it),
then ``--claims`` claims on one handle, each split into the time its fsyncs took (timed through the
ledger's file operations) and the rest: what a claim costs beyond making its record durable.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger import Generating, Ledger, RetryPolicy  # noqa: E402
from ledger.claiming import WORK_STATE_NAME  # noqa: E402
from ledger.fileops import FileOps  # noqa: E402
from ledger.stores import init_postgres  # noqa: E402
from projections import entries as entries_view  # noqa: E402
from tests.bench.protocol import Protocol  # noqa: E402


class SimulatedFailure(Exception):
    pass


def fails(spot: str, era: str, attempt: int, rate: float) -> bool:
    """Whether attempt ``attempt`` of the entry fails: decided by a hash, so the count is known."""
    digest = hashlib.sha256(f"{spot}/{era}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclasses.dataclass
class Result:
    seconds: float = 0.0
    attempts: int = 0
    expected_attempts: int = 0
    ready: int = 0
    failed: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    claims_per_second: float = 0.0
    claim_ms: list[float] = dataclasses.field(default_factory=list)


def _open(directory: Path, store: str | None, n: int) -> Ledger:
    here = directory if store is None else directory / f"host-{n}"
    return Ledger(here, store=store, projection="deferred")


def _worker(directory: str, store: str | None, n: int, rate: float, out: str) -> None:
    latencies: list[float] = []
    with _open(Path(directory), store, n) as ledger:
        while True:
            started = time.perf_counter()
            job = ledger.claim(worker=f"w{n}", lease=30)
            latencies.append(time.perf_counter() - started)
            if job is None:
                if ledger.claims.index.outstanding() == 0:
                    break
                time.sleep(0.005)  # others' attempts still running, or a retry's backoff
                continue
            try:
                with job:
                    if fails(job.spot_id, job.era_id, job.attempt, rate):
                        raise SimulatedFailure(f"attempt {job.attempt}")
                    path = Path(directory) / "videos" / f"{job.spot_id}--{job.era_id}.mp4"
                    path.write_bytes(f"{job.spot_id}/{job.attempt}".encode())
                    job.ready(path, local_path=f"videos/{path.name}")
            except SimulatedFailure:
                pass  # the job's block recorded it failed
    Path(out).write_text(json.dumps(latencies))


def run(
    directory: Path,
    *,
    store: str | None = None,
    workers: int = 8,
    entries: int = 400,
    fail: float = 0.3,
    attempts: int = 3,
) -> Result:
    """``workers`` processes over ``entries`` queued entries; see the module's docstring."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "videos").mkdir(exist_ok=True)
    if store is not None:
        init_postgres(store)
    keys = [(f"spot-{i:05d}", "era") for i in range(entries)]
    with _open(directory, store, 0) as ledger:
        ledger.set_retry_policy(RetryPolicy(max_attempts=attempts, backoff=0))
        ledger.set_many([{"spotId": s, "eraId": e, "prompt": "p", "status": "pending"} for s, e in keys])
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    outs = [directory / f"latency-{n}.json" for n in range(workers)]
    procs = [
        context.Process(target=_worker, args=(os.fspath(directory), store, n, fail, os.fspath(outs[n])))
        for n in range(workers)
    ]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
    result = Result(seconds=time.perf_counter() - started)
    for proc in procs:
        if proc.exitcode != 0:
            result.problems.append(f"a worker exited with {proc.exitcode}")
    for out in outs:
        if out.exists():
            result.claim_ms += [1000 * s for s in json.loads(out.read_text())]
    with _open(directory, store, 0) as ledger:
        events = list(ledger.history())
    _check(events, keys, fail, attempts, result)
    result.claims_per_second = result.attempts / result.seconds
    return result


def _check(events: list, keys: list, fail: float, attempts: int, result: Result) -> None:
    state: entries_view.Entries = {}
    started: set[tuple[str, str, int]] = set()
    for event in events:
        key = (event.spot_id, event.era_id)
        if isinstance(event, Generating):
            before = state.get(key)
            if before is None or before.status not in ("pending", "failed"):
                result.problems.append(f"{key} generated while {None if before is None else before.status}")
            assert event.attempt is not None
            if (*key, event.attempt) in started:
                result.problems.append(f"{key} attempt {event.attempt} started twice")
            started.add((*key, event.attempt))
            result.attempts += 1
        if event.type != "policy":
            state[key] = entries_view.apply(state.get(key), event)
    for spot, era in keys:
        needed = next((a for a in range(1, attempts + 1) if not fails(spot, era, a, fail)), attempts)
        result.expected_attempts += needed
        entry = state.get((spot, era))
        if entry is None or entry.status not in ("ready", "failed"):
            result.problems.append(f"{spot}/{era} ended {None if entry is None else entry.status}")
            continue
        want = "failed" if all(fails(spot, era, a, fail) for a in range(1, attempts + 1)) else "ready"
        if entry.status != want or entry.attempt != needed:
            result.problems.append(
                f"{spot}/{era}: {entry.status} at attempt {entry.attempt}, expected {want} at {needed}"
            )
        result.ready += entry.status == "ready"
        result.failed += entry.status == "failed"


class TimedOps(FileOps):
    """The ledger's file operations, timing each fsync: how much of a claim is the disk's."""

    def __init__(self) -> None:
        self.fsync_seconds = 0.0

    def fsync(self, fd: int) -> None:
        started = time.perf_counter()
        super().fsync(fd)
        self.fsync_seconds += time.perf_counter() - started


def build(queued: int, directory: Path | None = None) -> Path:
    """A ledger with ``queued`` pending entries (recorded 10,000 at a time, projection deferred)."""
    directory = directory or Path(tempfile.mkdtemp(prefix="bench-claim-"))
    with Ledger(directory, projection="deferred") as ledger:
        for start in range(0, queued, 10_000):
            ledger.set_many(
                [{"spotId": f"spot-{i:06d}", "eraId": "era", "prompt": "p", "status": "pending"}
                 for i in range(start, min(start + 10_000, queued))]
            )  # fmt: skip
    return directory


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]


def latency(directory: Path, claims: int = 200, prefix: str = "") -> dict[str, float]:
    """One round (ms): a fresh handle's first claim with the work state removed (the whole log read, the
    state saved), another fresh handle's first claim (from the state), then ``claims`` claims on it, each
    split into its fsync time and the rest. The handles record with ``projection="deferred"``: an inline
    projection rewrites the whole snapshot at every write, which at 100,000 entries is that write's cost."""
    (directory / WORK_STATE_NAME).unlink(missing_ok=True)
    figures: dict[str, float] = {}
    for name in ("cold_full_ms", "cold_seeded_ms"):
        with Ledger(directory, projection="deferred") as ledger:
            started = time.perf_counter()
            assert ledger.claim(lease=600) is not None
            figures[prefix + name] = 1000 * (time.perf_counter() - started)
    ops = TimedOps()
    total, fsync = [], []
    with Ledger(directory, projection="deferred", ops=ops) as ledger:
        assert ledger.claim(lease=600) is not None  # its first: from the state, not timed here
        for _ in range(claims):
            before = ops.fsync_seconds
            started = time.perf_counter()
            job = ledger.claim(lease=600)
            total.append(1000 * (time.perf_counter() - started))
            fsync.append(1000 * (ops.fsync_seconds - before))
            assert job is not None
    rest = [t - f for t, f in zip(total, fsync, strict=True)]
    figures |= {
        prefix + "median_ms": statistics.median(total), prefix + "p99_ms": _p99(total),
        prefix + "fsync_share": sum(fsync) / sum(total), prefix + "fsync_median_ms": statistics.median(fsync),
        prefix + "rest_median_ms": statistics.median(rest), prefix + "rest_p99_ms": _p99(rest),
    }  # fmt: skip
    return figures


def latency_rounds(queued: list[int], claims: int, rounds: int, max_load: float) -> None:
    """:func:`latency` at each size of ``queued``, in ``rounds`` interleaved rounds (tests/bench/protocol.py);
    prints each figure's median, quartiles and range over the rounds kept."""
    built = {n: build(n) for n in queued}
    protocol = Protocol(rounds, max_load)
    cases = [(f"{n}", lambda r, n=n: latency(built[n], claims, f"{n}:")) for n in queued]
    try:
        protocol.run(cases, lambda line: print(line, file=sys.stderr))
    finally:
        for directory in built.values():
            shutil.rmtree(directory, ignore_errors=True)
    print(protocol.header())
    print("| queued | figure | median | q1..q3 | min..max |")
    print("|---|---|---|---|---|")
    for n in queued:
        for name in ("cold_full_ms", "cold_seeded_ms", "median_ms", "p99_ms", "fsync_share", "fsync_median_ms",
                     "rest_median_ms", "rest_p99_ms"):  # fmt: skip
            got = protocol.summary(f"{n}:{name}")
            if got is not None:
                print(f"| {n:,} | {name} | {got.median:.3f} | {got.q1:.3f}..{got.q3:.3f} | "
                      f"{got.low:.3f}..{got.high:.3f} |")  # fmt: skip


def _claim_and_hang(directory: str, lease: float, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    ledger = Ledger(directory, projection="deferred")
    job = ledger.claim(worker="doomed", lease=lease)
    assert job is not None
    with job:
        ready.set()
        time.sleep(3600)  # killed here, renewing until then


def kill(lease: float = 2.0, directory: Path | None = None) -> dict[str, float]:
    """A worker holding a renewed lease is SIGKILLed; how long until another handle's claim takes its
    entry back (at most the lease, plus one claim's polling step)."""
    directory = directory or Path(tempfile.mkdtemp(prefix="bench-kill-"))
    with Ledger(directory) as ledger:
        ledger.set_retry_policy(RetryPolicy(backoff=0))
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "pending"})
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    ready = context.Event()
    proc = context.Process(target=_claim_and_hang, args=(os.fspath(directory), lease, ready))
    proc.start()
    ready.wait(30)
    time.sleep(lease)  # it renews meanwhile: its lease stays current
    with Ledger(directory) as ledger:
        assert ledger.claim() is None, "a live worker's entry is never taken"
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.perf_counter()
        proc.join()
        while (job := ledger.claim(worker="rescuer")) is None:
            time.sleep(0.01)
        back = time.perf_counter() - killed
        assert job.attempt == 2
    return {"lease_s": lease, "taken_back_after_s": back}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--workers", type=int, default=8)
    r.add_argument("--entries", type=int, default=400)
    r.add_argument("--fail", type=float, default=0.3)
    r.add_argument("--attempts", type=int, default=3)
    r.add_argument("--postgres", action="store_true")
    la = sub.add_parser("latency")
    la.add_argument("--queued", type=int, nargs="+", default=[10_000, 100_000])
    la.add_argument("--claims", type=int, default=200, help="timed claims per round")
    la.add_argument("--rounds", type=int, default=12)
    la.add_argument("--max-load", type=float, default=3.0)
    k = sub.add_parser("kill")
    k.add_argument("--lease", type=float, default=2.0)
    sub.add_parser("tiny")
    args = parser.parse_args()
    if args.what == "run":
        _print_run(args.workers, args.entries, args.fail, args.attempts, args.postgres)
    elif args.what == "latency":
        latency_rounds(args.queued, args.claims, args.rounds, args.max_load)
    elif args.what == "kill":
        print(json.dumps(kill(args.lease)))
    else:
        _print_run(2, 20, 0.3, 3, False)
        tiny = build(200)
        print(json.dumps(latency(tiny, 20)))
        shutil.rmtree(tiny, ignore_errors=True)
        print(json.dumps(kill(0.5)))


def _print_run(workers: int, entries: int, fail: float, attempts: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-claim-") as tmp:
        if postgres:
            from tests.pg import PgServer, find_bindir

            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("no PostgreSQL binaries found")
            server = PgServer(bindir)
            server.start()
            try:
                result = run(Path(tmp), store=server.database(), workers=workers, entries=entries,
                             fail=fail, attempts=attempts)  # fmt: skip
            finally:
                server.stop()
        else:
            result = run(Path(tmp), workers=workers, entries=entries, fail=fail, attempts=attempts)
    ms = sorted(result.claim_ms)
    print(
        f"{'postgresql' if postgres else 'file'}: {workers} workers x {entries} entries, fail {fail:.0%}, "
        f"max {attempts} attempts: {result.attempts} attempts (failures explain {result.expected_attempts}), "
        f"ready {result.ready}, failed {result.failed}, {result.claims_per_second:.0f} claims/s in "
        f"{result.seconds:.1f} s; claim() median {statistics.median(ms):.1f} ms, p99 "
        f"{ms[int(len(ms) * 0.99) - 1]:.1f} ms; problems: {result.problems or 'none'}"
    )
    if result.problems or result.attempts != result.expected_attempts:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
