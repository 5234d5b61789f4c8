"""The bad-input catalogue: every input below is tried, and its outcome is the one docs/bad-input.md lists.

A refused input raises the named error and leaves every file byte-for-byte as it was. A stored one is
stored exactly and round-trips. The doc's table is checked against this list, so neither can drift.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from ledger import (
    CorruptLogError,
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    Ledger,
    LedgerError,
    LedgerIOError,
    UnimportedSnapshotError,
    VideoMetadata,
)
from ledger.events import GENESIS_HASH, decode_event, encode_line, line_hash

from .conftest import ROOT, FakeClock, entry, files_state

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
NFC = "stored NFC-normalised"
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
    Case("attempt of 0", "InvalidEntryError", setv(attempt=0)),
    Case("attempt a string", "InvalidEntryError", setv(attempt="1")),
    Case(
        "ready naming an attempt of a new entry",
        "IllegalTransitionError",
        setv(status="ready", localPath="v", attempt=1),
    ),
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
    # every Unicode line break and control character is refused in a name
    Case("spotId with U+2028 LINE SEPARATOR", "InvalidEntryError", setv(spotId="colos\u2028seum")),
    Case("spotId with U+2029 PARAGRAPH SEPARATOR", "InvalidEntryError", setv(spotId="colos\u2029seum")),
    Case("spotId with U+0085 NEXT LINE", "InvalidEntryError", setv(spotId="colos\x85seum")),
    Case("eraId with a C1 control (U+009B)", "InvalidEntryError", setv(eraId="ro\x9bme")),
    Case("eraId with a tab", "InvalidEntryError", setv(eraId="ro\tme")),
    Case("eraId with a vertical tab", "InvalidEntryError", setv(eraId="ro\x0bme")),
    Case("eraId with a carriage return", "InvalidEntryError", setv(eraId="rome\r")),
    Case("localPath with U+2028", "InvalidEntryError", setv(localPath="videos/a\u2028b.mp4")),
    Case("localPath with U+0085", "InvalidEntryError", setv(localPath="videos/a\x85b.mp4")),
    Case("localPath with a C1 control (U+0090)", "InvalidEntryError", setv(localPath="videos/a\x90b.mp4")),
    Case("spotId ending in a no-break space", "InvalidEntryError", setv(spotId="colosseum\xa0")),
    Case("spotId starting with an ideographic space", "InvalidEntryError", setv(spotId="\u3000colosseum")),
    Case("eraId with trailing space", "InvalidEntryError", setv(eraId="rome ")),
    Case("spotId with a space inside", STORED, setv(spotId="circus maximus")),
    Case("spotId with a no-break space inside", STORED, setv(spotId="circus\xa0maximus")),
    Case("spotId in NFD (cafe + U+0301)", NFC, setv(spotId="cafe\u0301")),
    Case("eraId in NFD (Hangul jamo)", NFC, setv(eraId="\u1100\u1161")),
]


def _all_cases() -> list[Case | FileCase | ImportCase | VerifyFilesCase]:
    return [*CASES, *FILE_CASES, *IMPORT_CASES, *VERIFY_FILES_CASES]


def test_the_catalogue_has_at_least_sixty_inputs() -> None:
    names = [c.name for c in _all_cases()]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


def test_the_doc_lists_every_case_with_its_outcome() -> None:
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    for case in _all_cases():
        assert f"| {case.name} | {case.outcome} |" in doc, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_entry_input(case: Case, ledger: Ledger, ledger_dir: Path) -> None:
    before = files_state(ledger_dir)
    if case.outcome in (STORED, NFC):
        stored = case.call(ledger)
        assert isinstance(stored, VideoMetadata)
        if case.outcome == NFC:
            assert unicodedata.is_normalized("NFC", stored.spot_id + stored.era_id)
            assert stored.spot_id + stored.era_id != unicodedata.normalize(
                "NFD", stored.spot_id + stored.era_id
            )
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
    assert "regex" not in str(info.value), "in words, not as a regular expression"
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


def _with_fifo(name: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        with Ledger(d) as ledger:
            ledger.set_video_metadata(entry(status="generating"))
        (d / name).unlink(missing_ok=True)
        os.mkfifo(d / name)

    return setup


def _setup_snapshot_is_a_directory(d: Path) -> None:
    d.mkdir()
    (d / "generated-videos.json").mkdir()


def _setup_log_linked_to_dev_zero(d: Path) -> None:
    d.mkdir()
    (d / "events.jsonl").symlink_to("/dev/zero")


def _setup_checkpoint_linked_to_dev_zero(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    (d / "checkpoint.json").unlink()
    (d / "checkpoint.json").symlink_to("/dev/zero")


def _setup_checkpoint_of_a_terabyte(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    with open(d / "checkpoint.json", "r+b") as f:
        f.truncate(1 << 40)  # sparse


def _setup_checkpoint_garbage(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    (d / "checkpoint.json").write_bytes(b"\x00\x00garbage")


def _setup_apps_file_without_checkpoint(d: Path) -> None:
    Ledger(d).close()
    (d / "checkpoint.json").unlink()
    (d / "generated-videos.json").write_bytes(
        b'[{"spotId":"acropolis","eraId":"golden-age","prompt":"p","status":"pending",'
        b'"createdAt":"2025-05-01T10:00:00Z"}]\n'
    )


def _setup_checkpoint_seq_changed(d: Path) -> None:
    with Ledger(d) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    checkpoint = d / "checkpoint.json"
    checkpoint.write_bytes(checkpoint.read_bytes().replace(b'"seq":1,', b'"seq":3,'))


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
    # nothing but a regular file is read, and nothing blocks
    FileCase("log is a FIFO", "LedgerIOError", _with_fifo("events.jsonl")),
    FileCase("log linked to /dev/zero", "LedgerIOError", _setup_log_linked_to_dev_zero),
    FileCase("snapshot is a FIFO", "LedgerIOError", _with_fifo("generated-videos.json")),
    FileCase("snapshot is a directory", "LedgerIOError", _setup_snapshot_is_a_directory),
    FileCase("staging file is a FIFO", "LedgerIOError", _with_fifo("events.jsonl.staged")),
    FileCase("checkpoint is a FIFO", "rebuilt from the log", _with_fifo("checkpoint.json")),
    FileCase("checkpoint linked to /dev/zero", "rebuilt from the log", _setup_checkpoint_linked_to_dev_zero),
    FileCase("checkpoint of 1 TiB (sparse)", "rebuilt from the log", _setup_checkpoint_of_a_terabyte),
    FileCase("lock file is a FIFO", "works", _with_fifo("events.jsonl.lock")),
    FileCase("checkpoint with a changed seq", "rebuilt from the log", _setup_checkpoint_seq_changed),
    FileCase(
        "snapshot holding entries the log does not",
        "UnimportedSnapshotError",
        _setup_apps_file_without_checkpoint,
    ),
]


_REOPEN = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from ledger import Ledger
with Ledger({directory!r}) as ledger:
    assert ledger.get_video_metadata("colosseum", "rome-80ad") is not None
    ledger.set_video_metadata({{"spotId": "new", "eraId": "one", "prompt": "p", "status": "pending"}})
assert Ledger({directory!r}, readonly=True).verify().ok
print("ok")
"""


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.name for c in FILE_CASES])
def test_file_input(case: FileCase, tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    case.setup(directory)
    if case.outcome in ("rebuilt from the log", "works"):
        # In a child process with 2 GiB of address space and a timeout: code that read a device or a huge
        # file whole would fail there (MemoryError) rather than exhaust the machine.
        result = subprocess.run(
            [sys.executable, "-c", _REOPEN.format(directory=str(directory))],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout == "ok\n", result
        return
    before = files_state(directory) if directory.is_dir() else None
    error = {
        "LedgerIOError": LedgerIOError,
        "CorruptLogError": CorruptLogError,
        "UnimportedSnapshotError": UnimportedSnapshotError,
    }[case.outcome]
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


# -- names in words, one entry per canonically equal id --------------------------------------------------


@pytest.mark.parametrize(
    ("spot", "words"),
    [
        (" colosseum", "spotId ' colosseum' starts with white space, which an id may not"),
        ("colosseum\t", "spotId 'colosseum\\t' holds U+0009 (a control character), which an id may not"),
        ("a\u2028b", "spotId 'a\\u2028b' holds U+2028 (LINE SEPARATOR), which an id may not"),
        ("a\x85b", "spotId 'a\\x85b' holds U+0085 (a control character), which an id may not"),
    ],
)
def test_a_refused_id_is_told_in_words(ledger: Ledger, spot: str, words: str) -> None:
    with pytest.raises(InvalidEntryError) as info:
        ledger.set_video_metadata(setv_entry(spotId=spot))
    assert words in str(info.value)


def setv_entry(**fields: object) -> dict[str, object]:
    return {"spotId": "colosseum", "eraId": "rome", "prompt": "p", "status": "generating", **fields}


def test_canonically_equal_ids_are_one_entry(ledger: Ledger, ledger_dir: Path) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    ledger.set_video_metadata(setv_entry(spotId=nfc))
    ledger.set_video_metadata(setv_entry(spotId=nfd, status="ready", localPath="v.mp4"))
    entries = Ledger(ledger_dir, readonly=True).get_all_video_metadata()
    assert [(e.spot_id, e.status) for e in entries] == [(nfc, "ready")]
    assert ledger.get_video_metadata(nfd, "rome") == entries[0]
    assert [e.spot_id for e in ledger.history(nfd)] == [nfc, nfc]
    ledger.set_video_metadata(setv_entry(spotId=nfd))
    assert ledger.mark_video_failed(nfd, "rome", "boom").spot_id == nfc
    assert nfd.encode() not in (ledger_dir / "events.jsonl").read_bytes()


def _log_from_before_nfc(directory: Path, clock: FakeClock) -> None:
    """A log as a version before NFC normalisation wrote it: ``cafe`` + U+0301 (NFD) stored as given in
    two events of one entry, beside an ASCII entry; then its snapshot rebuilt."""
    with Ledger(directory, clock=clock) as ledger:
        ledger.set_video_metadata(setv_entry(spotId="ascii", status="pending"))
        ledger.set_video_metadata(setv_entry(spotId="cafeX", status="pending"))
        ledger.set_video_metadata(setv_entry(spotId="cafeX"))
    log = directory / "events.jsonl"
    out, prev = [], GENESIS_HASH
    for line in log.read_bytes().splitlines():
        event = decode_event(line)
        if event.spot_id == "cafeX":
            event = msgspec.structs.replace(event, spot_id="cafe\u0301")
        new = encode_line(msgspec.structs.replace(event, prev=prev))
        out.append(new)
        prev = line_hash(new[:-1])
    log.write_bytes(b"".join(out))
    (directory / "events.jsonl.sync.lock").unlink()  # the old version's log is a new file
    (directory / "checkpoint.json").unlink()
    (directory / "generated-videos.json").unlink()
    Ledger(directory, clock=clock).rebuild()


def test_an_id_stored_in_nfd_by_an_old_log_stays_reachable_and_gets_no_twin(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replay keys an entry by its stored spelling and lookups normalise to NFC: ``get`` said "no entry"
    and ``set`` created a second café. Now the exact given spelling is used when the NFC one misses."""
    from ledger.cli import main

    nfd = "cafe\u0301"
    _log_from_before_nfc(ledger_dir, clock)
    with Ledger(ledger_dir, clock=clock) as ledger:
        found = ledger.get_video_metadata(nfd, "rome")
        assert found is not None and found.spot_id == nfd
        assert ledger.get_video_metadata("caf\u00e9", "rome") is None  # NFC typed: not looked for (no scan)
        assert ledger.mark_video_failed(nfd, "rome", "boom").spot_id == nfd
        assert ledger.set_video_metadata(setv_entry(spotId=nfd, status="pending")).spot_id == nfd
        with ledger.generation(nfd, "rome", "p") as job:
            (ledger_dir / "v.mp4").write_bytes(b"the video")
            job.ready(ledger_dir / "v.mp4")
        assert ledger.get_video_metadata(nfd, "rome").status == "ready"  # type: ignore[union-attr]
    assert main(["--dir", str(ledger_dir), "get", nfd, "rome"]) == 0
    assert main(["--dir", str(ledger_dir), "set", nfd, "rome", "--status", "pending"]) == 0
    capsys.readouterr()
    entries = Ledger(ledger_dir, readonly=True).get_all_video_metadata()
    assert [(e.spot_id, e.status) for e in entries] == [("ascii", "pending"), (nfd, "pending")], "no twin"
    assert Ledger(ledger_dir, readonly=True).verify().ok


def test_verify_warns_about_ids_stored_in_nfd(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.cli import main

    _log_from_before_nfc(ledger_dir, clock)
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.non_nfc is not None
    assert main(["--dir", str(ledger_dir), "verify"]) == 0
    out = capsys.readouterr().out
    [warning] = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "1 entries" in warning and "not in NFC" in warning and "first at event 2" in warning, warning


def test_verify_json_warns_about_ids_stored_in_nfd(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """``verify --json`` carries the warning the text output prints (it had no field for it)."""
    from ledger.cli import main

    _log_from_before_nfc(ledger_dir, clock)
    assert main(["--dir", str(ledger_dir), "verify", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["ok"] and "1 entries" in found["nonNfc"] and "first at event 2" in found["nonNfc"], found
    (ledger_dir / "other").mkdir()
    with Ledger(ledger_dir / "other", clock=clock) as ledger:
        ledger.set_video_metadata(setv_entry(spotId="caf\u00e9"))
    assert main(["--dir", str(ledger_dir / "other"), "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nonNfc"] is None


def test_verify_of_an_ascii_log_has_no_nfc_warning(ledger: Ledger, ledger_dir: Path) -> None:
    ledger.set_video_metadata(setv_entry(spotId="caf\u00e9"))  # stored in NFC: nothing to say
    ledger.set_video_metadata(setv_entry())
    assert Ledger(ledger_dir, readonly=True).verify().non_nfc is None


# -- import files -----------------------------------------------------------------------------------------

IMPORTED = "imported"
GOOD = (
    b'[{"spotId":"colosseum","eraId":"rome","prompt":"p","status":"pending",'
    b'"createdAt":"2026-11-24T09:00:00Z"}]'
)


def _import_file(data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "import.json").write_bytes(data)
        return tmp / "import.json"

    return make


def _import_fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "import.json")
    return tmp / "import.json"


def _import_dir(tmp: Path) -> Path:
    (tmp / "import.json").mkdir()
    return tmp / "import.json"


@dataclass(frozen=True)
class ImportCase:
    name: str
    outcome: str
    make: Callable[[Path], Path]


IMPORT_CASES = [
    ImportCase("import file with a UTF-8 byte-order mark", IMPORTED, _import_file(b"\xef\xbb\xbf" + GOOD)),
    ImportCase("import file in UTF-16", "InvalidEntryError", _import_file(GOOD.decode().encode("utf-16"))),
    ImportCase(
        "import file nested 100,000 deep",
        "InvalidEntryError",
        _import_file(b"[" * 100_000 + b"]" * 100_000),
    ),
    ImportCase(
        "import entry with a value nested 100,000 deep",
        "InvalidEntryError",
        _import_file(GOOD[:-2] + b',"prompt2":' + b"[" * 100_000 + b"]" * 100_000 + b"}]"),
    ),
    ImportCase("import file that is not JSON", "InvalidEntryError", _import_file(b"spotId,eraId\n")),
    ImportCase("import file holding an object", "InvalidEntryError", _import_file(b'{"entries": []}')),
    ImportCase("import file that is empty", "InvalidEntryError", _import_file(b"")),
    ImportCase(
        "import entry without createdAt",
        "InvalidEntryError",
        _import_file(GOOD.replace(b',"createdAt":"2026-11-24T09:00:00Z"', b"")),
    ),
    ImportCase(
        "import file with an entry twice", "InvalidEntryError", _import_file(GOOD[:-1] + b"," + GOOD[1:])
    ),
    ImportCase(
        "import file with an id in NFC and in NFD",
        "InvalidEntryError",
        _import_file(
            GOOD[:-1].replace(b"colosseum", "caf\u00e9".encode())
            + b","
            + GOOD[1:].replace(b"colosseum", "cafe\u0301".encode())
        ),
    ),
    ImportCase("import file that is a directory", "LedgerIOError", _import_dir),
    ImportCase("import file that is a FIFO", "LedgerIOError", _import_fifo),
    ImportCase("import file that is /dev/zero", "LedgerIOError", lambda tmp: Path("/dev/zero")),
    ImportCase("import file that is missing", "LedgerIOError", lambda tmp: tmp / "no-such.json"),
]


@pytest.fixture
def memory_cap() -> Iterator[None]:
    """At most 2 GiB more address space for the test: code that read /dev/zero whole would fail with a
    MemoryError rather than exhaust the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (2 << 30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("case", IMPORT_CASES, ids=[c.name for c in IMPORT_CASES])
@pytest.mark.usefixtures("memory_cap")
def test_import_input(case: ImportCase, ledger: Ledger, ledger_dir: Path, tmp_path: Path) -> None:
    source = case.make(tmp_path)
    before = files_state(ledger_dir)
    if case.outcome == IMPORTED:
        assert ledger.import_entries(source).imported == 1
        assert ledger.get_video_metadata("colosseum", "rome") is not None
        return
    error = {"InvalidEntryError": InvalidEntryError, "LedgerIOError": LedgerIOError}[case.outcome]
    with pytest.raises(error) as info:
        ledger.import_entries(source)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400, "one clear line"
    assert files_state(ledger_dir) == before, "a refused import changes nothing on disk"


# -- verify --files -----------------------------------------------------------------------------------------

CONTENT = b"the video"
NOT_READ = "problem, not read"
UNMAPPED = "unchecked, not read"
PROBLEM = "problem"
FILE_OK = "ok"


def _in_root(setup: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    return lambda root, outside: setup(root)


def _write(path: Path, data: bytes = CONTENT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _fifo_video(root: Path) -> None:
    (root / "videos").mkdir()
    os.mkfifo(root / "videos" / "v.mp4")


def _link(target: str | Path, at: str) -> Callable[[Path, Path], None]:
    def setup(root: Path, outside: Path) -> None:
        _write(outside / "secret.mp4")
        _write(root / "videos" / "real.mp4")
        (root / "videos" / at).symlink_to(str(target).replace("OUTSIDE", str(outside)))

    return setup


@dataclass(frozen=True)
class VerifyFilesCase:
    name: str
    outcome: str
    local_path: str
    setup: Callable[[Path, Path], None]


VERIFY_FILES_CASES = [
    VerifyFilesCase(
        "localPath absolute, to a file outside the root",
        UNMAPPED,
        "OUTSIDE/secret.mp4",
        lambda root, outside: _write(outside / "secret.mp4"),
    ),
    VerifyFilesCase("localPath /dev/zero", UNMAPPED, "/dev/zero", lambda root, outside: None),
    VerifyFilesCase("localPath /etc/shadow", UNMAPPED, "/etc/shadow", lambda root, outside: None),
    VerifyFilesCase(
        "localPath leaving the root through ..",
        UNMAPPED,
        "../outside/secret.mp4",
        lambda root, outside: _write(outside / "secret.mp4"),
    ),
    VerifyFilesCase(
        "localPath a symbolic link out of the root",
        NOT_READ,
        "videos/v.mp4",
        _link("OUTSIDE/secret.mp4", "v.mp4"),
    ),
    VerifyFilesCase(
        "localPath a symbolic link to /dev/zero", NOT_READ, "videos/v.mp4", _link("/dev/zero", "v.mp4")
    ),
    VerifyFilesCase(
        "localPath a symbolic link inside the root", FILE_OK, "videos/v.mp4", _link("real.mp4", "v.mp4")
    ),
    VerifyFilesCase(
        "localPath a directory",
        NOT_READ,
        "videos/v.mp4",
        _in_root(lambda root: (root / "videos" / "v.mp4").mkdir(parents=True)),
    ),
    VerifyFilesCase(
        "localPath a FIFO",
        NOT_READ,
        "videos/v.mp4",
        _in_root(_fifo_video),
    ),
    VerifyFilesCase("localPath missing", PROBLEM, "videos/v.mp4", lambda root, outside: None),
    VerifyFilesCase(
        "localPath larger than recorded",
        PROBLEM,
        "videos/v.mp4",
        _in_root(lambda root: _write(root / "videos" / "v.mp4", CONTENT * 2)),
    ),
    VerifyFilesCase(
        "localPath with other content of the same size",
        PROBLEM,
        "videos/v.mp4",
        _in_root(lambda root: _write(root / "videos" / "v.mp4", CONTENT.upper())),
    ),
    VerifyFilesCase(
        "localPath with ./ and a harmless ..",
        FILE_OK,
        "./videos/../videos/v.mp4",
        _in_root(lambda root: _write(root / "videos" / "v.mp4")),
    ),
]


@pytest.mark.parametrize("case", VERIFY_FILES_CASES, ids=[c.name for c in VERIFY_FILES_CASES])
def test_verify_files_input(case: VerifyFilesCase, ledger: Ledger, ledger_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    case.setup(ledger_dir, outside)
    ledger.set_video_metadata(setv_entry())
    digest = hashlib.sha256(CONTENT).hexdigest()
    ledger.mark_video_ready(
        "colosseum",
        "rome",
        case.local_path.replace("OUTSIDE", str(outside)),
        size=len(CONTENT),
        sha256=digest,
    )
    report = ledger.verify_files()
    if case.outcome == UNMAPPED:  # no file under the root or a mapped prefix: not read, and not damage
        assert (report.checked, report.ok, len(report.unchecked)) == (0, True, 1), report
        return
    assert report.checked == 1
    if case.outcome == FILE_OK:
        assert report.ok, report.problems
        return
    assert len(report.problems) == 1 and report.problems[0].startswith("colosseum/rome: "), report.problems
    assert ("(not read)" in report.problems[0] or "(refused)" in report.problems[0]) == (
        case.outcome == NOT_READ
    )
