"""Event types and the line format: round trips, framing, schema and golden files."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import Ledger
from ledger.errors import InvalidEntryError
from ledger.events import (
    EVENT_TYPES,
    GENESIS_HASH,
    MAX_LINE_BYTES,
    EventType,
    Failed,
    Generating,
    Pending,
    Ready,
    VideoMetadata,
    check_line,
    decode_event,
    encode_line,
    line_hash,
    validate_entry,
)
from ledger.schema import documents as schema_documents

from .conftest import ROOT

text = st.text(max_size=300)  # any code point but lone surrogates: control characters and newlines included
ids = st.text(
    st.characters(min_codepoint=0x21, exclude_characters="\x7f", codec="utf-8"), min_size=1, max_size=40
)
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
envelope = {
    "v": st.just(1),
    "seq": st.integers(1, 2**53),
    "ts": st.just("2026-11-24T09:00:00.000000Z"),
    "spot_id": ids,
    "era_id": ids,
    "prev": hashes,
}
events: st.SearchStrategy[EventType] = st.one_of(
    st.builds(Pending, **envelope, prompt=text, local_path=st.none() | ids),
    st.builds(Generating, **envelope, prompt=text, local_path=st.none() | ids),
    st.builds(Ready, **envelope, local_path=ids),
    st.builds(Failed, **envelope, error=text.filter(bool)),
)


@given(events)
def test_every_event_type_round_trips_through_one_framed_line(event: EventType) -> None:
    line = encode_line(event)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1, "an event is always exactly one line"
    assert check_line(line[:-1])
    assert decode_event(line[:-1]) == event


@given(events, st.data())
def test_any_single_byte_change_breaks_the_line_check(event: EventType, data: st.DataObject) -> None:
    line = bytearray(encode_line(event)[:-1])
    i = data.draw(st.integers(0, len(line) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != line[i]))
    line[i] = new
    assert not check_line(bytes(line))


def test_line_layout_is_tag_envelope_payload_crc() -> None:
    event = Ready(1, 3, "2026-11-24T09:00:00.000000Z", "s", "e", GENESIS_HASH, local_path="v.mp4")
    line = encode_line(event)
    assert line.startswith(b'{"type":"ready","v":1,"seq":3,"ts":"2026-11-24T09:00:00.000000Z","spotId":"s"')
    assert line[:-1].endswith(b'"localPath":"v.mp4","crc":"' + line[-11:-3] + b'"}')
    assert msgspec.json.decode(line)["crc"] == line[-11:-3].decode()
    assert line_hash(line[:-1]) != GENESIS_HASH


def test_every_status_has_exactly_one_event_type() -> None:
    assert sorted(EVENT_TYPES) == sorted(["pending", "generating", "ready", "failed"])
    assert all(status == cls.STATUS for status, cls in EVENT_TYPES.items())


def test_an_oversized_line_is_refused() -> None:
    event = Pending(1, 1, "t", "s", "e", GENESIS_HASH, prompt="x" * MAX_LINE_BYTES)
    with pytest.raises(InvalidEntryError, match="exceeds the limit"):
        encode_line(event)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"spotId": "", "eraId": "e", "prompt": "p", "status": "pending"}, r"\$\.spotId"),
        ({"spotId": "s", "eraId": 7, "prompt": "p", "status": "pending"}, r"Expected `str`"),
        ({"spotId": "s", "eraId": "e", "prompt": "p", "status": "done"}, r"\$\.status"),
        ({"spotId": "s", "eraId": "e", "status": "pending"}, r"missing required field `prompt`"),
        (
            {"spotId": "s\nx", "eraId": "e", "prompt": "p", "status": "pending"},
            r"spotId 's\\nx' holds U\+000A",
        ),
        (
            {"spotId": " s", "eraId": "e", "prompt": "p", "status": "pending"},
            r"spotId ' s' starts with white",
        ),
        ({"spotId": "s", "eraId": "e", "prompt": "\ud800", "status": "pending"}, r"surrogates"),
    ],
)
def test_validate_entry_names_the_field_at_fault(fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidEntryError, match=match):
        validate_entry(fields)


def test_schema_files_in_docs_match_the_code() -> None:
    """docs/schema/ is generated from the event types; regenerate it when they change (docs/format.md)."""
    for name, document in schema_documents().items():
        assert (ROOT / "docs" / "schema" / name).read_bytes() == document, f"docs/schema/{name} is stale"


GOLDEN = sorted((Path(__file__).parent / "golden").glob("v*"))


@pytest.mark.parametrize("golden", GOLDEN, ids=[g.name for g in GOLDEN])
def test_golden_logs_of_every_format_version_still_decode_and_verify(golden: Path, tmp_path: Path) -> None:
    directory = tmp_path / golden.name
    shutil.copytree(golden, directory)
    expected_snapshot = (golden / "generated-videos.json").read_bytes()
    report = Ledger(directory, readonly=True).verify()
    assert report.ok, report
    lines = (golden / "events.jsonl").read_bytes().splitlines()
    assert report.events == len(lines)
    assert [decode_event(line).seq for line in lines] == list(range(1, len(lines) + 1))
    with Ledger(directory) as ledger:
        ledger.rebuild()
    assert (directory / "generated-videos.json").read_bytes() == expected_snapshot


def test_there_is_a_golden_log_for_the_current_format_version() -> None:
    from ledger.events import FORMAT_VERSION

    assert any(g.name == f"v{FORMAT_VERSION}" for g in GOLDEN)


def test_the_structs_kept_out_of_the_cycle_collector_hold_only_atomic_values() -> None:
    """Event and VideoMetadata are declared with gc=False, which is safe only while no field can hold a
    mutable container (that could close a reference cycle): atomic values, frozen gc=False records of such
    values, and tuples of them. A new field of another type must revisit that."""
    from typing import Annotated, Literal, get_args, get_origin

    def atomic(kind: object) -> bool:
        if kind in (str, int, float, type(None)):
            return True
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):  # a record held by an event
            config = kind.__struct_config__
            held = msgspec.structs.fields(kind)
            return config.frozen and config.gc is False and all(atomic(f.type) for f in held)
        if get_origin(kind) is tuple:
            return all(atomic(a) for a in get_args(kind) if a is not Ellipsis)
        if get_origin(kind) is Literal:
            return all(isinstance(a, str) for a in get_args(kind))
        if get_origin(kind) is Annotated:
            return atomic(get_args(kind)[0])
        if get_origin(kind) is tuple:  # immutable: only tuple[X, ...] of atomic X
            return get_args(kind)[1:] == (Ellipsis,) and atomic(get_args(kind)[0])
        return bool(get_args(kind)) and all(atomic(a) for a in get_args(kind))  # unions

    for cls in (VideoMetadata, *get_args(EventType)):
        assert cls.__struct_config__.gc is False, cls
        for field in msgspec.structs.fields(cls):
            assert atomic(field.type), f"{cls.__name__}.{field.name}: {field.type}"


@given(st.binary(max_size=5000), st.integers(0, 2**32 - 1))
def test_the_crc32_in_use_is_zlibs(data: bytes, start: int) -> None:
    """The format's crc is zlib's CRC-32; the ledger computes it with ISA-L's, which must agree."""
    import zlib

    from ledger.events import crc32

    assert crc32(data) == zlib.crc32(data)
    assert crc32(data, start) == zlib.crc32(data, start)
