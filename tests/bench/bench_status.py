"""Benchmark: ``status`` and a ``metrics`` scrape on a big log (target: status under 50 ms at 1,000,000 events).

    python tests/bench/bench_status.py              # 1,000,000 events over 10,000 entries, 12 rounds
    python tests/bench/bench_status.py --tiny       # seconds; CI runs this to prove it still works

Each round times, in this process, one ``ledger.health.status`` and one ``Exporter.render`` after a first
render (what a scrape costs once the exporter runs); one event is appended by a deferred writer before each
round so that there is a tail to read. Rounds follow ``protocol.py`` (load average recorded, rounds above
``--max-load`` dropped and counted).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ledger import write_log  # a sibling script, not a package
from protocol import Protocol

from ledger import Ledger, VideoMetadata
from ledger.health import status
from ledger.metrics import Exporter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    events, rounds = (2000, 2) if args.tiny else (args.events, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        directory = Path(tmp)
        write_log(directory / "events.jsonl", events, 10_000 if events >= 20_000 else 100)
        with Ledger(directory) as ledger:
            ledger.rebuild()
        exporter = Exporter(directory)
        exporter.render()

        def append(r: int) -> None:
            with Ledger(directory, projection="deferred") as ledger:
                ledger.set_video_metadata(
                    VideoMetadata(spot_id=f"new-{r}", era_id="era", prompt="p", status="pending")
                )

        def timed(call: object) -> float:
            began = time.perf_counter()
            call()  # type: ignore[operator]
            return (time.perf_counter() - began) * 1000

        protocol = Protocol(rounds, float("inf") if args.tiny else args.max_load)
        protocol.run(
            [
                ("append", lambda r: append(r)),
                ("status_ms", lambda r: timed(lambda: status(directory))),
                ("scrape_ms", lambda r: timed(exporter.render)),
            ],
            lambda line: print(line, file=sys.stderr),
        )
        exporter.close()
    print(f"{events:,} events; {protocol.header()}")
    print("| measurement | median | q1..q3 | min..max |\n|---|---|---|---|")
    for key in ("status_ms", "scrape_ms"):
        s = protocol.summary(key)
        if s is not None:
            print(f"| {key} | {s.median:.1f} | {s.q1:.1f}..{s.q3:.1f} | {s.low:.1f}..{s.high:.1f} |")
    s = protocol.summary("status_ms")
    if s is not None and not args.tiny:
        print(
            f"status under 50 ms at {events:,} events: {'met' if s.q3 < 50 else 'not met'} (upper quartile {s.q3:.1f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
