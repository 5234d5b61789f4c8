"""The stats view: counts, attempts, success rate, generation times and failures, in one pass over the log;
and :func:`stats_by`, the attempts and their GPU time by model, era or spot.

Memory grows with the number of entries and of distinct failure messages, never with the number of
events: generation times go into a histogram with 1 % wide buckets, so the median and 95th percentile are
exact to within 1 %. Clock skew (events whose writer's clock read earlier than their time) is counted too,
by :class:`SkewWatch`, which ``verify`` shares.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, Literal, get_args

import msgspec

from ledger.events import EventType, Failed, Generating, Imported, Policy, Ready, Renewed, Status
from projections import provenance as provenance_view
from projections import timeline as timeline_view  # a module import: safe whichever is imported first

__all__ = (
    "GROUP_BY",
    "NO_MODEL",
    "ClockSkew",
    "DurationHistogram",
    "GroupBy",
    "GroupStats",
    "SkewWatch",
    "Stats",
    "describe_span",
    "stats",
    "stats_by",
)

_RATIO = 1.01
_clock_of = operator.attrgetter("clock")
_ts_of = operator.attrgetter("ts")


class ClockSkew(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """Events whose writer's clock read earlier than the log's time, so they were recorded at the log's
    time with the reading kept in their ``clock`` (``docs/lifecycle.md``, *Time*)."""

    events: int
    """How many."""
    largest_seconds: float
    """The largest gap between an event's time and its writer's reading."""
    seq: int
    """The event with that gap."""
    clock: str
    """Its writer's reading."""
    ts: str
    """Its recorded time."""
    set_by: int
    """The first event recorded at that time: the one whose writer's clock set it (the suspect, when the
    later clocks are right)."""

    def describe(self) -> str:
        """One line for people."""
        return (
            f"{self.events} event(s) recorded after their writer's clock read; the largest gap is "
            f"{describe_span(self.largest_seconds)} at event {self.seq} (its clock read {self.clock}, the "
            f"log's time was {self.ts}, set by event {self.set_by})"
        )


def describe_span(seconds: float) -> str:
    """A duration for people, the one way the ledger writes one: ``12 µs``, ``0.25 s``, ``20.0 s``,
    ``42.5 min``, ``5.0 h``, ``3652 days`` (each unit from twice its size: ``119.0 s``, then ``2.0 min``)."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}" if unit == "days" else f"{seconds / size:.1f} {unit}"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    if seconds >= 0.001:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e6:.0f} µs"


class SkewWatch:
    """Gathers :class:`ClockSkew` over events given in log order, a run at a time (:meth:`add_run`, with
    the run's times) or one by one (:meth:`add`). Only events that carry ``clock`` take a step of Python."""

    def __init__(self) -> None:
        self.count = 0
        self.worst: ClockSkew | None = None
        self._last_ts = ""
        self._first_at_last = 0  # seq of the first event at time _last_ts

    def add(self, event: EventType) -> None:
        if event.ts != self._last_ts:
            self._last_ts, self._first_at_last = event.ts, event.seq
        if event.clock is not None:
            self._note(event, event.clock, self._first_at_last)

    def add_run(self, events: Sequence[EventType], times: Sequence[str]) -> None:
        """``events`` (non-empty, times never decreasing) and ``times``, their ``ts``."""
        clocks = list(map(_clock_of, events))
        if any(clocks):
            for i in itertools.compress(range(len(events)), clocks):
                self._note(events[i], clocks[i], self._first_at(events, times, times[i]))
        self._first_at_last, self._last_ts = self._first_at(events, times, times[-1]), times[-1]

    def _first_at(self, events: Sequence[EventType], times: Sequence[str], ts: str) -> int:
        first = bisect.bisect_left(times, ts)
        return self._first_at_last if first == 0 and ts == self._last_ts else events[first].seq

    def _note(self, event: EventType, clock: str, set_by: int) -> None:
        self.count += 1
        gap = timeline_view.seconds_between(clock, event.ts)
        if self.worst is None or gap > self.worst.largest_seconds:
            self.worst = ClockSkew(
                events=0, largest_seconds=gap, seq=event.seq, clock=clock, ts=event.ts, set_by=set_by
            )

    def result(self) -> ClockSkew | None:
        """What was seen, or ``None`` if every event was recorded at its writer's reading."""
        return None if self.worst is None else msgspec.structs.replace(self.worst, events=self.count)


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
    clock_skew: ClockSkew | None = None
    """Events recorded after their writer's clock read, if any."""


def _next_run(events: Iterator[EventType], skew: SkewWatch) -> list[EventType]:
    """The next events (up to 4096; ``[]`` at the end), shown to ``skew`` first."""
    run = list(itertools.islice(events, 4096))
    if run:
        skew.add_run(run, list(map(_ts_of, run)))
    return run


def stats(events: Iterable[EventType], *, top: int = 5) -> Stats:
    """Fold ``events`` into :class:`Stats`."""
    status: dict[tuple[str, str], Status] = {}
    attempts: Counter[tuple[str, str]] = Counter()
    started: dict[tuple[str, str], str] = {}
    times = DurationHistogram()
    failures: Counter[str] = Counter()
    count = ready = failed = 0
    skew = SkewWatch()
    it = iter(events)
    for event in itertools.chain.from_iterable(iter(lambda: _next_run(it, skew), [])):
        count += 1
        if isinstance(event, Policy):  # no entry's event
            continue
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
        if not isinstance(event, Generating | Ready | Failed | Renewed):
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
        "clock_skew": skew.result(),
    }
    return Stats(**result)


