"""The PostgreSQL store beside its limit: appends/s through ``PostgresStore.append`` (one record per call by
1 writer and by 4 writer processes at once, and 100 per call) against a bare single-connection
``INSERT … COMMIT`` loop on the same server, interleaved in slices of 20 within each round (the disk's
flush time drifts within seconds). The server is a throwaway one from the installed binaries
(``tests/pg.py``), started with ``fsync=on`` and ``synchronous_commit=on`` (the tests' server runs with
fsync off).

    python tests/bench/pg_bench.py            # 5 rounds: 300 bare inserts, 300 single appends, 4 x 300, 30 x 100
    python tests/bench/pg_bench.py -n 20 -r 1 # a tiny run: proves it runs
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from ledger.postgres import PostgresStore, init  # noqa: E402
from tests.contract import appender  # noqa: E402
from tests.pg import PgServer, find_bindir  # noqa: E402

WRITERS = 4


class Bare:
    """The limit: one row of a line's size per transaction, one connection, no lock, no checks."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)
        self.conn.execute("CREATE TABLE bare (seq bigint PRIMARY KEY, line bytea NOT NULL)")
        self.conn.commit()
        self.seq = 0

    def run(self, n: int) -> float:
        """Seconds for ``n`` inserts, each committed."""
        line = b"x" * 240
        started = time.perf_counter()
        for _ in range(n):
            self.seq += 1
            self.conn.execute("INSERT INTO bare VALUES (%s, %s)", (self.seq, line))
            self.conn.commit()
        return time.perf_counter() - started


def appends(store: PostgresStore, n: int, per_call: int) -> float:
    """Seconds for ``n`` appends through the store, ``per_call`` records each."""
    head = store.head()
    started = time.perf_counter()
    for _ in range(n):
        head = store.append(head, appender(per_call))
    return time.perf_counter() - started


def writer(url: str, spot: str, todo: Queue[int], done: Queue[tuple[float, float]], barrier: Barrier) -> None:
    """One of the writer processes: its own handle (its own connection); for each ``n`` it is sent, wait
    for the others, append ``n`` single records (each planned on the head its last append returned, as a
    store API handle does) and report when it started and ended."""
    store = PostgresStore(url)
    head = store.head()
    while n := todo.get():
        barrier.wait()
        started = time.monotonic()
        for _ in range(n):
            head = store.append(head, appender(1, spot=spot))
        done.put((started, time.monotonic()))
    store.close()


class Writers:
    """:data:`WRITERS` writer processes, started once and driven round by round."""

    def __init__(self, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.done: Queue[tuple[float, float]] = ctx.Queue()
        self.todo: list[Queue[int]] = [ctx.Queue() for _ in range(WRITERS)]
        self.barrier = ctx.Barrier(WRITERS)  # held here until the children have it
        self.processes = [
            ctx.Process(target=writer, args=(url, f"writer-{i}", q, self.done, self.barrier), daemon=True)
            for i, q in enumerate(self.todo)
        ]
        for p in self.processes:
            p.start()

    def run(self, n: int) -> float:
        """Seconds from the first writer's start to the last one's end, ``n`` single appends each."""
        for q in self.todo:
            q.put(n)
        spans = [self.done.get(timeout=600) for _ in self.processes]
        return max(e for _, e in spans) - min(s for s, _ in spans)

    def close(self) -> None:
        for q in self.todo:
            q.put(0)
        for p in self.processes:
            p.join(60)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", type=int, default=300, help="single appends (per writer) and bare inserts per round"
    )
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--slice", type=int, default=20, help="how many of each kind before the next kind")
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries found")
    server = PgServer(bindir)
    server.start(durable=True)
    try:
        url = server.database()
        init(url)
        store = PostgresStore(url)
        writers = Writers(url)
        limit = Bare(url)
        rows = []
        try:
            for r in range(args.rounds):
                took = [0.0, 0.0, 0.0, 0.0]  # bare, 1 writer, 4 writers, batches of 100
                for done in range(0, args.n, args.slice):  # interleaved finely: the disk's pace drifts
                    k = min(args.slice, args.n - done)
                    took[0] += limit.run(k)
                    took[1] += appends(store, k, 1)
                    took[2] += writers.run(k)
                    took[3] += appends(store, max(1, k // 10), 100)
                b, one = args.n / took[0], args.n / took[1]
                four = WRITERS * args.n / took[2]
                hundred = 100 * sum(
                    max(1, min(args.slice, args.n - d) // 10) for d in range(0, args.n, args.slice)
                )
                hundred /= took[3]
                rows.append((one / b, hundred / one, four / one, four / b))
                print(
                    f"round {r + 1}: bare insert+commit {b:,.0f}/s, 1 writer {one:,.0f}/s ({one / b:.2f} x bare), "
                    f"{WRITERS} writers {four:,.0f}/s ({four / one:.2f} x 1 writer, {four / b:.2f} x bare), "
                    f"append 100 {hundred:,.0f} events/s ({hundred / one:.1f} x single)",
                    flush=True,
                )
        finally:
            limit.conn.close()
            writers.close()
            store.close()
        single, batch, many, many_bare = (sorted(column) for column in zip(*rows, strict=True))
        print(f"median (min-max) of {args.rounds} rounds: 1 writer {statistics.median(single):.2f} x the bare "
              f"loop ({spread(single)}); {WRITERS} writers {statistics.median(many):.2f} x 1 writer "
              f"({spread(many)}), {statistics.median(many_bare):.2f} x the bare loop ({spread(many_bare)}); "
              f"batches of 100 {statistics.median(batch):.1f} x single appends ({spread(batch)}, events/s)")  # fmt: skip
    finally:
        server.stop("fast")
        server.remove()


if __name__ == "__main__":
    main()
