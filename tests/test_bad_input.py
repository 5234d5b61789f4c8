"""The bad-input catalogue: every input below is tried, and its outcome is the one docs/bad-input.md lists.

A refused input raises the named error and leaves every file byte-for-byte as it was. A stored one is
stored exactly and round-trips. The doc's table is checked against this list, so neither can drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import (
    CorruptLogError,
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    Ledger,
    LedgerError,
    LedgerIOError,
    VideoMetadata,
)

from .conftest import ROOT, entry, files_state

NAN = float("nan")


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # the error's class name, or "stored exactly"
    call: Callable[[Ledger], object]


def setv(**fields: object) -> Callable[[Ledger], object]:
    base: dict[str, object] = {"spotId": "colosseum", "eraId": "rome", "prompt": "p", "status": "generating"}
    base.update(fields)
    data = {k: v for k, v in base.items() if v is not _MISSING}
    return lambda ledger: ledger.set_video_metadata(data)


_MISSING = object()
STORED = "stored exactly"
BIG = 10**6

CASES = [
    Case("unknown status", "InvalidEntryError", setv(status="done")),
    Case("status in capitals", "InvalidEntryError", setv(status="READY")),
    Case("status missing", "InvalidEntryError", setv(status=_MISSING)),
    Case("status null", "InvalidEntryError", setv(status=None)),
    Case("spotId missing", "InvalidEntryError", setv(spotId=_MISSING)),
    Case("spotId empty", "InvalidEntryError", setv(spotId="")),
    Case("eraId empty", "InvalidEntryError", setv(eraId="")),
    Case("spotId only spaces", "InvalidEntryError", setv(spotId="   ")),
    Case("spotId with leading space", "InvalidEntryError", setv(spotId=" colosseum")),
    Case("spotId with a newline", "InvalidEntryError", setv(spotId="colos\nseum")),
    Case("spotId with NUL", "InvalidEntryError", setv(spotId="colos\x00seum")),
    Case("spotId with DEL", "InvalidEntryError", setv(spotId="colos\x7fseum")),
    Case("spotId of 257 characters", "InvalidEntryError", setv(spotId="s" * 257)),
    Case("spotId of 256 characters", STORED, setv(spotId="s" * 256)),
    Case("spotId in Greek and CJK", STORED, setv(spotId="Ακρόπολη-紫禁城")),
    Case("spotId an integer", "InvalidEntryError", setv(spotId=42)),
    Case("eraId a list", "InvalidEntryError", setv(eraId=["rome"])),
    Case("prompt an integer", "InvalidEntryError", setv(prompt=7)),
    Case("prompt NaN", "InvalidEntryError", setv(prompt=NAN)),
    Case("prompt null", "InvalidEntryError", setv(prompt=None)),
    Case("prompt missing", "InvalidEntryError", setv(prompt=_MISSING)),
    Case("prompt empty", STORED, setv(prompt="")),
    Case("prompt with newlines and tabs", STORED, setv(prompt="line 1\nline 2\ttabbed\r\n")),
    Case("prompt with control characters and NUL", STORED, setv(prompt="a\x00b\x01c\x1bd\x7f")),
    Case("prompt with quotes and backslashes", STORED, setv(prompt='say "hi" \\ and \\n')),
    Case("prompt with a JSON line inside", STORED, setv(prompt='"}\n{"type":"ready","seq":99}')),
    Case("prompt with emoji and U+2028", STORED, setv(prompt="🎬 the\u2028forum")),
    Case("prompt with a lone surrogate", "InvalidEntryError", setv(prompt="bad \ud800 text")),
    Case("prompt of 131,072 characters", STORED, setv(prompt="x" * 131_072)),
    Case("prompt of 131,073 characters", "InvalidEntryError", setv(prompt="x" * 131_073)),
    Case("prompt of 1 MB", "InvalidEntryError", setv(prompt="x" * BIG)),
    Case("localPath empty", "InvalidEntryError", setv(localPath="")),
    Case("localPath with a newline", "InvalidEntryError", setv(localPath="videos/a\nb.mp4")),
    Case("localPath of 4,097 characters", "InvalidEntryError", setv(localPath="v" * 4097)),
    Case("localPath with spaces and ..", STORED, setv(localPath="../videos/a b.mp4")),
    Case("ready without localPath", "InvalidEntryError", setv(status="ready")),
    Case("failed without error", "InvalidEntryError", setv(status="failed")),
    Case("error on a generating entry", "InvalidEntryError", setv(error="boom")),
    Case("error empty", "InvalidEntryError", setv(status="failed", error="")),
    Case("error of 65,537 characters", "InvalidEntryError", setv(status="failed", error="e" * 65_537)),
    Case("new entry starting as ready", "IllegalTransitionError", setv(status="ready", localPath="v.mp4")),
    Case("new entry starting as failed", "IllegalTransitionError", setv(status="failed", error="boom")),
    Case("createdAt of the wrong type", "InvalidEntryError", setv(createdAt=12345)),
    Case("unknown extra key", STORED, setv(thumbnail="t.png")),
    Case("entry that is a list", "InvalidEntryError", lambda ledger: ledger.set_video_metadata(["x"])),  # type: ignore[arg-type]
    Case("entry that is None", "InvalidEntryError", lambda ledger: ledger.set_video_metadata(None)),  # type: ignore[arg-type]
    Case("entry with an object value", "InvalidEntryError", setv(prompt=object())),
    Case(
        "mark failed on a missing entry",
        "EntryNotFoundError",
        lambda ledger: ledger.mark_video_failed("a", "b", "x"),
    ),
    Case(
        "mark failed with an empty error",
        "EntryNotFoundError",
        lambda ledger: ledger.mark_video_failed("a", "b", ""),
    ),
    Case("get with a None id", "InvalidEntryError", lambda ledger: ledger.get_video_metadata(None, "e")),  # type: ignore[arg-type]
]


def test_the_catalogue_has_at_least_forty_inputs() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_doc_lists_every_case_with_its_outcome() -> None:
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    for case in CASES + FILE_CASES:
        assert f"| {case.name} | {case.outcome} |" in doc, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_entry_input(case: Case, ledger: Ledger, ledger_dir: Path) -> None:
    before = files_state(ledger_dir)
    if case.outcome == STORED:
        stored = case.call(ledger)
        assert isinstance(stored, VideoMetadata)
        again = Ledger(ledger_dir, readonly=True).get_video_metadata(stored.spot_id, stored.era_id)
        assert again == stored, "stored exactly, and read back the same from disk"
        assert Ledger(ledger_dir, readonly=True).verify().ok
        return
    error = {
        "InvalidEntryError": InvalidEntryError,
        "IllegalTransitionError": IllegalTransitionError,
        "EntryNotFoundError": EntryNotFoundError,
    }[case.outcome]
    with pytest.raises(error) as info:
        case.call(ledger)
    assert str(info.value), "the error says what was wrong"
    assert files_state(ledger_dir) == before, "a refused input changes nothing on disk"


# -- bad files and directories ----------------------------------------------------------------------------


def _setup_log_is_a_directory(d: Path) -> None:
    d.mkdir()
    (d / "events.jsonl").mkdir()


def _setup_log_is_a_symlink(d: Path) -> None:
    d.mkdir()
    (d.parent / "elsewhere.jsonl").write_bytes(b"")
    (d / "events.jsonl").symlink_to(d.parent / "elsewhere.jsonl")


def _setup_snapshot_is_a_symlink(d: Path) -> None:
    d.mkdir()
    (d.parent / "app.json").write_bytes(b"[]\n")
    (d / "generated-videos.json").symlink_to(d.parent / "app.json")


def _setup_directory_is_a_file(d: Path) -> None:
    d.write_bytes(b"not a directory")


def _setup_invalid_utf8_in_log(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        ledger.set_video_metadata(entry(status="ready"))
    log = d / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0].replace(b"colosseum", b"colos\xff\xfeum") + lines[1])
    # no checkpoint: the open replays the log (a checkpointed prefix is re-read by verify and rebuild)
    (d / "checkpoint.json").unlink()


def _setup_snapshot_not_json(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    (d / "generated-videos.json").write_bytes(b"{oops")


def _setup_snapshot_invalid_utf8(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    (d / "generated-videos.json").write_bytes(b'[{"spotId":"\xff"}]\n')


def _setup_checkpoint_garbage(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    (d / "checkpoint.json").write_bytes(b"\x00\x00garbage")


@dataclass(frozen=True)
class FileCase:
    name: str
    outcome: str
    setup: Callable[[Path], None]
    readonly: bool = False


FILE_CASES = [
    FileCase("log is a directory", "LedgerIOError", _setup_log_is_a_directory),
    FileCase("log is a symbolic link", "LedgerIOError", _setup_log_is_a_symlink),
    FileCase("snapshot is a symbolic link", "LedgerIOError", _setup_snapshot_is_a_symlink),
    FileCase("ledger directory is a file", "LedgerIOError", _setup_directory_is_a_file),
    FileCase("invalid UTF-8 inside the log", "CorruptLogError", _setup_invalid_utf8_in_log),
    FileCase("snapshot that is not JSON", "rebuilt from the log", _setup_snapshot_not_json),
    FileCase("snapshot with invalid UTF-8", "rebuilt from the log", _setup_snapshot_invalid_utf8),
    FileCase("checkpoint that is garbage", "rebuilt from the log", _setup_checkpoint_garbage),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.name for c in FILE_CASES])
def test_file_input(case: FileCase, tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    case.setup(directory)
    if case.outcome == "rebuilt from the log":
        with Ledger(directory) as ledger:
            assert ledger.get_video_metadata("colosseum", "rome-80ad") is not None
        assert Ledger(directory, readonly=True).verify().ok
        return
    before = files_state(directory) if directory.is_dir() else None
    error = {"LedgerIOError": LedgerIOError, "CorruptLogError": CorruptLogError}[case.outcome]
    with pytest.raises(error) as info, Ledger(directory) as ledger:
        ledger.set_video_metadata(entry("new", "one", status="pending"))
    assert isinstance(info.value, LedgerError)
    assert str(directory) in str(info.value) or "line" in str(info.value)
    if before is not None:
        assert {k: v for k, v in files_state(directory).items() if not k.endswith(".lock")} == {
            k: v for k, v in before.items() if not k.endswith(".lock")
        }


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_directory_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        with pytest.raises(LedgerIOError, match="Permission denied"):
            Ledger(directory)
    finally:
        directory.chmod(0o755)
