"""The PostgreSQL store beside its limit: appends/s through ``PostgresStore.append`` (one record per call by
1 writer and by 2, 4 and 8 writer processes at once, and 100 per call) against a bare single-connection
``INSERT … COMMIT`` loop on the same server, interleaved in slices of 20 within each round (the disk's
flush time drifts within seconds), through ``tests/bench/protocol.py``'s rounds (the load average read
before each; a round above ``--max-load`` dropped and counted; each ratio from one round's own figures).
The server is a throwaway one from the installed binaries (``tests/pg.py``), started with ``fsync=on``
and ``synchronous_commit=on`` (the tests' server runs with fsync off).

    python tests/bench/pg_bench.py                   # 12 rounds of 60 of each kind (about 2 minutes)
    python tests/bench/pg_bench.py -n 20 -r 1 --tiny # proves it runs, on any load
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from ledger.postgres import PostgresStore, init  # noqa: E402
from tests.bench.protocol import Protocol, Ratio  # noqa: E402
from tests.contract import appender  # noqa: E402
from tests.pg import PgServer, find_bindir  # noqa: E402

FLEETS = (2, 4, 8)
"""The numbers of writer processes measured beside the single writer."""


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
    """``count`` writer processes, started once and driven round by round."""

    def __init__(self, url: str, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.done: Queue[tuple[float, float]] = ctx.Queue()
        self.todo: list[Queue[int]] = [ctx.Queue() for _ in range(count)]
        self.barrier = ctx.Barrier(count)  # held here until the children have it
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


def one_round(
    limit: Bare, store: PostgresStore, fleets: dict[int, Writers], n: int, step: int
) -> dict[str, float]:
    """One round's figures (appends/s; events/s for appends of 100), every kind in turns of ``step``."""
    took = {"bare": 0.0, "1 writer": 0.0, "append 100": 0.0} | {f"{k} writers": 0.0 for k in fleets}
    hundreds = 0
    for done in range(0, n, step):  # interleaved finely: the disk's pace drifts
        k = min(step, n - done)
        took["bare"] += limit.run(k)
        took["1 writer"] += appends(store, k, 1)
        for count, fleet in fleets.items():
            took[f"{count} writers"] += fleet.run(k)
        took["append 100"] += appends(store, max(1, k // 10), 100)
        hundreds += max(1, k // 10)
    figures = {"bare": n / took["bare"], "1 writer": n / took["1 writer"]}
    figures |= {f"{c} writers": c * n / took[f"{c} writers"] for c in fleets}
    figures["append 100"] = 100 * hundreds / took["append 100"]
    return figures


RATIOS = (
    Ratio("1 writer / bare INSERT+COMMIT", "1 writer", "bare", "≥ 0.9"),
    Ratio("2 writers / 1 writer", "2 writers", "1 writer"),
    Ratio("4 writers / 1 writer", "4 writers", "1 writer"),
    Ratio("8 writers / 1 writer", "8 writers", "1 writer", "≥ 3"),
    Ratio("8 writers / bare INSERT+COMMIT", "8 writers", "bare"),
    Ratio("append 100 (events/s) / 1 writer", "append 100", "1 writer", "≥ 5"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n", type=int, default=60, help="single appends (per writer) and bare inserts per round"
    )
    parser.add_argument("-r", "--rounds", type=int, default=12)
    parser.add_argument("--slice", type=int, default=20, help="how many of each kind before the next kind")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--tiny", action="store_true", help="keep every round whatever the load")
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
        fleets = {count: Writers(url, count) for count in FLEETS}
        limit = Bare(url)
        protocol = Protocol(args.rounds, float("inf") if args.tiny else args.max_load)
        try:
            protocol.run(
                [("round", lambda r: one_round(limit, store, fleets, args.n, args.slice))],
                lambda line: print(line, file=sys.stderr, flush=True),
            )
        finally:
            limit.conn.close()
            for fleet in fleets.values():
                fleet.close()
            store.close()
        print(protocol.header())
        print("\n| appends/s | median | q1..q3 | min..max |\n|---|---|---|---|")
        for key in ("bare", "1 writer", *(f"{c} writers" for c in FLEETS), "append 100"):
            v = protocol.summary(key)
            if v is not None:
                print(f"| {key} | {v.median:,.0f} | {v.q1:,.0f}..{v.q3:,.0f} | {v.low:,.0f}..{v.high:,.0f} |")
        print()
        print("\n".join(protocol.ratio_table(RATIOS)))
    finally:
        server.stop("fast")
        server.remove()


if __name__ == "__main__":
    main()