GroupBy = Literal["model", "era", "spot"]
GROUP_BY: Final[tuple[GroupBy, ...]] = get_args(GroupBy)
NO_MODEL: Final = "(no model recorded)"


class GroupStats(msgspec.Struct, kw_only=True, rename="camel"):
    """The attempts of one model, era or spot, and the GPU time they took."""

    key: str
    """The model (``name`` and ``version``, as ``name@version``), the era or the spot."""
    attempts: int = 0
    ready: int = 0
    failed: int = 0
    running: int = 0
    reused: int = 0
    """Ready attempts that took another attempt's video (same provenance) instead of generating."""
    success_rate: float | None = None
    """Ready attempts ÷ finished attempts."""
    gpu_seconds: float = 0.0
    """Reported by the attempts that ended."""
    failed_gpu_seconds: float = 0.0
    failed_gpu_share: float | None = None
    """The share of ``gpu_seconds`` spent on attempts that failed (``None`` with no GPU time)."""
    wall_seconds: float = 0.0
    without_usage: int = 0
    """Finished attempts that reported no GPU-seconds (reaped or interrupted ones, or an old worker)."""
    cost: dict[str, float] = {}
    """The reported cost, by currency."""


def _model_key(record: provenance_view.AttemptRecord) -> str:
    return provenance_view.model_label(record) or NO_MODEL


_GROUP_KEYS: Final[dict[GroupBy, Callable[[provenance_view.AttemptRecord], str]]] = {
    "model": _model_key,
    "era": operator.attrgetter("era_id"),
    "spot": operator.attrgetter("spot_id"),
}


def stats_by(events: Iterable[EventType], by: GroupBy) -> list[GroupStats]:
    """The attempts in ``events`` grouped by model, era or spot (``by``), ordered by key.

    An attempt still running counts under the model its start named; one that ended, under the model of
    its completed provenance (``projections.provenance``).
    """
    group_of = _GROUP_KEYS[by]
    attempts = provenance_view.Attempts()
    groups: dict[str, GroupStats] = {}
    for event in events:
        record = attempts.add(event)
        if record is not None and record.outcome is not None:
            _count_end(groups.setdefault(group_of(record), GroupStats(key=group_of(record))), record)
    for record in attempts.running.values():
        group = groups.setdefault(group_of(record), GroupStats(key=group_of(record)))
        group.attempts += 1
        group.running += 1
    for group in groups.values():
        ended = group.ready + group.failed
        group.success_rate = group.ready / ended if ended else None
        group.failed_gpu_share = group.failed_gpu_seconds / group.gpu_seconds if group.gpu_seconds else None
    return [groups[key] for key in sorted(groups)]


def _count_end(group: GroupStats, record: provenance_view.AttemptRecord) -> None:
    group.attempts += 1
    failed = record.outcome == "failed"
    group.failed += failed
    group.ready += not failed
    group.reused += record.reuses is not None
    usage = record.usage
    if usage is None or usage.gpu_seconds is None:
        group.without_usage += 1
    else:
        group.gpu_seconds += usage.gpu_seconds
        group.failed_gpu_seconds += usage.gpu_seconds if failed else 0.0
    if usage is not None:
        group.wall_seconds += usage.wall_seconds or 0.0
        if usage.cost is not None:
            currency = usage.currency or "?"
            group.cost = {**group.cost, currency: group.cost.get(currency, 0.0) + usage.cost}
