"""Event types and the line format of ``events.jsonl``: pure data, declared once.

Every line of the log is one JSON object: an :class:`Event` subclass encoded by msgspec (its ``type`` tag
first), followed by a last member ``"crc"`` that frames the line::

    {"type":"ready","v":2,"seq":3,"ts":"2026-11-24T08:54:45.123456Z","spotId":"colosseum","eraId":"rome-80",
     "prev":"<sha256 of line 2>","localPath":"videos/colosseum-rome-80.mp4","attempt":2,"crc":"<crc32>"}

- ``crc`` is the CRC-32 (hex, 8 digits) of the line's bytes before ``,"crc"``: each line checks itself, so a
  torn or damaged line is found without reading its neighbours.
- ``prev`` is the SHA-256 (hex) of the previous line's bytes (without its newline); the first line has 64
  zeros. An edited, deleted, inserted or reordered line breaks the chain.
- ``seq`` counts 1, 2, 3, ... with no gaps.

The tags are explicit strings, so renaming a class never orphans old lines. New fields get a default; an
existing field never changes type (see ``docs/format.md``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
import re
import struct
import unicodedata
from collections.abc import Callable
from typing import Annotated, ClassVar, Final, Literal, TypeAlias, get_args

import msgspec

# ISA-L's CRC-32 is zlib's CRC-32 (the same polynomial and values: tests/test_events.py holds them equal on
# random data, and the test suites frame lines with zlib's), and faster (docs/performance.md, *CRC-32 by
# ISA-L*): it is what every read of the log pays per line, and a snapshot write per snapshot.
from isal.isal_zlib import crc32

from ledger.errors import InvalidEntryError

__all__ = (
    "EVENT_TAGS",
    "EVENT_TYPES",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "MAX_INPUTS",
    "MAX_LINE_BYTES",
    "MAX_PARAMETERS_BYTES",
    "STATUSES",
    "AttemptRef",
    "Clock",
    "Event",
    "EventType",
    "Failed",
    "Generating",
    "Imported",
    "InputRef",
    "ModelRef",
    "Pending",
    "Policy",
    "Provenance",
    "Ready",
    "Renewed",
    "Status",
    "Usage",
    "VideoMetadata",
    "Worker",
    "check_line",
    "check_lines",
    "crc32",
    "decode_event",
    "decode_events",
    "encode_line",
    "format_ts",
    "line_hash",
    "line_hashes",
    "normalize_id",
    "parse_time",
    "seal",
    "utc_now",
    "validate_entry",
)

FORMAT_VERSION: Final = 3
"""The ``v`` member of every line this code writes. Format 2 added ``attempt`` on ``ready``/``failed`` and the
envelope's ``clock``; format 3 numbers attempts from 1 per entry (``attempt`` on ``generating`` and
``pending``), adds an attempt's lease, and the ``renewed`` and ``policy`` events. Lines of
older formats are read as before (``docs/format.md``)."""

GENESIS_HASH: Final = "0" * 64
"""``prev`` of the first line."""

MAX_LINE_BYTES: Final = 1 << 20
"""No event line is longer than 1 MiB (the field limits below keep every valid event well under it)."""

Status: TypeAlias = Literal["pending", "generating", "ready", "failed"]
STATUSES: Final[tuple[Status, ...]] = get_args(Status)

# Field limits. Ids and paths are single-line names; prompt and error are free text stored exactly as given
# (newlines and control characters included: JSON escapes them, so an event is always one line). A name holds
# no control character (C0, DEL, C1, which includes U+0085 NEXT LINE) and no U+2028 LINE SEPARATOR or U+2029
# PARAGRAPH SEPARATOR: nothing that any reader splitting on Unicode line breaks would split on. An id neither
# starts nor ends with white space (Unicode's, \s).
_NAME_CHAR = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
_EDGE_CHAR = r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]"
_BAD_NAME_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
EntryId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        pattern=f"^{_EDGE_CHAR}(?:{_NAME_CHAR}*{_EDGE_CHAR})?$",
        description=(
            "Stored NFC-normalised (Unicode canonical composition): ids that are canonically equal, such as "
            "'café' written with U+00E9 or with 'e' + U+0301, are the same id."
        ),
    ),
]
LocalPath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=f"^{_NAME_CHAR}+$")]
Prompt = Annotated[str, msgspec.Meta(max_length=131_072)]
ErrorText = Annotated[str, msgspec.Meta(min_length=1, max_length=65_536)]
# Inside the log the ids are only length-checked: every line was validated when it was written and is
# protected by its crc, and a cheap decode keeps replay fast.
_StoredId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


# gc=False on the structs below: they hold only strings, integers and None, so they can never be part of a
# reference cycle, and the cycle collector need not track them (a replay makes millions of events; tracking
# them cost about a fifth of a rebuild). tests/test_events.py keeps the fields to those types.
class VideoMetadata(msgspec.Struct, kw_only=True, frozen=True, gc=False, rename="camel", omit_defaults=True):
    """One entry of ``generated-videos.json``: what the app knows about one (spot, era) video.

    snake_case here, camelCase on disk; fields without a value are left out of the JSON. ``created_at``
    and ``completed_at`` are set by the ledger from its event times (values passed to
    ``set_video_metadata`` are ignored).
    """

    spot_id: EntryId
    era_id: EntryId
    prompt: Prompt
    local_path: LocalPath | None = None
    status: Status
    created_at: str | None = None
    completed_at: str | None = None
    error: ErrorText | None = None
    updated_at: str | None = None
    """Time of the entry's last event (an addition to the task card's shape that the app may ignore)."""
    attempt: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """The entry's current (or, once ended, last) attempt: the ``seq`` of the ``generating`` event that
    started it, for attempts started in format 2 (another addition the app may ignore). Set by the ledger;
    in a ``ready``/``failed`` request it names the attempt being ended (``None``: the current one)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.spot_id, self.era_id)


