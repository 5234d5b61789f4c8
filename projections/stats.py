"""The stats view: counts, attempts, success rate, generation times and failures, in one pass over the log.

Memory grows with the number of entries and of distinct failure messages, never with the number of
events: generation times go into a histogram with 1 % wide buckets, so the median and 95th percentile are
exact to within 1 %.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec

from ledger.events import EventType, Failed, Generating, Imported, Ready, Status
from projections import timeline as timeline_view  # a module import: safe whichever is imported first

__all__ = ("DurationHistogram", "Stats", "stats")

_RATIO = 1.01


class DurationHistogram:
    """Durations in buckets 1 % wide: constant memory for any number of samples."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0

    def add(self, seconds: float) -> None:
        self.buckets[math.ceil(math.log(seconds, _RATIO)) if seconds > 0 else -10_000] += 1
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1), as the upper edge of its bucket; ``None`` without samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return 0.0 if index == -10_000 else _RATIO**index
        raise AssertionError("unreachable")


class Stats(msgspec.Struct, kw_only=True, rename="camel"):
    events: int = 0
    entries: int = 0
    by_status: dict[str, int] = {}
    by_era: dict[str, int] = {}
    attempts: int = 0
    attempts_per_entry: dict[int, int] = {}
    """How many entries had 0, 1, 2, ... attempts."""
    ready_attempts: int = 0
    failed_attempts: int = 0
    success_rate: float | None = None
    """Ready attempts ÷ finished attempts."""
    generation_seconds_median: float | None = None
    generation_seconds_p95: float | None = None
    top_failures: list[tuple[str, int]] = []


def stats(events: Iterable[EventType], *, top: int = 5) -> Stats:
    """Fold ``events`` into :class:`Stats`."""
    status: dict[tuple[str, str], Status] = {}
    attempts: Counter[tuple[str, str]] = Counter()
    started: dict[tuple[str, str], str] = {}
    times = DurationHistogram()
    failures: Counter[str] = Counter()
    count = ready = failed = 0
    for event in events:
        count += 1
        key = (event.spot_id, event.era_id)
        status[key] = event.new_status
        match event:
            case Generating():
                attempts[key] += 1
                started[key] = event.ts
            case Ready():
                ready += 1
                if key in started:
                    times.add(timeline_view.seconds_between(started.pop(key), event.ts))
            case Failed():
                failed += 1
                started.pop(key, None)
                failures[event.error[:200]] += 1
            case Imported():
                attempts[key] += 0 if event.status == "pending" else 1
        if not isinstance(event, Generating | Ready | Failed):
            started.pop(key, None)
    per_entry: Counter[int] = Counter(attempts[key] for key in status)
    result: dict[str, Any] = {
        "events": count,
        "entries": len(status),
        "by_status": dict(sorted(Counter(status.values()).items())),
        "by_era": dict(sorted(Counter(era for _, era in status).items())),
        "attempts": sum(attempts.values()),
        "attempts_per_entry": dict(sorted(per_entry.items())),
        "ready_attempts": ready,
        "failed_attempts": failed,
        "success_rate": ready / (ready + failed) if ready + failed else None,
        "generation_seconds_median": times.quantile(0.5),
        "generation_seconds_p95": times.quantile(0.95),
        "top_failures": failures.most_common(top),
    }
    return Stats(**result)
