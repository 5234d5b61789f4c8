"""Provenance, usage and worker records as a pipeline gives them: built, checked and put in canonical form.

The record types are in :mod:`ledger.events` (they are part of the log's lines); this module holds the
rules a record must meet to be recorded, in one place: :func:`check_provenance`, :func:`check_usage`,
:func:`check_worker` each return the record as it is to be stored or raise
:class:`~ledger.errors.InvalidEntryError` naming the field at fault, and leave nothing recorded.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar, get_args

import msgspec

from ledger.errors import InvalidEntryError
from ledger.events import MAX_PARAMETERS_BYTES, InputRef, ModelRef, Provenance, Usage, Worker

__all__ = (
    "MAX_PARAMETERS_BYTES",
    "InputRef",
    "ModelRef",
    "Provenance",
    "Usage",
    "Worker",
    "canonical_json",
    "check_provenance",
    "check_usage",
    "check_worker",
    "event_records",
    "text_sha256",
    "this_worker",
)

_LABEL = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,256}")  # one line: no control character
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"[a-z0-9-]{1,16}:[0-9a-f]{16,256}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_SEED_RANGE: Final = (-(2**63), 2**64 - 1)  # a signed or an unsigned 64-bit seed
_R = TypeVar("_R", Provenance, Usage, Worker)


def text_sha256(text: str) -> str:
    """SHA-256 (hex) of ``text``'s UTF-8 bytes: what ``prompt_sha256`` holds for the final prompt."""
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(parameters: Mapping[str, Any] | str) -> str:
    """``parameters`` (a JSON object, as a mapping or as JSON text) as canonical JSON text: keys sorted
    by code point at every level, no white space, numbers as msgspec writes them (shortest round-trip
    form). Equal parameters give equal text, so two records compare by their text.

    Raises :class:`~ledger.errors.InvalidEntryError` for anything but a JSON object of strings, finite
    numbers, booleans, nulls, lists and objects, or for more than :data:`MAX_PARAMETERS_BYTES`.
    """
    try:
        value = msgspec.json.decode(parameters) if isinstance(parameters, str) else parameters
        if not isinstance(value, Mapping):
            raise InvalidEntryError(f"parameters must be a JSON object, not {type(value).__name__}")
        _check_json(value, "parameters")
        text = msgspec.json.encode(value, order="sorted")
    except (msgspec.DecodeError, TypeError, UnicodeEncodeError, OverflowError, RecursionError) as exc:
        raise InvalidEntryError(f"parameters are not JSON: {exc}") from None
    if len(text) > MAX_PARAMETERS_BYTES:
        raise InvalidEntryError(
            f"parameters of {len(text)} bytes (canonical JSON) exceed the limit of "
            f"{MAX_PARAMETERS_BYTES} bytes"
        )
    return text.decode()


