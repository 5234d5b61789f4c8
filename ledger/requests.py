"""Pure request planning: which change a request makes of an entry's current state.

A write of the store API is a list of requests, each an entry's key as given and a :data:`Plan`: given the
entry as it is under the writer's lock (``None`` if new), the :class:`~ledger.lifecycle.Change` to record,
or ``None`` for nothing. The plans here decide only: they read no file and hold no lock, so the writer
(:mod:`ledger.writer`) may run one again when what it was shown was not recorded after all.

Keys: a request names an entry by its ids as given; :func:`stored_key` picks, under the lock, the
spelling the entry is held under (the ids in NFC, or an older exact spelling, ``docs/format.md``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from ledger import lifecycle
from ledger.errors import AlreadyReadyError, AttemptInProgressError, EntryNotFoundError, InvalidEntryError
from ledger.events import EventType, Imported, VideoMetadata, normalize_id, validate_entry

__all__ = (
    "Plan",
    "Request",
    "adopt",
    "end_attempt",
    "end_if_abandoned",
    "given_ids",
    "given_key",
    "key",
    "no_entry",
    "reap",
    "reap_if_unchanged",
    "reporting",
    "start_attempt",
    "stored_key",
    "to",
    "update",
)

Plan = Callable[[VideoMetadata | None], lifecycle.Change | None]
"""Given an entry's current state (``None`` if new), the change to record, or ``None`` for nothing."""

Request = tuple[tuple[str, str], Plan]
"""An entry's ids as the caller gave them, and the plan for it."""


def no_entry(spot_id: str, era_id: str) -> EntryNotFoundError:
    """The error for a request or a query about an entry the ledger does not hold."""
    return EntryNotFoundError(f"no entry for spotId={spot_id!r} eraId={era_id!r}")


def to(desired: VideoMetadata) -> Plan:
    """Take an entry, whatever it is then, to ``desired`` (or refuse to)."""
    return lambda current: lifecycle.plan_change(current, desired)


def update(spot_id: str, era_id: str, checked: VideoMetadata) -> Plan:
    """Take an existing entry to ``checked`` keeping its current prompt (``checked.prompt`` is ignored);
    a new entry is refused: it needs a prompt."""

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None:
            raise InvalidEntryError(f"{spot_id}/{era_id} is a new entry: a prompt is required")
        return lifecycle.plan_change(current, msgspec.structs.replace(checked, prompt=current.prompt))

    return plan


def end_attempt(
    spot_id: str,
    era_id: str,
    attempt: int | None,
    *,
    error: str | None = None,
    local_path: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    records: Mapping[str, object] | None = None,
) -> Plan:
    """End the entry's running attempt: ``failed`` with ``error``, or else ``ready`` with ``local_path``
    (and the file's ``size`` and ``sha256`` when given), the event carrying ``records`` (its provenance
    and usage, checked: :func:`ledger.provenance.event_records`). ``attempt`` names the attempt that ends
    (``None``: the current one); another is refused (:class:`~ledger.errors.IllegalTransitionError`)."""
    ending: dict[str, Any] = (
        {"status": "failed", "error": error}
        if error is not None
        else {"status": "ready", "local_path": local_path, "error": None}
    )

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None:
            raise no_entry(spot_id, era_id)
        named = current.attempt if attempt is None else attempt
        desired = validate_entry(msgspec.structs.replace(current, attempt=named, **ending))
        change = lifecycle.plan_change(current, desired)
        if change is not None and error is None:
            change.fields.update(size=size, sha256=sha256)
        if change is not None and records:
            change.fields.update(records)
        return change

    return plan


def _live(current: VideoMetadata) -> AttemptInProgressError:
    """The error for a request that would join or ignore ``current``'s live attempt."""
    number = "an attempt started in format 1" if current.attempt is None else f"attempt {current.attempt}"
    how = (
        f"if its worker is gone, pass takeover={current.attempt}"
        if current.attempt is not None
        else "if its worker is gone, end it first (reap or mark_video_failed)"
    )
    return AttemptInProgressError(
        f"{current.spot_id}/{current.era_id}: {number} is live (generating since {current.updated_at}): "
        f"another worker is generating this entry; {how}",
        attempt=current.attempt,
        since=current.updated_at,
    )


def start_attempt(
    desired: VideoMetadata, records: Mapping[str, object] | None = None, *, regenerate: bool = False
) -> Plan:
    """Start a new attempt (``desired`` is the entry as ``generating``, its event carrying ``records``: its
    provenance and worker); never join a live one, and make a ready entry's video again only if
    ``regenerate``."""

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is not None and current.status == "generating":
            raise _live(current)
        if current is not None and current.status == "ready" and not regenerate:
            raise AlreadyReadyError(
                f"{current.spot_id}/{current.era_id} is already ready (attempt {current.attempt} made "
                f"{current.local_path}); nothing was recorded: pass regenerate=True to make it again",
                attempt=current.attempt,
            )
        change = lifecycle.plan_change(current, desired)
        if change is not None and records:
            change.fields.update(records)
        return change

    return plan


