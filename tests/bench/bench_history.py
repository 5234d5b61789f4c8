"""Benchmark: ``history --last 1`` (read from the end) against ``history | tail -1`` (the whole log).

    python tests/bench/bench_history.py             # 500,000 events over 10,000 entries, 12 rounds
    python tests/bench/bench_history.py --tiny      # seconds; CI runs this to prove it still works

Each round runs both as the operator would, in a shell (``video-ledger --dir D history --last 1`` and
``video-ledger --dir D history | tail -1``: the process start included), checks they print the same line,
and times them; the ratio is per round. Rounds follow ``protocol.py`` (load average recorded, rounds above
``--max-load`` dropped and counted).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ledger import write_log  # a sibling script, not a package
from protocol import Protocol, Ratio

from ledger import Ledger

CLI = f"{Path(sys.executable).parent / 'video-ledger'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    events, rounds = (2000, 2) if args.tiny else (args.events, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        directory = Path(tmp)
        write_log(directory / "events.jsonl", events, 10_000 if events >= 20_000 else 100)
        with Ledger(directory) as ledger:
            ledger.rebuild()
        commands = {
            "last_ms": f"{CLI} --dir {directory} history --last 1",
            "tail_ms": f"{CLI} --dir {directory} history | tail -1",
        }
        printed: dict[str, str] = {}

        def timed(key: str) -> float:
            began = time.perf_counter()
            done = subprocess.run(commands[key], shell=True, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{commands[key]} failed: {done.stderr}")
            elapsed = (time.perf_counter() - began) * 1000
            printed[key] = " ".join(done.stdout.splitlines()[-1].split())  # a table: widths differ
            return elapsed

        def both(r: int) -> dict[str, float]:
            figures = {key: timed(key) for key in commands}
            assert printed["last_ms"] == printed["tail_ms"], printed
            return figures

        protocol = Protocol(rounds, float("inf") if args.tiny else args.max_load)
        protocol.run([("history", both)], lambda line: print(line, file=sys.stderr))
    print(f"{events:,} events; {protocol.header()}")
    print("| measurement (ms) | median | q1..q3 | min..max |\n|---|---|---|---|")
    for key in commands:
        s = protocol.summary(key)
        if s is not None:
            shown = commands[key].replace(f"{CLI} --dir {directory}", "video-ledger --dir D")
            shown = shown.replace("|", "\\|")
            print(f"| `{shown}` | {s.median:.0f} | {s.q1:.0f}..{s.q3:.0f} | {s.low:.0f}..{s.high:.0f} |")
    print(
        "\n".join(
            protocol.ratio_table([Ratio("history \\| tail -1 / history --last 1", "tail_ms", "last_ms")])
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
