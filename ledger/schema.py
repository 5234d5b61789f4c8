"""The JSON Schemas of a log line and of the snapshot, in the app's terms (as kept in ``docs/schema/``).

msgspec derives them from the types in :mod:`ledger.events`; this module says what those types cannot:
a member without a value is left out of the JSON, never ``null`` (so it is optional, not nullable); the
objects are closed (exactly the members this version writes); times are ``format: date-time``; every
definition is named for code generators (json-schema-to-typescript names types by title); descriptions
speak of JSON members, not of the Python API.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import msgspec

from ledger.events import EventType, VideoMetadata

__all__ = ("documents",)

DIALECT = "https://json-schema.org/draft/2020-12/schema"

TIMES = frozenset({"ts", "clock", "createdAt", "completedAt", "updatedAt"})
"""Members that hold an RFC 3339 time (UTC, microseconds, ``Z``)."""

ALWAYS_IN_SNAPSHOT = ("createdAt", "updatedAt")
"""Members the projector sets on every entry of the snapshot (optional in a request, never absent there)."""

CRC = {
    "description": "CRC-32 (8 lowercase hex digits) of the line's bytes before ',\"crc\"'; the last member",
    "type": "string",
    "pattern": "^[0-9a-f]{8}$",
}

DESCRIPTIONS: dict[str, str] = {
    "VideoMetadata": (
        "One entry of generated-videos.json: what the app knows about one (spot, era) video. A member "
        "without a value is left out, never null."
    ),
    "VideoMetadata.localPath": (
        "Where the video is, as the pipeline recorded it: a path relative to the media root the app "
        "serves, or a URL path. Present once the entry is ready (kept on failed: the file may be partial)."
    ),
    "VideoMetadata.createdAt": "When the entry was first recorded.",
    "VideoMetadata.completedAt": "When the entry became ready or failed.",
    "VideoMetadata.error": "Why the last attempt failed; present only on failed.",
    "VideoMetadata.updatedAt": "The time of the entry's last event.",
    "VideoMetadata.attempt": (
        "The entry's running attempt (while generating), the attempt that ended it (ready, failed), or its "
        "last attempt (pending, from format 3); counted from 1 per entry from format 3."
    ),
    "Ready": (
        "The attempt produced the video at localPath (size bytes with digest sha256, when the pipeline "
        "recorded them)."
    ),
    "Failed": "The attempt failed with error.",
    "Imported": (
        "An entry brought in whole from a generated-videos.json written before the ledger existed, with its "
        "original times. Only a new entry can be imported."
    ),
}
"""Descriptions in the app's terms, by definition and ``Definition.member``, where the Python docstring
speaks of the Python API."""


def documents() -> dict[str, bytes]:
    """``event.schema.json`` and ``snapshot.schema.json``: the bytes of ``docs/schema/``."""
    event = _document(
        EventType,
        "EventLine",
        "One line of events.jsonl: an event, its envelope (v, seq, ts, prev) and its crc.",
        _with_crc,
    )
    snapshot = _document(
        list[VideoMetadata],
        "GeneratedVideosJson",
        "generated-videos.json: every entry, sorted by spotId then eraId.",
        _snapshot_required,
    )
    return {"event.schema.json": event, "snapshot.schema.json": snapshot}


def _document(
    kind: object, title: str, description: str, finish: Callable[[str, dict[str, Any]], None]
) -> bytes:
    schema: dict[str, Any] = msgspec.json.schema(kind)
    for name, definition in schema.get("$defs", {}).items():
        _app_facing(name, definition)
        finish(name, definition)
    document = {"$schema": DIALECT, "title": title, "description": description, **schema}
    return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"


def _app_facing(name: str, definition: dict[str, Any]) -> None:
    if name in DESCRIPTIONS:
        definition["description"] = DESCRIPTIONS[name]
    elif "description" in definition:  # msgspec 0.23 dedents docstrings and 0.22 does not: the same text
        definition["description"] = inspect.cleandoc(definition["description"])
    properties: dict[str, Any] = definition.get("properties", {})
    for member, prop in list(properties.items()):
        properties[member] = prop = _not_null(prop)
        if member in TIMES:
            prop["format"] = "date-time"
        described = DESCRIPTIONS.get(f"{name}.{member}")
        if described is not None:
            prop["description"] = described
        elif "description" in prop:
            prop["description"] = inspect.cleandoc(prop["description"])
    if properties:
        definition["additionalProperties"] = False


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``{anyOf: [X, null], default: null}`` as X: such a member is left out when it has no value."""
    options = prop.get("anyOf")
    if options is None or prop.get("default", ...) is not None:
        return prop
    kept = [o for o in options if o != {"type": "null"}]
    if len(kept) == len(options):
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _with_crc(name: str, definition: dict[str, Any]) -> None:
    if "properties" in definition and "seq" in definition["properties"]:  # an event: the line's last member
        definition["properties"]["crc"] = dict(CRC)
        definition["required"] = [*definition.get("required", []), "crc"]


SNAPSHOT_RULES: dict[str, Any] = {
    "if": {"properties": {"status": {"const": "failed"}}},
    "then": {"required": ["error"]},
    "else": {
        "not": {"required": ["error"]},
        "if": {"properties": {"status": {"const": "ready"}}},
        "then": {"required": ["localPath", "completedAt"]},
    },
}
"""What a snapshot entry's status says of its other members, as one ``if``/``else`` (code generators
leave a bare conditional out of the type, where ``allOf`` would replace the interface): ``error`` is there
on a failed entry and only there; a ready one has its ``localPath`` and ``completedAt``."""


def _snapshot_required(name: str, definition: dict[str, Any]) -> None:
    if name == "VideoMetadata":
        required = definition.setdefault("required", [])
        required.extend(m for m in ALWAYS_IN_SNAPSHOT if m not in required)
        definition.update(SNAPSHOT_RULES)
