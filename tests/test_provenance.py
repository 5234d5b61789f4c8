"""Provenance, usage and worker records: their rules, their place in the log's lines, the golden logs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ledger.errors import InvalidEntryError
from ledger.events import (
    GENESIS_HASH,
    MAX_PARAMETERS_BYTES,
    AttemptRef,
    Failed,
    Generating,
    InputRef,
    ModelRef,
    Pending,
    Provenance,
    Ready,
    Usage,
    Worker,
    decode_event,
    encode_line,
)
from ledger.provenance import (
    canonical_json,
    check_provenance,
    check_usage,
    check_worker,
    text_sha256,
    this_worker,
)

GOLDEN = sorted((Path(__file__).parent / "golden").glob("v*"))
SHA = "ab" * 32


@pytest.mark.parametrize("golden", GOLDEN, ids=[g.name for g in GOLDEN])
def test_every_golden_line_decodes_and_encodes_again_byte_for_byte(golden: Path) -> None:
    """Old lines read by this code are the same lines: no new field appears in them, none moves."""
    lines = (golden / "events.jsonl").read_bytes().splitlines(keepends=True)
    assert lines
    for line in lines:
        assert encode_line(decode_event(line[:-1])) == line


def test_the_provenance_golden_log_holds_every_new_record() -> None:
    lines = (Path(__file__).parent / "golden" / "v2-provenance" / "events.jsonl").read_bytes().splitlines()
    events = [decode_event(line) for line in lines]
    started = events[1]
    assert isinstance(started, Generating) and started.provenance is not None
    assert started.provenance.model == ModelRef(
        name="wan2.1-t2v", version="14B-2025-02", weights_digest=started.provenance.model.weights_digest
    )
    assert started.provenance.parameters == '{"guidance":6.5,"scheduler":"unipc","size":[832,480],"steps":30}'
    assert started.provenance.inputs[0].role == "reference-image"
    assert started.worker == Worker(name="gpu-a", host="render-01", pid=4242)
    failed = events[2]
    assert isinstance(failed, Failed) and failed.usage is not None
    assert (failed.usage.gpu_seconds, failed.usage.cost, failed.usage.currency) == (118.5, 0.12, "USD")
    ready = events[4]
    assert isinstance(ready, Ready) and ready.usage is not None and ready.provenance is not None
    assert ready.provenance.seed == 987654321  # given at ready: completes the record given at the start
    recorded = [e.provenance for e in events if isinstance(e, Generating | Ready) and e.provenance]
    assert len(recorded) == 5 and all(check_provenance(p) == p for p in recorded)
    reuse, recall = events[9], events[10]
    assert isinstance(reuse, Ready) and reuse.reuses == AttemptRef(
        spot_id="colosseum", era_id="rome-80ad", attempt=4
    )
    assert (
        isinstance(recall, Pending) and recall.reason is not None and recall.reason.startswith("recalled: ")
    )


def test_a_line_without_records_is_the_line_of_before() -> None:
    bare = Ready(2, 3, "2026-12-04T10:00:00.000000Z", "s", "e", GENESIS_HASH, local_path="v.mp4", attempt=2)
    assert b"provenance" not in encode_line(bare) and b"usage" not in encode_line(bare)
    with_usage = Failed(2, 4, "2026-12-04T10:00:00.000000Z", "s", "e", GENESIS_HASH, error="x", usage=Usage())
    assert b'0","error":"x","usage":{},"crc":"' in encode_line(with_usage)


def test_canonical_json_is_one_text_for_equal_parameters() -> None:
    a = canonical_json({"steps": 30, "size": [832, 480], "nested": {"b": 1.5, "a": None}})
    b = canonical_json('{ "nested": {"a": null, "b": 1.5}, "size": [832, 480], "steps": 30 }')
    assert a == b == '{"nested":{"a":null,"b":1.5},"size":[832,480],"steps":30}'
    assert canonical_json({"é": True, "e": False}) == '{"e":false,"é":true}'  # by code point


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        ([1, 2], "must be a JSON object"),
        ("[1]", "must be a JSON object"),
        ("{not json", "not JSON"),
        ({"x": math.nan}, r"parameters\.x is nan"),
        ({"x": [1, math.inf]}, r"parameters\.x\[1\] is inf"),
        ({1: "a"}, "keys of JSON objects are strings"),
        ({"x": {1, 2}}, "set, which JSON cannot hold"),
        ({"x": "a" * MAX_PARAMETERS_BYTES}, "exceed the limit of 16384 bytes"),
    ],
)
def test_parameters_that_are_not_a_bounded_json_object_are_refused(parameters: object, match: str) -> None:
    with pytest.raises(InvalidEntryError, match=match):
        canonical_json(parameters)  # type: ignore[arg-type]


def test_check_provenance_stores_the_parameters_canonical() -> None:
    given = Provenance(model=ModelRef(name="m"), parameters='{"b": 2, "a": 1}', seed=2**64 - 1)
    assert check_provenance(given).parameters == '{"a":1,"b":2}'
    as_mapping = check_provenance({"model": {"name": "m"}, "parameters": '{"b":2,"a":1}', "seed": 2**64 - 1})
    assert as_mapping == check_provenance(given)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"model": {"name": ""}}, r"\$\.model\.name"),
        ({"model": {"name": "a\nb"}}, r"provenance\.model\.name 'a\\nb' must be 1 to 256 characters"),
        ({"model": {"name": "m", "version": "\x85"}}, "provenance.model.version"),
        ({"model": {"name": "m", "weightsDigest": "abc"}}, "is not ALGORITHM:HEX"),
        ({"seed": 2**64}, "not a 64-bit integer"),
        ({"seed": -(2**63) - 1}, "not a 64-bit integer"),
        ({"seed": 1.5}, r"Expected `int \| null`, got `float`"),
        ({"promptSha256": "AB" * 32}, "is not a SHA-256"),
        ({"promptTemplate": "\ud800"}, "surrogates not allowed"),
        ({"inputs": [{"role": "image", "sha256": "xyz"}]}, r"inputs\[0\]\.sha256 'xyz' is not a SHA-256"),
        ({"inputs": [{"role": "image", "sha256": SHA}] * 2}, "name a role twice"),
        ({"inputs": [{"role": f"r{i}", "sha256": SHA} for i in range(65)]}, "length <= 64"),
        ({"seed": "7"}, r"Expected `int \| null`, got `str` - at `\$\.seed`"),
        ({"modle": {"name": "m"}}, r"provenance has no member 'modle' \(it has model, seed, parameters,"),
        ({"model": {"name": "m", "vers": "1"}}, r"provenance\.model has no member 'vers'"),
        ({"inputs": [{"role": "a", "sha": SHA}]}, r"provenance\.inputs\[0\] has no member 'sha'"),
    ],
)
def test_a_bad_provenance_record_is_refused_naming_the_field(record: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidEntryError, match=match):
        check_provenance(record)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"wallSeconds": math.inf}, r"usage\.wallSeconds is inf"),
        ({"gpuSeconds": math.nan}, r"usage\.gpuSeconds is nan"),
        ({"gpuSeconds": -1.0}, r">= 0.0 - at `\$\.gpuSeconds`"),
        ({"gpuType": "A100\n"}, "usage.gpuType"),
        ({"currency": "EUR"}, "without usage.cost"),
        ({"cost": 1.0, "currency": "euro"}, "not an ISO 4217 code"),
    ],
)
def test_a_bad_usage_record_is_refused_naming_the_field(record: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidEntryError, match=match):
        check_usage(record)


def test_worker_records() -> None:
    me = this_worker("gpu-a")
    assert me.name == "gpu-a" and me.pid is not None and me.pid > 0 and me.host
    assert check_worker({"name": "w"}) == Worker(name="w")
    with pytest.raises(InvalidEntryError, match=r">= 1 - at `\$\.pid`"):
        check_worker({"pid": 0})
    with pytest.raises(InvalidEntryError, match=r"worker\.host"):
        check_worker(Worker(host="a\u2028b"))


def test_text_sha256_is_the_digest_of_the_utf8() -> None:
    import hashlib

    assert (
        text_sha256("Akropolis, 430 v. Chr., Dämmerung")
        == hashlib.sha256("Akropolis, 430 v. Chr., Dämmerung".encode()).hexdigest()
    )
    assert check_provenance({"inputs": [InputRef(role="a", sha256=text_sha256("x"))]}).inputs[0].role == "a"
