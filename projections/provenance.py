"""The provenance view: every attempt of an entry with what made its video and what it cost.

An attempt starts with a ``generating`` event (its provenance and worker) and ends with the ``ready`` or
``failed`` that follows it for the same entry (its usage; ``ready`` adds the file and may complete the
provenance: fields it gives replace the start's). Attempts are numbered 1, 2, ... per entry in the order
they started; ``seq`` is the number the log's events use for them (the ``generating`` event's ``seq``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import msgspec

from ledger.events import (
    AttemptRef,
    EventType,
    Failed,
    Generating,
    Policy,
    Provenance,
    Ready,
    Renewed,
    Usage,
    Worker,
)

__all__ = (
    "AttemptRecord",
    "Attempts",
    "Fingerprint",
    "complete",
    "current_videos",
    "fingerprint",
    "made_by",
    "model_label",
    "provenance",
    "reusable",
)


class AttemptRecord(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """One attempt of one entry."""

    spot_id: str
    era_id: str
    attempt: int
    """1, 2, ... per entry, in the order the attempts started."""
    seq: int
    """The ``seq`` of the ``generating`` event that started it."""
    started: str
    prompt: str
    worker: Worker | None = None
    provenance: Provenance | None = None
    """As given at the start, completed by what ``ready`` gave."""
    outcome: Literal["ready", "failed"] | None = None
    """``None`` while it runs."""
    ended: str | None = None
    usage: Usage | None = None
    local_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    reuses: AttemptRef | None = None
    """The attempt whose video this one took instead of generating."""
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.spot_id, self.era_id)


def model_label(record: AttemptRecord) -> str | None:
    """The model that made an attempt's video as ``name@version`` (``name`` without a version), or
    ``None`` where none is recorded."""
    model = None if record.provenance is None else record.provenance.model
    if model is None:
        return None
    return model.name if model.version is None else f"{model.name}@{model.version}"


def complete(start: Provenance | None, end: Provenance | None) -> Provenance | None:
    """The provenance of an attempt: ``start`` (given when it started) with the fields ``end`` (given
    when it ended ``ready``) sets laid over it."""
    if end is None or start is None:
        return start if end is None else end
    given = {f: value for f in end.__struct_fields__ if (value := getattr(end, f)) != getattr(_NONE, f)}
    return msgspec.structs.replace(start, **given)


_NONE = Provenance()


class Attempts:
    """Folds events, in log order, into attempts: :meth:`add` returns the attempt an event started or
    ended (``None`` for any other event). Holds only each entry's running attempt and count."""

    __slots__ = ("count", "running")

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], AttemptRecord] = {}
        self.count: dict[tuple[str, str], int] = {}

    def add(self, event: EventType) -> AttemptRecord | None:
        key = (event.spot_id, event.era_id)
        if isinstance(event, Renewed | Policy):
            return None  # a lease renewed, or no entry's event: no attempt starts or ends
        if isinstance(event, Generating):
            # the attempt's own number, as the entry and every view name it (format 3: counted per entry;
            # format 2: its event's seq); an attempt of format 1 had none: its place
            number = event.attempt or (event.seq if event.v >= 2 else self.count.get(key, 0) + 1)
            self.count[key] = self.count.get(key, 0) + 1
            started = AttemptRecord(
                spot_id=event.spot_id, era_id=event.era_id, attempt=number, seq=event.seq,
                started=event.ts, prompt=event.prompt, worker=event.worker, provenance=event.provenance,
            )  # fmt: skip
            self.running[key] = started
            return started
        record = self.running.pop(key, None)
        if record is None or not isinstance(event, Ready | Failed):
            return None  # (an import or a requeue: no attempt ends; generating only ever ends in one)
        if isinstance(event, Ready):
            made = complete(record.provenance, event.provenance)
            return msgspec.structs.replace(
                record, outcome="ready", ended=event.ts, usage=event.usage, local_path=event.local_path,
                size=event.size, sha256=event.sha256, provenance=made, reuses=event.reuses,
            )  # fmt: skip
        return msgspec.structs.replace(
            record, outcome="failed", ended=event.ts, usage=event.usage, error=event.error
        )


def provenance(events: Iterable[EventType], spot_id: str, era_id: str) -> list[AttemptRecord]:
    """Every attempt of ``(spot_id, era_id)``, the current (latest) one first."""
    attempts = Attempts()
    found: dict[int, AttemptRecord] = {}
    for event in events:
        if event.spot_id == spot_id and event.era_id == era_id:
            record = attempts.add(event)
            if record is not None:
                found[record.attempt] = record
    return [found[number] for number in sorted(found, reverse=True)]


def current_videos(events: Iterable[EventType]) -> dict[tuple[str, str], AttemptRecord]:
    """For each entry that is ``ready`` now, the attempt that made its video (an entry made ready by an
    import, which no attempt of this log made, is left out)."""
    attempts = Attempts()
    videos: dict[tuple[str, str], AttemptRecord] = {}
    for event in events:
        record = attempts.add(event)
        key = (event.spot_id, event.era_id)
        if record is not None and record.outcome == "ready":
            videos[key] = record
        else:
            videos.pop(key, None)  # any other event: the entry is no longer ready with that video
    return videos


def made_by(events: Iterable[EventType], name: str, version: str | None = None) -> list[AttemptRecord]:
    """The attempts whose video is the current one of its entry and whose model is ``name`` (and
    ``version``, if given), ordered by entry: what a recall of that model puts back in the queue."""
    found = [
        record
        for record in current_videos(events).values()
        if (model := record.provenance.model if record.provenance else None) is not None
        and model.name == name
        and (version is None or model.version == version)
    ]
    return sorted(found, key=lambda record: (record.spot_id, record.era_id))


Fingerprint = tuple[str, str | None, str | None, int, str | None, str, tuple[tuple[str, str], ...]]
"""What makes two attempts make the same video: model name, version and weights digest, seed,
parameters, the final prompt's SHA-256, and the inputs (role, SHA-256) ordered by role."""


def fingerprint(record: Provenance | None, prompt_sha256: str) -> Fingerprint | None:
    """The :data:`Fingerprint` of a provenance record, ``prompt_sha256`` standing in for the final prompt's
    digest where the record gives none; ``None`` where no model or no seed is recorded (a random seed
    makes another video each time: nothing to reuse)."""
    if record is None or record.model is None or record.seed is None:
        return None
    model = record.model
    inputs = tuple(sorted((item.role, item.sha256) for item in record.inputs))
    digest = record.prompt_sha256 or prompt_sha256
    return (model.name, model.version, model.weights_digest, record.seed, record.parameters, digest, inputs)


def reusable(
    events: Iterable[EventType], prompt_sha256: Callable[[str], str]
) -> dict[Fingerprint, AttemptRecord]:
    """The current videos (:func:`current_videos`) by :data:`Fingerprint`: what an attempt with the same
    provenance can take instead of generating. Only current ones: a video its entry has since replaced
    may be gone or overwritten. ``prompt_sha256`` digests an attempt's prompt where its record names no
    final prompt's digest."""
    found: dict[Fingerprint, AttemptRecord] = {}
    for record in current_videos(events).values():
        key = fingerprint(record.provenance, prompt_sha256(record.prompt))
        if key is not None and (key not in found or (found[key].ended or "") < (record.ended or "")):
            found[key] = record
    return found
