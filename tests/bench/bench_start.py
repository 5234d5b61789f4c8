"""Benchmark: how long a short command takes from the shell (target: ``get``, ``set`` and ``claim`` in at
most 0.10 s), beside Python's own start in the same rounds.

    python tests/bench/bench_start.py                      # 12 rounds, about a minute
    python tests/bench/bench_start.py --baseline ../old    # also the same commands from another tree
    python tests/bench/bench_start.py --tiny               # seconds: proves it runs

Each round runs, as a shell worker would, ``python -c pass`` and the installed ``video-ledger`` script's
``get``, ``set`` (a new entry each time), ``claim`` and ``list`` on a ledger of ``--entries`` entries, each
``--runs`` times, and keeps each one's median wall time and median CPU time (user + system, the child's
own: what noise from other work on the machine moves least). ``--baseline DIR`` runs the same commands
with ``DIR`` (a checkout of another commit) first on ``PYTHONPATH``, in the same rounds, for before/after
pairs. Bytecode is written and used (``PYTHONDONTWRITEBYTECODE`` is cleared for the children, and each
command runs once before the rounds): a command compiling its modules on every start is not what a worker
pays. Rounds follow ``protocol.py`` (load average recorded, rounds above ``--max-load`` dropped and counted).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import Protocol, Ratio, verdict

COMMANDS = ("get", "set", "claim", "list")
TARGET_MS = "≤ 100"
"""get, set and claim: at most 0.10 s, judged on the quartiles of the rounds' medians."""

Case = tuple[str, Callable[[int], dict[str, float]]]


def _script() -> str:
    """The ``video-ledger`` console script beside this interpreter (what ``pip install`` put on PATH)."""
    script = Path(sys.executable).with_name("video-ledger")
    if not script.exists():
        raise SystemExit(f"no video-ledger script beside {sys.executable}: pip install -e . first")
    return str(script)


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run of ``argv``: wall and CPU milliseconds (the child's user + system time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall * 1000, cpu * 1000


def _case(name: str, argv: Callable[[int], list[str]], env: dict[str, str], runs: int) -> Case:
    def measure(r: int) -> dict[str, float]:
        samples = [_timed(argv(r * runs + i), env) for i in range(runs)]
        return {
            f"{name}_ms": statistics.median(s[0] for s in samples),
            f"{name}_cpu_ms": statistics.median(s[1] for s in samples),
        }

    return name, measure


def _seed(directory: Path, entries: int, env: dict[str, str]) -> None:
    """A ledger of ``entries`` pending entries in ``directory``, written by the code ``env`` imports."""
    code = (
        "import sys; from ledger import Ledger, VideoMetadata\n"
        "with Ledger(sys.argv[1]) as ledger:\n"
        "    ledger.set_many([VideoMetadata(spot_id=f'spot-{i}', era_id=f'era-{i % 10}', prompt='p',"
        " status='pending') for i in range(int(sys.argv[2]))])\n"
    )
    # run from the ledger's parent: ``-c`` puts the working directory first on the path, before PYTHONPATH
    subprocess.run(
        [sys.executable, "-c", code, str(directory), str(entries)], env=env, check=True, cwd=directory.parent
    )


def _commands(prefix: str, script: str, directory: Path, env: dict[str, str], runs: int) -> list[Case]:
    """The four commands as a shell worker runs them (``--no-project``: a ``watch`` keeps the snapshot, so
    a ``set`` measures the command, not a rewrite of the snapshot)."""
    base = [script, "--dir", str(directory), "--no-project"]
    argvs: dict[str, Callable[[int], list[str]]] = {
        "get": lambda i: [*base, "get", "spot-0", "era-0"],
        "set": lambda i: [
            *base,
            "set",
            f"{prefix}new-{i}",
            "era",
            "--status",
            "pending",
            "--prompt",
            "p",
            "-q",
        ],
        "claim": lambda i: [*base, "claim", "--worker", "bench", "--json"],
        "list": lambda i: [*base, "list", "--status", "ready"],
    }
    return [_case(f"{prefix}{name}", argvs[name], env, runs) for name in COMMANDS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3, help="runs of each command per round (their median)")
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--baseline", metavar="DIR", help="also run the commands from this source tree")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    rounds, runs, entries = (2, 1, 20) if args.tiny else (args.rounds, args.runs, args.entries)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    script = _script()

    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        directory = Path(tmp) / "ledger"
        _seed(directory, entries, env)
        cases = [_case("pass", lambda i: [sys.executable, "-c", "pass"], env, runs)]
        cases += _commands("", script, directory, env, runs)
        if args.baseline:
            old = {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}
            before = Path(tmp) / "baseline"  # written by the baseline's own code, in its own format
            _seed(before, entries, old)
            cases += _commands("baseline_", script, before, old, runs)
        kept = []
        for name, case in cases:  # bytecode written, caches warm
            try:
                case(10_000)
            except SystemExit as failed:
                if not name.startswith("baseline_"):
                    raise
                print(f"{name} dropped: the baseline cannot run it ({failed})", file=sys.stderr)
                continue
            kept.append((name, case))
        cases = kept
        protocol = Protocol(rounds, float("inf") if args.tiny else args.max_load)
        protocol.run(cases, lambda line: print(line, file=sys.stderr))
    print(f"{entries:,} entries, {runs} runs a round; {protocol.header()}")
    print("| measurement (median of a round's runs) | median | q1..q3 | min..max | target | verdict |")
    print("|---|---|---|---|---|---|")
    names = ["pass", *COMMANDS] + [f"baseline_{c}" for c in COMMANDS if args.baseline]
    for name in names:
        for key in (f"{name}_ms", f"{name}_cpu_ms"):
            s = protocol.summary(key)
            if s is None:
                continue
            judged = name in ("get", "set", "claim") and not key.endswith("_cpu_ms")
            target = TARGET_MS if judged else ""
            print(
                f"| {key} | {s.median:.1f} | {s.q1:.1f}..{s.q3:.1f} | {s.low:.1f}..{s.high:.1f} | {target} | "
                f"{verdict(target, s.q1, s.q3)} |"
            )
    ratios = [Ratio(f"{c} ÷ python -c pass (wall)", f"{c}_ms", "pass_ms") for c in COMMANDS]
    if args.baseline:
        ratios += [
            Ratio(f"{c} ÷ baseline {c} (CPU)", f"{c}_cpu_ms", f"baseline_{c}_cpu_ms") for c in COMMANDS
        ]
    print()
    print("\n".join(protocol.ratio_table(ratios)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
