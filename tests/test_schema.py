"""The JSON Schemas (ledger/schema.py) as an app uses them: json-schema-to-typescript turns them into the
TypeScript the docs show, and real snapshots and logs validate against them.

json-schema-to-typescript is installed with npm into a cache directory the first time (node and npm are on
these machines); without npm the TypeScript tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.errors import LedgerError
from ledger.schema import documents

from .conftest import ROOT, FakeClock, entry, need_tool

JSON2TS = "15.0.4"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "video-ledger-tests" / "json2ts"


@pytest.fixture(scope="module")
def json2ts() -> Path:
    tool = CACHE / "node_modules" / ".bin" / "json2ts"
    if not tool.exists():
        npm = need_tool("npm", "the schema's TypeScript tests")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", f"json-schema-to-typescript@{JSON2TS}"],
            cwd=CACHE, check=True, timeout=300,
        )  # fmt: skip
    return tool


def typescript(json2ts: Path, name: str, tmp_path: Path) -> str:
    source = tmp_path / name
    source.write_bytes(documents()[name])
    out = subprocess.run(
        [str(json2ts), "--bannerComment", "", "-i", str(source)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return out.stdout


def test_the_snapshot_schema_gives_the_typescript_the_app_guide_shows(json2ts: Path, tmp_path: Path) -> None:
    shown = re.findall(r"^```ts\n(.*?)^```", (ROOT / "docs" / "app-guide.md").read_text(), re.S | re.M)
    assert shown, "docs/app-guide.md shows no TypeScript"
    assert typescript(json2ts, "snapshot.schema.json", tmp_path).strip() == shown[0].strip()


def test_the_event_schema_gives_a_named_union_of_closed_interfaces(json2ts: Path, tmp_path: Path) -> None:
    ts = typescript(json2ts, "event.schema.json", tmp_path)
    assert "export type EventLine = Pending | Generating | Ready | Failed | Imported" in ts
    assert "[k: string]: unknown" not in ts  # closed: exactly the members written
    assert "| null" not in ts  # a member without a value is left out, never null
    for event in ("Pending", "Generating", "Ready", "Failed", "Imported"):
        body = ts.split(f"export interface {event} {{", 1)[1].split("\n}", 1)[0]
        assert re.search(r"^  crc: string;$", body, re.M), event
        assert re.search(r"^  ts: string;$", body, re.M), event


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(documents()[name])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_no_description_speaks_of_the_python_api() -> None:
    for name, document in documents().items():
        text = document.decode()
        for python_word in ("``", "snake_case", "set_video_metadata", "local_path", "None"):
            assert python_word not in text, (name, python_word)


@pytest.mark.parametrize("golden", sorted((ROOT / "tests" / "golden").glob("v*")), ids=lambda p: p.name)
def test_the_golden_logs_and_snapshots_validate(golden: Path) -> None:
    events, snapshot = _validator("event.schema.json"), _validator("snapshot.schema.json")
    for line in (golden / "events.jsonl").read_text().splitlines():
        events.validate(json.loads(line))
    snapshot.validate(json.loads((golden / "generated-videos.json").read_text()))


def test_a_member_the_schema_does_not_know_is_refused_and_null_is_not_a_value() -> None:
    good = {"spotId": "a", "eraId": "b", "prompt": "", "status": "ready", "createdAt": "t", "updatedAt": "t"}
    good |= {"localPath": "v.mp4", "completedAt": "t"}
    _validator("snapshot.schema.json").validate([good])
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        _validator("snapshot.schema.json").validate([{**good, "extra": 1}])
    with pytest.raises(jsonschema.ValidationError, match="None is not of type"):
        _validator("snapshot.schema.json").validate([{**good, "localPath": None}])
    with pytest.raises(jsonschema.ValidationError, match="'updatedAt' is a required property"):
        _validator("snapshot.schema.json").validate([{k: v for k, v in good.items() if k != "updatedAt"}])


ENTRY = {"spotId": "a", "eraId": "b", "prompt": "p", "createdAt": "2026-11-24T09:00:00.000000Z"}
ENTRY |= {"updatedAt": "2026-11-24T09:00:01.000000Z"}
DONE = {"completedAt": "2026-11-24T09:00:01.000000Z"}


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({**ENTRY, "status": "ready", **DONE}, "'localPath' is a required property"),
        ({**ENTRY, "status": "ready", "localPath": "v.mp4"}, "'completedAt' is a required property"),
        ({**ENTRY, "status": "ready", "localPath": "v.mp4", **DONE, "error": "e"}, "should not be valid"),
        ({**ENTRY, "status": "pending", "error": "e"}, "should not be valid"),
        ({**ENTRY, "status": "generating", "error": "e"}, "should not be valid"),
        ({**ENTRY, "status": "failed", **DONE}, "'error' is a required property"),
    ],
    ids=["ready-without-localPath", "ready-without-completedAt", "error-on-ready", "error-on-pending",
         "error-on-generating", "failed-without-error"],
)  # fmt: skip
def test_a_snapshot_breaking_a_rule_of_its_status_fails_validation(entry: dict[str, str], why: str) -> None:
    """The snapshot's ``if``/``else``: ``error`` only on a failed entry; ``localPath`` and ``completedAt``
    on a ready one."""
    with pytest.raises(jsonschema.ValidationError, match=why):
        _validator("snapshot.schema.json").validate([entry])


def test_the_entries_each_status_leaves_validate() -> None:
    validator = _validator("snapshot.schema.json")
    validator.validate([{**ENTRY, "status": "pending"}, {**ENTRY, "status": "generating", "attempt": 1}])
    validator.validate([{**ENTRY, "status": "ready", "localPath": "v.mp4", **DONE}])
    validator.validate([{**ENTRY, "status": "failed", "error": "e", **DONE, "localPath": "partial.mp4"}])


steps = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["pending", "generating", "ready", "failed"])), max_size=30
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_every_snapshot_and_line_written_validates(steps: list[tuple[int, str]], tmp_path: Path) -> None:
    directory = tmp_path / f"l{len(list(tmp_path.iterdir()))}"
    with Ledger(directory, clock=FakeClock()) as ledger:
        for spot, status in steps:
            try:
                ledger.set_video_metadata(entry(f"spot-{spot}", "era", status))
            except LedgerError:  # an illegal transition is refused; the next step goes on
                continue
    _validator("snapshot.schema.json").validate(json.loads((directory / "generated-videos.json").read_text()))
    events = _validator("event.schema.json")
    for line in (directory / "events.jsonl").read_text().splitlines():
        events.validate(json.loads(line))
