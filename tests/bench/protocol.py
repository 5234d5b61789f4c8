"""The measurement protocol every published figure follows: it cannot fool itself on a noisy machine.

- Rounds are interleaved: round 1 of every case, then round 2, ... so that drift touches every case alike.
- The 1-minute load average is read before each round; a round that starts above ``max_load`` is run but
  dropped, and counted (a shared 2-core machine: another process at full speed adds about 1).
- A ratio is computed per round, from cases measured in that same round, never from medians of
  different rounds; it is quoted as its median and quartiles over the rounds kept.
- A target ``≥ T`` is **met** only when the ratio's lower quartile clears ``T``, and **missed** when the
  upper quartile is below it; otherwise the spread spans the target and it is **unclear**. (``≤ T`` the
  other way round.) One median of noisy runs clearing a target does not meet it.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ("Protocol", "Ratio", "Summary", "quartiles", "verdict")


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(lower quartile, median, upper quartile), by the inclusive method (exact for one or two values)."""
    if not values:
        raise ValueError("no values")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def verdict(target: str, q1: float, q3: float) -> str:
    """``met``, ``missed`` or ``unclear`` for a target written ``≥ 0.7`` or ``≤ 1.1`` ('' → '')."""
    if not target:
        return ""
    op, _, number = target.strip().partition(" ")
    goal = float(number.split()[0])
    if op in ("≥", ">="):
        return "met" if q1 >= goal else "missed" if q3 < goal else "unclear"
    if op in ("≤", "<="):
        return "met" if q3 <= goal else "missed" if q1 > goal else "unclear"
    raise ValueError(f"a target is '≥ N' or '≤ N', not {target!r}")


@dataclass(frozen=True)
class Ratio:
    """``a / b`` per round, against ``target`` (``≥ N``, ``≤ N`` or '')."""

    label: str
    a: str
    b: str
    target: str = ""


@dataclass(frozen=True)
class Summary:
    median: float
    q1: float
    q3: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        q1, median, q3 = quartiles(values)
        return cls(median, q1, q3, min(values), max(values), len(values))


def loadavg() -> float:
    return os.getloadavg()[0]


@dataclass
class Protocol:
    """Runs ``cases`` (key → a function of the round number returning a figure, a dict of named figures,
    or None when it cannot run) for ``rounds`` interleaved rounds, keeping the rounds that start at or
    below ``max_load``."""

    rounds: int
    max_load: float
    load: Callable[[], float] = loadavg
    kept: list[dict[str, float]] = field(default_factory=list)
    dropped: list[float] = field(default_factory=list)
    """The load average each dropped round started at."""
    loads: list[float] = field(default_factory=list)
    """The load average each kept round started at."""

    def run(
        self,
        cases: Iterable[tuple[str, Callable[[int], float | dict[str, float] | None]]],
        report: Callable[[str], None],
    ) -> None:
        cases = list(cases)
        for r in range(self.rounds):
            load = self.load()
            figures: dict[str, float] = {}
            for key, case in cases:
                value = case(r)
                named = value if isinstance(value, dict) else {} if value is None else {key: value}
                for name, figure in named.items():
                    figures[name] = figure
                    report(f"round {r + 1} (load {load:.2f}) {name} {figure:,.1f}")
            if load > self.max_load:
                self.dropped.append(load)
                report(f"round {r + 1} dropped: load average {load:.2f} > {self.max_load}")
            else:
                self.kept.append(figures)
                self.loads.append(load)

    def figures(self, key: str) -> list[float]:
        return [r[key] for r in self.kept if key in r]

    def summary(self, key: str) -> Summary | None:
        values = self.figures(key)
        return Summary.of(values) if values else None

    def ratio(self, ratio: Ratio) -> Summary | None:
        values = [r[ratio.a] / r[ratio.b] for r in self.kept if ratio.a in r and ratio.b in r and r[ratio.b]]
        return Summary.of(values) if values else None

    def header(self) -> str:
        loads = f"{min(self.loads):.2f}..{max(self.loads):.2f}" if self.loads else "n/a"
        return (
            f"{len(self.kept)} rounds kept of {self.rounds} (load average at their start {loads}); "
            f"{len(self.dropped)} dropped above {self.max_load}"
        )

    def ratio_table(self, ratios: Iterable[Ratio]) -> list[str]:
        """Markdown rows: | ratio | median | quartiles | min..max | target | verdict |."""
        rows = [
            "| ratio (per round, same round) | median | q1..q3 | min..max | target | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for ratio in ratios:
            s = self.ratio(ratio)
            if s is None:
                continue
            rows.append(
                f"| {ratio.label} | {s.median:.2f} | {s.q1:.2f}..{s.q3:.2f} | {s.low:.2f}..{s.high:.2f} | "
                f"{ratio.target} | {verdict(ratio.target, s.q1, s.q3)} |"
            )
        return rows
