"""Recall and reuse, planned: the requests that withdraw the videos a model made, and the requests that
let an attempt take a video made with the same provenance instead of generating one.

Pure planning over the events and the entry's state under the writer's lock (each plan, like those of
the store API, decides only: it reads no file and holds no lock).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ledger import lifecycle, requests
from ledger.errors import InvalidEntryError
from ledger.events import AttemptRef, EventType, ModelRef, Provenance, Usage, VideoMetadata, validate_entry
from ledger.provenance import check_provenance, text_sha256
from projections import provenance as provenance_view

__all__ = ("Plan", "reason_for", "recalled", "requeue_if_current", "reusable_for", "take_video")

Plan = requests.Plan


def recalled(
    events: Iterable[EventType], name: str, version: str | None
) -> list[provenance_view.AttemptRecord]:
    """The attempts whose video is its entry's current one and was made by model ``name`` (``version``)."""
    check_provenance(Provenance(model=ModelRef(name=name, version=version)))  # the name's rules
    return provenance_view.made_by(events, name, version)


def reason_for(record: provenance_view.AttemptRecord) -> str:
    """What the ``pending`` a recall records says."""
    return f"recalled: its video was made by {provenance_view.model_label(record)} (attempt {record.seq})"


def requeue_if_current(record: provenance_view.AttemptRecord, requeued: set[tuple[str, str]]) -> Plan:
    """Put the entry back to ``pending`` (its localPath cleared, :func:`reason_for` in its history) if its
    video is still the one ``record`` made; else nothing. Adds the entry's key to ``requeued`` when so."""

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None or current.status != "ready" or current.updated_at != record.ended:
            return None  # its video is no longer the one that model made
        requeued.add(current.key)
        desired = msgspec.structs.replace(
            current, status="pending", local_path=None, error=None, attempt=None
        )
        change = lifecycle.plan_change(current, validate_entry(desired))
        if change is not None:
            change.fields["reason"] = reason_for(record)
        return change

    return plan


def reusable_for(
    events: Iterable[EventType], prompt: str, provenance: Provenance
) -> provenance_view.AttemptRecord | None:
    """The current video made with the same provenance as ``provenance`` for ``prompt`` (model, version,
    weights, seed, parameters, final prompt, inputs: :func:`projections.provenance.fingerprint`), if any.
    A record without a model or a seed matches nothing: :class:`~ledger.errors.InvalidEntryError`."""
    wanted = provenance_view.fingerprint(check_provenance(provenance), text_sha256(prompt))
    if wanted is None:
        raise InvalidEntryError("reuse needs a provenance that names a model and a seed")
    found = provenance_view.reusable(events, text_sha256).get(wanted)
    return None if found is None or found.local_path is None else found


def take_video(
    found: provenance_view.AttemptRecord, desired: VideoMetadata, records: dict[str, object]
) -> list[Plan]:
    """The two plans of an attempt that takes ``found``'s video: start it as any attempt starts
    (``desired``, with the attempt's ``records``; a live attempt is refused), then end it ``ready`` with
    that file, naming the attempt that made it (also when ``found`` had itself taken it from another)."""
    assert found.local_path is not None
    source = found.reuses or AttemptRef(spot_id=found.spot_id, era_id=found.era_id, attempt=found.seq)
    ready = requests.end_attempt(
        desired.spot_id, desired.era_id, None, local_path=found.local_path, size=found.size,
        sha256=found.sha256, records={"reuses": source, "usage": Usage(gpu_seconds=0.0)},
    )  # fmt: skip
    return [requests.start_attempt(desired, records), ready]
