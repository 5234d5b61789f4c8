"""The timeline view: one entry's story, attempt by attempt, folded from its events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.events import EventType, Failed, Generating, Imported, Pending, Ready, Worker

__all__ = ("Attempt", "Timeline", "seconds_between", "timeline")


def seconds_between(start: str, end: str) -> float:
    """Seconds from one event time to another."""
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


@dataclass(slots=True)
class Attempt:
    """One generation attempt: from ``generating`` to ``ready`` or ``failed`` (or still running)."""

    number: int
    started: str
    prompt: str
    ended: str | None = None
    outcome: str | None = None  # "ready" or "failed"; None while running
    detail: str | None = None  # the file (ready) or the error (failed)
    worker: Worker | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else seconds_between(self.started, self.ended)


@dataclass(slots=True)
class Timeline:
    spot_id: str
    era_id: str
    first: str | None = None
    queued: list[tuple[str, str]] = field(default_factory=list)
    """(time, prompt) of each ``pending`` event."""
    attempts: list[Attempt] = field(default_factory=list)
    imported: Imported | None = None
    first_ready: str | None = None

    @property
    def seconds_to_ready(self) -> float | None:
        """From the entry's first event to its first ``ready``."""
        if self.first is None or self.first_ready is None:
            return None
        return seconds_between(self.first, self.first_ready)


def add(story: Timeline, event: EventType) -> Timeline:
    """Add one event of this entry to its story (mutates and returns ``story``)."""
    if story.first is None:
        story.first = event.ts
    match event:
        case Pending():
            story.queued.append((event.ts, event.prompt))
        case Generating():
            # the attempt's own number (format 3: counted per entry; format 2: its event's seq), as the
            # entry, job.attempt and takeover= name it; an attempt of format 1 had none: its place
            number = event.attempt or (event.seq if event.v >= 2 else len(story.attempts) + 1)
            story.attempts.append(Attempt(number, event.ts, event.prompt, worker=event.worker))
        case Ready() | Failed():
            if story.attempts and story.attempts[-1].outcome is None:
                attempt = story.attempts[-1]
                attempt.ended, attempt.outcome = event.ts, event.STATUS
                attempt.detail = event.local_path if isinstance(event, Ready) else event.error
            if isinstance(event, Ready) and story.first_ready is None:
                story.first_ready = event.ts
        case Imported():
            story.imported = event
            if event.status == "ready" and story.first_ready is None:
                story.first_ready = event.completed_at
            story.first = event.created_at
    return story


def timeline(events: Iterable[EventType], spot_id: str, era_id: str) -> Timeline:
    """The story of ``(spot_id, era_id)`` from the events (other entries' events are skipped)."""
    story = Timeline(spot_id, era_id)
    for event in events:
        if event.spot_id == spot_id and event.era_id == era_id:
            add(story, event)
    return story