# What made an attempt's video and what the attempt cost: optional records on the events that start and end
# it (docs/format.md, *Provenance and usage*). As with ids, the log's types only bound lengths (a cheap
# decode keeps replay fast); ledger/provenance.py checks each value when it is recorded. Frozen, gc=False and
# holding only atomic values or a tuple of such records, they can never close a reference cycle
# (tests/test_events.py checks the field types).
_Label = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Hex = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
_Seconds = Annotated[float, msgspec.Meta(ge=0)]
MAX_PARAMETERS_BYTES: Final = 16_384
"""The longest ``parameters`` (canonical JSON, UTF-8 bytes) a provenance record holds."""
MAX_INPUTS: Final = 64
"""The most inputs a provenance record names."""


class _Record(msgspec.Struct, kw_only=True, frozen=True, gc=False, rename="camel", omit_defaults=True):
    pass


class ModelRef(_Record, frozen=True):
    """The model that generated a video: its name, version, and the digest of its weights
    (ALGORITHM:HEX, such as sha256:<64 hex digits>) where the worker knows it."""

    name: _Label
    version: _Label | None = None
    weights_digest: _Hex | None = None


class InputRef(_Record, frozen=True):
    """A file the model was given, by its role (reference-image, audio, ...) and SHA-256 (hex)."""

    role: _Label
    sha256: _Hex


class Worker(_Record, frozen=True):
    """Who ran an attempt: a name the pipeline gives it, the host, the process id."""

    name: _Label | None = None
    host: _Label | None = None
    pid: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Provenance(_Record, frozen=True):
    """What made an attempt's video: the model, seed, parameters (canonical JSON text: one object, keys
    sorted, no white space), the prompt template and the SHA-256 (hex) of the final prompt's UTF-8, and the
    inputs by role. Given when the attempt starts; fields given when it ends ready complete it."""

    model: ModelRef | None = None
    seed: int | None = None
    parameters: Annotated[str, msgspec.Meta(max_length=MAX_PARAMETERS_BYTES)] | None = None
    prompt_template: Annotated[str, msgspec.Meta(max_length=65_536)] | None = None
    prompt_sha256: _Hex | None = None
    inputs: Annotated[tuple[InputRef, ...], msgspec.Meta(max_length=MAX_INPUTS)] = ()


class AttemptRef(_Record, frozen=True):
    """One attempt of one entry, as the log numbers it (the attempt member of its ready event)."""

    spot_id: _Label
    era_id: _Label
    attempt: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Usage(_Record, frozen=True):
    """What an attempt cost: its wall time in seconds (measured by the job), and the GPU-seconds, GPU
    type and cost (in currency, ISO 4217) that the worker reports."""

    wall_seconds: _Seconds | None = None
    gpu_seconds: _Seconds | None = None
    gpu_type: _Label | None = None
    cost: _Seconds | None = None
    currency: _Label | None = None