def end_if_abandoned(takeover: int) -> Plan:
    """End live attempt ``takeover`` as taken over; refuse if another attempt is live; nothing if none is."""

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None or current.status != "generating":
            return None  # nothing live to take over
        if current.attempt != takeover:
            raise _live(current)
        error = f"abandoned: taken over by a new attempt (generating since {current.updated_at})"
        return lifecycle.plan_change(current, msgspec.structs.replace(current, status="failed", error=error))

    return plan


def reap_if_unchanged(updated: str | None, since: str | None, span: str) -> Plan:
    """Fail an attempt abandoned for more than ``span`` (in words), unless the entry moved on since it was
    seen (no longer generating, or an event after ``updated``). ``since``: when it started generating."""

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None or current.status != "generating" or current.updated_at != updated:
            return None  # the worker moved on meanwhile
        error = f"abandoned: generating since {since} with no event for more than {span}"
        return lifecycle.plan_change(current, msgspec.structs.replace(current, status="failed", error=error))

    return plan


def reap(
    generating: list[VideoMetadata], cutoff: str, span: str, imported: Callable[[], Iterable[EventType]]
) -> list[Request]:
    """The requests that fail every ``generating`` entry with no event since ``cutoff`` (abandoned for
    more than ``span``), each re-checked under the lock (:func:`reap_if_unchanged`). An entry imported as
    generating started at the original ``createdAt`` it was imported with, not at its import: ``imported()``
    gives the log's ``imported`` events, read only when some entry may be one."""
    # (updatedAt, generating since): the entry's last event, or an imported entry's original createdAt
    stale = {e.key: (e.updated_at, e.updated_at) for e in generating if (e.updated_at or "") < cutoff}
    maybe = {e.key: e for e in generating if (e.created_at or "") < cutoff <= (e.updated_at or "")}
    for event in imported() if maybe else ():
        entry = maybe.get((event.spot_id, event.era_id))
        if entry is not None and isinstance(event, Imported) and entry.updated_at == event.ts:
            stale[entry.key] = (entry.updated_at, event.created_at)
    return [(key, reap_if_unchanged(updated, since, span)) for key, (updated, since) in sorted(stale.items())]


def adopt(entry: VideoMetadata) -> Plan:
    """Import ``entry`` with its own timestamps if the ledger does not hold it yet; else nothing."""

    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is not None:
            return None  # already in the ledger: left as it is
        fields = {
            "status": entry.status,
            "prompt": entry.prompt,
            "local_path": entry.local_path,
            "error": entry.error,
            "created_at": entry.created_at,
            "completed_at": entry.completed_at,
        }
        return lifecycle.Change(Imported, fields)

    return plan


def key(spot_id: object, era_id: object) -> tuple[str, str]:
    """The key of the entry ``(spot_id, era_id)`` names, ids in NFC (canonically equal ids are one)."""
    if not isinstance(spot_id, str) or not isinstance(era_id, str) or not spot_id or not era_id:
        raise InvalidEntryError(f"spotId and eraId must be non-empty strings, not {spot_id!r} and {era_id!r}")
    return (normalize_id(spot_id), normalize_id(era_id))


def given_ids(spot_id: object, era_id: object) -> tuple[str, str]:
    """The ids as given (checked as :func:`key` checks them): a write's request names the entry so, and
    :func:`stored_key` picks the spelling under the lock."""
    key(spot_id, era_id)
    return spot_id, era_id  # type: ignore[return-value]  # strings: key checked


def given_key(entry: VideoMetadata | Mapping[str, Any], desired: VideoMetadata) -> tuple[str, str]:
    """The ids of ``entry`` as given (``desired`` is its validated copy, ids in NFC)."""
    ids = (
        (entry.spot_id, entry.era_id)
        if isinstance(entry, VideoMetadata)
        else (entry["spotId"], entry["eraId"])
    )
    return ids if isinstance(ids[0], str) and isinstance(ids[1], str) else desired.key


def stored_key(
    nfc: tuple[str, str], given: tuple[str, str], *held: Mapping[tuple[str, str], object]
) -> tuple[str, str]:
    """The key an entry is held under: ``nfc`` (the ids in NFC), unless no entry has it but one has the
    exact ``given`` spelling, which a log written before ids were normalised holds (``docs/format.md``).
    Then the old entry stays reachable and no twin is made. Per lookup, never per replayed event."""
    if given == nfc or any(nfc in entries for entries in held) or not any(given in e for e in held):
        return nfc
    return given


def reporting(batch: list[Request], progress: Callable[[int, int | None], None] | None) -> list[Request]:
    """``batch`` whose plans tell ``progress`` how many of them have run, of all (every 1,024, and the
    last): an import's progress while it is planned."""
    if progress is None:
        return batch
    done, total = itertools.count(1), len(batch)

    def told(plan: Plan) -> Plan:
        def run(current: VideoMetadata | None) -> lifecycle.Change | None:
            change = plan(current)
            n = next(done)
            if n % 1024 == 0 or n == total:
                progress(n, total)
            return change

        return run

    return [(key, told(plan)) for key, plan in batch]