def _check_json(value: object, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEntryError(f"{where} is {value}, which JSON cannot hold")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEntryError(f"{where} has the key {key!r}: keys of JSON objects are strings")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise InvalidEntryError(f"{where} is a {type(value).__name__}, which JSON cannot hold")


def _as(kind: type[_R], record: _R | Mapping[str, Any], what: str) -> _R:
    """``record`` as a ``kind`` (a mapping is read in the log's camelCase form), its types and lengths
    checked through the log's own encoding (which also refuses strings that are not valid Unicode)."""
    try:
        _check_json(msgspec.to_builtins(record), what)  # before encoding, which writes inf and nan as null
        if isinstance(record, Mapping):
            _known_fields(record, kind, what)
        return msgspec.json.decode(msgspec.json.encode(record), type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidEntryError(f"invalid {what}: {exc}") from None
    except (TypeError, UnicodeEncodeError, OverflowError, RecursionError) as exc:
        raise InvalidEntryError(f"invalid {what}: {exc}") from None


def _known_fields(value: Mapping[str, Any], kind: type[msgspec.Struct], where: str) -> None:
    """Refuse a member ``kind`` does not have (a misspelt one would be dropped without a word)."""
    fields = {field.encode_name: field.type for field in msgspec.structs.fields(kind)}
    for key, item in value.items():
        if key not in fields:
            raise InvalidEntryError(f"{where} has no member {key!r} (it has {', '.join(fields)})")
        record = _record_type(fields[key])
        if record is not None and isinstance(item, Mapping):
            _known_fields(item, record, f"{where}.{key}")
        elif record is not None and isinstance(item, list | tuple):
            for i, each in enumerate(item):
                if isinstance(each, Mapping):
                    _known_fields(each, record, f"{where}.{key}[{i}]")


def _record_type(kind: object) -> type[msgspec.Struct] | None:
    """The record type a field holds (alone, in a union with None, or in a tuple), if any."""
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return kind
    for arg in get_args(kind):
        found = _record_type(arg)
        if found is not None:
            return found
    return None


def _label(value: str | None, field: str) -> None:
    if value is not None and _LABEL.fullmatch(value) is None:
        raise InvalidEntryError(
            f"{field} {value!r} must be 1 to 256 characters on one line (no control characters)"
        )


def _sha256(value: str | None, field: str) -> None:
    if value is not None and _SHA256.fullmatch(value) is None:
        raise InvalidEntryError(f"{field} {value!r} is not a SHA-256 (64 lowercase hex digits)")


def check_provenance(record: Provenance | Mapping[str, Any]) -> Provenance:
    """``record`` checked and in the form it is stored in (``parameters`` made canonical)."""
    checked = _as(Provenance, record, "provenance")
    model = checked.model
    if model is not None:
        _label(model.name, "provenance.model.name")
        _label(model.version, "provenance.model.version")
        if model.weights_digest is not None and _DIGEST.fullmatch(model.weights_digest) is None:
            raise InvalidEntryError(
                f"provenance.model.weightsDigest {model.weights_digest!r} is not ALGORITHM:HEX "
                "(such as sha256:<64 hex digits>)"
            )
    if checked.seed is not None and not _SEED_RANGE[0] <= checked.seed <= _SEED_RANGE[1]:
        raise InvalidEntryError(f"provenance.seed {checked.seed} is not a 64-bit integer")
    _sha256(checked.prompt_sha256, "provenance.promptSha256")
    roles: set[str] = set()
    for i, item in enumerate(checked.inputs):
        _label(item.role, f"provenance.inputs[{i}].role")
        _sha256(item.sha256, f"provenance.inputs[{i}].sha256")
        roles.add(item.role)
    if len(roles) != len(checked.inputs):
        raise InvalidEntryError("provenance.inputs name a role twice: give each input its own role")
    if checked.parameters is None:
        return checked
    return msgspec.structs.replace(checked, parameters=canonical_json(checked.parameters))


def check_usage(record: Usage | Mapping[str, Any]) -> Usage:
    """``record`` checked: finite non-negative numbers, a one-line GPU type, an ISO 4217 currency that
    comes with a cost."""
    checked = _as(Usage, record, "usage")
    _label(checked.gpu_type, "usage.gpuType")
    if checked.currency is not None:
        if _CURRENCY.fullmatch(checked.currency) is None:
            raise InvalidEntryError(f"usage.currency {checked.currency!r} is not an ISO 4217 code like EUR")
        if checked.cost is None:
            raise InvalidEntryError("usage.currency is given without usage.cost")
    return checked


def check_worker(record: Worker | Mapping[str, Any]) -> Worker:
    """``record`` checked: one-line name and host, a positive pid."""
    checked = _as(Worker, record, "worker")
    _label(checked.name, "worker.name")
    _label(checked.host, "worker.host")
    return checked


def host_name() -> str | None:
    """This machine's host name, as ``socket.gethostname()`` gives it on POSIX (read from ``uname``: no
    socket module to import for a short command), at most 256 characters; ``None`` when it has none."""
    return os.uname().nodename[:256] or None


def this_worker(name: str | None = None) -> Worker:
    """This process as a :class:`~ledger.events.Worker`: ``name``, the host name and the process id."""
    return check_worker(Worker(name=name, host=host_name(), pid=os.getpid()))


def event_records(
    *, provenance: Provenance | None = None, worker: Worker | None = None, usage: Usage | None = None
) -> dict[str, Any]:
    """The provenance, worker and usage records an event is to carry, each checked (raises
    :class:`~ledger.errors.InvalidEntryError` before anything is planned); an empty record is none."""
    checked = {
        "provenance": None if provenance is None else check_provenance(provenance),
        "worker": None if worker is None else check_worker(worker),
        "usage": None if usage is None else check_usage(usage),
    }
    return {name: kept for name, kept in checked.items() if kept is not None and kept != type(kept)()}
