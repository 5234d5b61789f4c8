"""The PostgreSQL store beside its limit: appends/s through ``PostgresStore.append`` (one record per call,
and 100 per call) against a bare single-connection ``INSERT … COMMIT`` loop on the same server, interleaved
round by round. The server is a throwaway one from the installed binaries (``tests/pg.py``), started with
``fsync=on`` and ``synchronous_commit=on`` (the tests' server runs with fsync off).

    python tests/bench/pg_bench.py            # 5 rounds of 300 single appends, 300 bare inserts, 30 x 100
    python tests/bench/pg_bench.py -n 20 -r 1 # a tiny run: proves it runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from ledger.postgres import PostgresStore, init  # noqa: E402
from tests.contract import appender  # noqa: E402
from tests.pg import PgServer, find_bindir  # noqa: E402


def bare(url: str, n: int) -> float:
    """Inserts per second: one row of a line's size per transaction, one connection, no lock, no checks."""
    line = b"x" * 240
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bare (seq bigint PRIMARY KEY, line bytea NOT NULL)")
        conn.commit()
        start_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM bare").fetchone()[0]  # type: ignore[index]
        conn.commit()
        started = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO bare VALUES (%s, %s)", (start_seq + i + 1, line))
            conn.commit()
        return n / (time.perf_counter() - started)


def appends(store: PostgresStore, n: int, per_call: int) -> float:
    """Records per second through the store, ``per_call`` records per append."""
    head = store.head()
    started = time.perf_counter()
    for _ in range(n):
        head = store.append(head, appender(per_call))
    return n * per_call / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="single appends and bare inserts per round")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries found")
    server = PgServer(bindir)
    log = str(server.root / "server.log")
    server._run("pg_ctl", "-D", str(server.data), "-l", log, "-w", "-o", "-c fsync=on -c synchronous_commit=on",
                "start")  # fmt: skip
    try:
        url = server.database()
        init(url)
        store = PostgresStore(url)
        rows = []
        for r in range(args.rounds):
            b = bare(url, args.n)
            one = appends(store, args.n, 1)
            hundred = appends(store, max(1, args.n // 10), 100)
            rows.append((b, one, hundred))
            print(
                f"round {r + 1}: bare insert+commit {b:,.0f}/s, append 1 {one:,.0f}/s ({one / b:.2f} x bare), "
                f"append 100 {hundred:,.0f} events/s ({hundred / one:.1f} x single)",
                flush=True,
            )
        store.close()
        single = statistics.median(one / b for b, one, _ in rows)
        batch = statistics.median(h / one for _, one, h in rows)
        print(f"median of {args.rounds} rounds: single appends {single:.2f} x the bare loop; "
              f"batches of 100 {batch:.1f} x single appends (events/s)")  # fmt: skip
    finally:
        server.stop("fast")
        server.remove()


if __name__ == "__main__":
    main()