class Event(msgspec.Struct, frozen=True, gc=False, tag_field="type", rename="camel", omit_defaults=True):
    """Base of every event: the storage envelope, assigned by the log when the event is appended."""

    STATUS: ClassVar[Status]
    """The status the entry has after this event (:class:`Imported` says it per event)."""

    v: Annotated[int, msgspec.Meta(ge=1, description="format version of this line")]
    seq: Annotated[int, msgspec.Meta(ge=1, description="1, 2, 3, ... with no gaps")]
    ts: Annotated[str, msgspec.Meta(description="RFC 3339 UTC, microseconds, Z suffix; never decreases")]
    spot_id: _StoredId
    era_id: _StoredId
    prev: Annotated[str, msgspec.Meta(description="SHA-256 (hex) of the previous line; 64 zeros on line 1")]
    clock: (
        Annotated[
            str,
            msgspec.Meta(
                description="the writer's own clock reading, when it was earlier than ts (ts is then the "
                "last event's time: times never go backwards); absent when ts is the writer's reading"
            ),
        ]
        | None
    ) = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.spot_id, self.era_id)

    @property
    def new_status(self) -> Status:
        """The status the entry has after this event."""
        return self.STATUS

    @property
    def type(self) -> str:
        """The event's tag, as on disk (``pending``, ..., ``imported``)."""
        return str(self.__struct_config__.tag)


_Number = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        description="format 3: the attempt's number, counted from 1 per entry (on pending: the number of "
        "the entry's last attempt, which the next one follows)",
    ),
]
_Lease = Annotated[
    float,
    msgspec.Meta(gt=0, description="format 3: seconds the attempt's lease runs from this event's time"),
]


class Pending(Event, frozen=True, kw_only=True, tag="pending"):
    """The entry is queued for generation (new, retried after a failure, or edited while queued), and
    why, when the ledger queued it itself (a recall of the model that made its video)."""

    STATUS: ClassVar[Status] = "pending"
    prompt: str
    local_path: str | None = None
    reason: Annotated[str, msgspec.Meta(max_length=65_536)] | None = None
    attempt: _Number | None = None


class Generating(Event, frozen=True, kw_only=True, tag="generating"):
    """A generation attempt started (by its worker, holding a lease of that many seconds when given)."""

    STATUS: ClassVar[Status] = "generating"
    prompt: str
    local_path: str | None = None
    provenance: Provenance | None = None
    attempt: _Number | None = None
    lease: _Lease | None = None
    worker: Worker | None = None


_Attempt = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        description="the attempt this event ends: the seq of the generating event that started it "
        "(format 2; absent for an attempt started in format 1)",
    ),
]


class Ready(Event, frozen=True, kw_only=True, tag="ready"):
    """The attempt produced the video at ``local_path`` (``size`` bytes with digest ``sha256``, when the
    pipeline recorded them)."""

    STATUS: ClassVar[Status] = "ready"
    local_path: str
    size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    sha256: str | None = None
    attempt: _Attempt | None = None
    provenance: Provenance | None = None
    usage: Usage | None = None
    reuses: AttemptRef | None = None
    """The attempt whose video this one took instead of generating (same provenance), if it did."""


class Failed(Event, frozen=True, kw_only=True, tag="failed"):
    """The attempt failed with ``error``."""

    STATUS: ClassVar[Status] = "failed"
    error: str
    attempt: _Attempt | None = None
    usage: Usage | None = None


class Imported(Event, frozen=True, kw_only=True, tag="imported"):
    """An entry brought in whole from a ``generated-videos.json`` written before the ledger existed, with
    its original timestamps (``video-ledger import``). Only a new entry can be imported."""

    STATUS: ClassVar[Status] = "pending"  # unused: the imported entry's own status is in ``status``
    status: Status
    prompt: str
    local_path: str | None = None
    error: str | None = None
    created_at: str
    completed_at: str | None = None

    @property
    def new_status(self) -> Status:
        return self.status


class Renewed(Event, frozen=True, kw_only=True, tag="renewed"):
    """The running attempt is alive: its lease runs that many seconds from this event's time (format 3).
    Changes nothing of the entry but its updatedAt."""

    STATUS: ClassVar[Status] = "generating"
    attempt: Annotated[int, msgspec.Meta(ge=1)]
    lease: _Lease


