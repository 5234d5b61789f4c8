"""The counters ``video-ledger metrics`` exports, as a fold over events: events by type, attempts started
and how they ended, failures by reason class, GPU-seconds by outcome. Kept incrementally:
:meth:`Counters.add` takes each new event once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.events import EventType, Failed, Generating, Ready

__all__ = ("MAX_REASONS", "Counters", "reason_class")

MAX_REASONS = 50
"""Distinct failure reasons kept as their own label; the rest are counted as ``other`` (a label's values
must stay few for a metrics store)."""

_CLASS = re.compile(r"([A-Za-z_][A-Za-z0-9_.]{0,63}):")


def reason_class(error: str) -> str:
    """The class of a failure: the exception name a pipeline's error starts with (``CUDAOutOfMemory: ...``
    gives ``CUDAOutOfMemory``), else ``other``."""
    found = _CLASS.match(error)
    return found.group(1) if found else "other"


@dataclass
class Counters:
    events: Counter[str] = field(default_factory=Counter)
    """Events by type."""
    attempts: int = 0
    """Attempts started (``generating`` events)."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Attempts ended, by outcome (``ready``, ``failed``)."""
    failures: Counter[str] = field(default_factory=Counter)
    """Failed attempts by :func:`reason_class` (at most :data:`MAX_REASONS` classes, then ``other``)."""
    gpu_seconds: dict[str, float] = field(default_factory=dict)
    """GPU-seconds the workers reported, by the outcome of the attempt that spent them."""

    def add(self, events: Iterable[EventType]) -> None:
        for event in events:
            self.events[event.type] += 1
            match event:
                case Generating():
                    self.attempts += 1
                case Ready():
                    self.outcomes["ready"] += 1
                    self._spent("ready", event)
                case Failed():
                    self.outcomes["failed"] += 1
                    self._spent("failed", event)
                    reason = reason_class(event.error)
                    if reason not in self.failures and len(self.failures) >= MAX_REASONS:
                        reason = "other"
                    self.failures[reason] += 1

    def _spent(self, outcome: str, event: Ready | Failed) -> None:
        if event.usage is not None and event.usage.gpu_seconds is not None:
            self.gpu_seconds[outcome] = self.gpu_seconds.get(outcome, 0.0) + event.usage.gpu_seconds
