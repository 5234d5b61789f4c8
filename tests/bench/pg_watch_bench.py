"""Watcher latency across two hosts' directories over one PostgreSQL store: a writer appends at a steady
pace (``Ledger(store=URL, projection="deferred")``, one event per call) while two ``video-ledger --store URL
--dir DIR watch`` processes (their default ``--step``/``--debounce``) keep two directories' snapshots
current. Latency: from an append's return to the first look at which that directory's checkpoint (written
after the snapshot's atomic rename) reaches the event, each directory looked at every millisecond. The
server is a throwaway one from the installed binaries (``tests/pg.py``), with ``fsync=on``.

    python tests/bench/pg_watch_bench.py             # 5 rounds of 100 appends at 20/s
    python tests/bench/pg_watch_bench.py -n 5 -r 1   # a tiny run: proves it runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger import Ledger, VideoMetadata  # noqa: E402
from ledger.postgres import init  # noqa: E402
from ledger.projector import read_checkpoint  # noqa: E402
from tests.pg import PgServer, find_bindir  # noqa: E402


def start_watcher(url: str, directory: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VIDEO_LEDGER_STORE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--store", url, "--dir", str(directory), "watch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    proc.stderr.readline()  # "watching DIR over URL": it has started
    return proc


def looker(directory: Path, seen: dict[int, float], stop: threading.Event) -> None:
    """Record when the checkpoint in ``directory`` first reaches each seq (every millisecond)."""
    path = directory / "checkpoint.json"
    reached = 0
    while not stop.is_set():
        checkpoint = read_checkpoint(path)
        if checkpoint is not None and checkpoint.seq > reached:
            now = time.perf_counter()
            for seq in range(reached + 1, checkpoint.seq + 1):
                seen[seq] = now
            reached = checkpoint.seq
        time.sleep(0.001)


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="appends per round")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="appends per second (default 20)")
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries found")
    server = PgServer(bindir)
    server.start(durable=True)
    work = Path(tempfile.mkdtemp(prefix="pg-watch-bench-"))
    watchers: list[subprocess.Popen[bytes]] = []
    try:
        url = server.database()
        init(url)
        hosts = [work / "host-a", work / "host-b"]
        watchers = [start_watcher(url, d) for d in hosts]
        seen: list[dict[int, float]] = [{}, {}]
        stop = threading.Event()
        threads = [
            threading.Thread(target=looker, args=(d, s, stop), daemon=True)
            for d, s in zip(hosts, seen, strict=True)
        ]
        for t in threads:
            t.start()
        everything: list[list[float]] = [[], []]
        with Ledger(work / "writer", store=url, projection="deferred") as ledger:
            for r in range(args.rounds):
                returned: dict[int, float] = {}
                next_at = time.perf_counter()
                for i in range(args.n):
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += 1 / args.rate
                    ledger.set_video_metadata(
                        VideoMetadata(spot_id=f"r{r}-{i}", era_id="era", prompt="p", status="pending")
                    )
                    assert ledger.last_seq is not None
                    returned[ledger.last_seq] = time.perf_counter()
                last = max(returned)
                deadline = time.monotonic() + 30
                while not all(last in s for s in seen) and time.monotonic() < deadline:
                    time.sleep(0.01)
                parts = []
                for k, s in enumerate(seen):
                    lat = [(s[q] - t) * 1000 for q, t in returned.items() if q in s]
                    everything[k] += lat
                    parts.append(f"{'ab'[k]}: median {statistics.median(lat):.1f} ms, p95 {p95(lat):.1f} ms")
                print(f"round {r + 1} ({args.n} appends at {args.rate:g}/s): " + "; ".join(parts), flush=True)
        stop.set()
        print(
            f"all {args.rounds} rounds: "
            + "; ".join(
                f"{'ab'[k]}: median {statistics.median(v):.1f} ms, p95 {p95(v):.1f} ms"
                for k, v in enumerate(everything)
            )
        )
    finally:
        for proc in watchers:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        server.stop("fast")
        server.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