class Policy(Event, frozen=True, kw_only=True, tag="policy"):
    """The ledger's retry policy from this event on (format 3): not an entry's event, so it has no
    spotId or eraId (both read as empty, which no entry has)."""

    STATUS: ClassVar[Status] = "pending"  # unused: no entry changes
    spot_id: str = ""
    era_id: str = ""
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    backoff: Annotated[float, msgspec.Meta(ge=0, description="seconds before the first retry")]
    backoff_factor: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    backoff_max: Annotated[float, msgspec.Meta(ge=0)] | None = None
    not_retried: tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=256)], ...] = ()
    """Errors that are never retried: an error starting with one of these (its type name, say
    InvalidPrompt) ends the entry's attempts."""


EventType: TypeAlias = Pending | Generating | Ready | Failed | Imported | Renewed | Policy
EVENT_TYPES: Final[dict[Status, type[EventType]]] = {
    cls.STATUS: cls for cls in (Pending, Generating, Ready, Failed)
}

EVENT_TAGS: Final[tuple[str, ...]] = tuple(str(cls.__struct_config__.tag) for cls in get_args(EventType))
"""Every event type's tag, in the order the union lists them (``pending`` ... ``imported``)."""

Clock: TypeAlias = Callable[[], dt.datetime]

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[EventType] = msgspec.json.Decoder(EventType)
_entry_decoder = msgspec.json.Decoder(VideoMetadata)

_CRC_HEAD: Final = b',"crc":"'
_CRC_TAIL: Final = b'"}'
# A framed line (newline excluded) ends with  ,"crc":"xxxxxxxx"}  : 8 + 8 + 2 bytes.
_FRAME: Final = len(_CRC_HEAD) + 8 + len(_CRC_TAIL)
# The pieces of check_lines, whose every loop over the lines runs in C (map over C callables).
_first_byte = operator.itemgetter(0)
_body = operator.itemgetter(slice(None, -_FRAME))
_frame = operator.itemgetter(slice(-_FRAME, None))
_FRAME_FIXED: Final = (*enumerate(_CRC_HEAD), (_FRAME - 2, _CRC_TAIL[0]), (_FRAME - 1, _CRC_TAIL[1]))
"""(index in the frame, byte) of the frame's fixed bytes; the 8 between them are the crc's hex digits."""
_hexdigest = operator.methodcaller("hexdigest")


def utc_now() -> dt.datetime:
    """The default clock."""
    return dt.datetime.now(dt.UTC)


def format_ts(moment: dt.datetime) -> str:
    """RFC 3339, UTC, microsecond precision, ``Z`` suffix: ``2026-11-24T08:54:45.123456Z``."""
    if moment.tzinfo is not dt.UTC:
        if moment.tzinfo is None:
            raise InvalidEntryError(f"timestamp {moment!r} has no time zone")
        moment = moment.astimezone(dt.UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str | dt.datetime) -> str:
    """A time given by a user (RFC 3339 / ISO 8601; no zone means UTC) in the log's ``ts`` form, so it
    compares with event times as a string."""
    if isinstance(text, dt.datetime):
        moment = text
    else:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEntryError(f"{text!r} is not a time like 2026-11-24T09:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return format_ts(moment)


def encode_line(event: EventType) -> bytes:
    """The framed log line for ``event``, newline included."""
    body = _encoder.encode(event)[:-1]
    line = b"%s%s%08x%s\n" % (body, _CRC_HEAD, crc32(body), _CRC_TAIL)
    if len(line) > MAX_LINE_BYTES:
        raise InvalidEntryError(
            f"event line of {len(line)} bytes exceeds the limit of {MAX_LINE_BYTES} bytes"
        )
    return line


def seal(
    cls: type[EventType],
    fields: dict[str, object],
    *,
    seq: int,
    ts: str,
    key: tuple[str, str],
    prev: str,
    clock: str | None = None,
) -> tuple[EventType, bytes]:
    """The event of type ``cls`` with payload ``fields`` in its envelope (format version, ``seq``, time
    ``ts``, the entry ``key``, the previous line's hash ``prev``, the writer's ``clock`` reading when it
    differs from ``ts``), and its framed line (newline excluded)."""
    event = cls(
        v=FORMAT_VERSION, seq=seq, ts=ts, spot_id=key[0], era_id=key[1], prev=prev, clock=clock,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    return event, encode_line(event)[:-1]


def check_line(line: bytes) -> bool:
    """Whether ``line`` (newline excluded) is whole: framed and its crc matches its bytes."""
    return (
        len(line) > _FRAME
        and line[-_FRAME : -_FRAME + len(_CRC_HEAD)] == _CRC_HEAD
        and line[-2:] == _CRC_TAIL
        and b"%08x" % crc32(line[:-_FRAME]) == line[-10:-2]
    )


def check_lines(lines: list[bytes]) -> bool:
    """Whether every one of ``lines`` (a non-empty list, newlines excluded) passes :func:`check_line` and
    starts with ``{``, checked for all of them at once in C-level loops.

    ``False`` says only that some line is not as expected; :func:`check_line` on each then finds which.
    The frames (each line's last 18 bytes) are joined, so each fixed byte and each hex digit of the crc is
    compared across all lines with one slice. The first byte is checked so that :func:`decode_events` on
    these lines decodes each line on its own: a line ends with ``,"crc":"xxxxxxxx"}``, which closes an
    object; had that left the line's first value open, the next character would have to be ``,``, ``}``
    or ``]``, never the next line's ``{``. So each line holds at least one whole value, and as many events
    as lines means exactly one each.
    """
    n = len(lines)
    if min(map(len, lines)) <= _FRAME or bytes(map(_first_byte, lines)) != b"{" * n:
        return False
    frames = b"".join(map(_frame, lines))
    digits = struct.pack(f">{n}I", *map(crc32, map(_body, lines))).hex().encode()
    return all(frames[i::_FRAME] == bytes((byte,)) * n for i, byte in _FRAME_FIXED) and all(
        frames[len(_CRC_HEAD) + i :: _FRAME] == digits[i::8] for i in range(8)
    )


def decode_event(line: bytes) -> EventType:
    """Decode one line (already checked); raises ``msgspec.ValidationError`` / ``DecodeError``."""
    return _event_decoder.decode(line)


def decode_events(block: bytes | memoryview) -> list[EventType]:
    """Decode a block of whole lines (each newline-terminated) with one call; raises as
    :func:`decode_event`. The caller checks the lines first (:func:`check_lines`) and that it got one
    event per line."""
    return _event_decoder.decode_lines(block)


def line_hash(line: bytes) -> str:
    """The chain hash of a line: SHA-256 of its bytes, newline excluded."""
    return hashlib.sha256(line).hexdigest()


def line_hashes(lines: list[bytes]) -> list[str]:
    """:func:`line_hash` of each line, computed in one C-level loop."""
    return list(map(_hexdigest, map(hashlib.sha256, lines)))


def validate_entry(entry: object) -> VideoMetadata:
    """A validated copy of ``entry`` (a :class:`VideoMetadata` or a dict in its on-disk camelCase form).

    Raises :class:`~ledger.errors.InvalidEntryError` naming the field at fault.
    """
    try:
        data = _encoder.encode(entry)
        valid = _entry_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidEntryError(f"invalid entry: {_in_words(exc, data)}") from None
    except (TypeError, UnicodeEncodeError, OverflowError, RecursionError) as exc:
        raise InvalidEntryError(f"invalid entry: {exc}") from None
    if not (
        unicodedata.is_normalized("NFC", valid.spot_id) and unicodedata.is_normalized("NFC", valid.era_id)
    ):
        nfc = msgspec.structs.replace(
            valid, spot_id=normalize_id(valid.spot_id), era_id=normalize_id(valid.era_id)
        )
        return validate_entry(nfc)  # checked again: composing can change the length
    return valid


def normalize_id(text: str) -> str:
    """``text`` in Unicode NFC, the form every ``spotId`` and ``eraId`` is stored in (``docs/format.md``)."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


_REGEX_FAILURE = re.compile(r"matching regex .* - at `\$\.(\w+)`$", re.S)


def _in_words(exc: msgspec.MsgspecError, data: bytes) -> str:
    """msgspec's message, except that a name failing its pattern is told in words rather than as the
    regular expression."""
    text = str(exc)
    match = _REGEX_FAILURE.search(text)
    if match is None:
        return text
    field = match.group(1)
    value = msgspec.json.decode(data).get(field)
    if not isinstance(value, str):
        return text
    kind = "a path" if field == "localPath" else "an id"
    bad = _BAD_NAME_CHAR.search(value)
    if bad is not None:
        char = bad.group()
        name = unicodedata.name(char, "a control character")
        return (
            f"{field} {value!r} holds U+{ord(char):04X} ({name}), which {kind} may not: "
            "no control characters or line breaks"
        )
    if value[:1].isspace():
        return f"{field} {value!r} starts with white space, which {kind} may not"
    if value[-1:].isspace():
        return f"{field} {value!r} ends with white space, which {kind} may not"
    return text
