"""Adopting the app's existing ``generated-videos.json``: nothing in it is ever discarded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import Ledger, LedgerError, UnimportedSnapshotError
from ledger.cli import main

from .conftest import FakeClock, entry, files_state

APP_FILE = [
    {
        "spotId": "acropolis",
        "eraId": "golden-age",
        "prompt": "The Parthenon new",
        "localPath": "videos/acropolis.mp4",
        "status": "ready",
        "createdAt": "2025-05-01T10:00:00.000000Z",
        "completedAt": "2025-05-01T10:05:00.000000Z",
    },
    {
        "spotId": "colosseum",
        "eraId": "rome-80ad",
        "prompt": "Opening games",
        "status": "failed",
        "createdAt": "2025-05-02T10:00:00.000000Z",
        "completedAt": "2025-05-02T10:01:00.000000Z",
        "error": "model timed out",
    },
    {
        "spotId": "petra",
        "eraId": "nabataean",
        "prompt": "The Treasury carved",
        "status": "pending",
        "createdAt": "2025-05-03T10:00:00.000000Z",
    },
]


def app_directory(tmp_path: Path) -> tuple[Path, bytes]:
    """A directory holding only the app's file, as an app that adopts the ledger has it."""
    directory = tmp_path / "data"
    directory.mkdir()
    data = json.dumps(APP_FILE, indent=2).encode() + b"\n"
    (directory / "generated-videos.json").write_bytes(data)
    return directory, data


def replaced(directory: Path) -> list[Path]:
    return sorted(directory.glob("generated-videos.json.replaced-*"))


def test_importing_the_apps_own_file_in_place_imports_every_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, data = app_directory(tmp_path)
    snapshot = directory / "generated-videos.json"
    assert main(["--dir", str(directory), "import", str(snapshot)]) == 0
    out = capsys.readouterr().out
    assert "imported 3 entries" in out, out
    adopted = json.loads(snapshot.read_bytes())
    for before, after in zip(APP_FILE, adopted, strict=True):
        assert {k: after.get(k) for k in before} == before
    # the app's bytes were kept beside the snapshot before it was replaced
    [copy] = replaced(directory)
    assert copy.read_bytes() == data
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.entries == 3, report


def test_opening_a_ledger_on_the_apps_file_leaves_it_and_writes_refuse(tmp_path: Path) -> None:
    directory, data = app_directory(tmp_path)
    snapshot = directory / "generated-videos.json"
    Ledger(directory).close()  # before: the open "rebuilt" the snapshot from the empty log: []
    assert snapshot.read_bytes() == data
    for projection in ("inline", "deferred"):
        with Ledger(directory, projection=projection) as ledger:  # type: ignore[arg-type]
            with pytest.raises(UnimportedSnapshotError, match="import") as info:
                ledger.set_video_metadata(entry("new", "one", status="pending"))
            assert isinstance(info.value, LedgerError)
            with pytest.raises(UnimportedSnapshotError):
                ledger.rebuild()
    assert snapshot.read_bytes() == data
    assert not (directory / "events.jsonl").exists(), "nothing created until it is imported"
    assert replaced(directory) == []


def test_the_cli_refuses_in_one_line_and_names_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, data = app_directory(tmp_path)
    code = main(["--dir", str(directory), "set", "x", "y", "--status", "pending", "--prompt", "p"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1 and "video-ledger --dir" in err and " import " in err, err
    assert (directory / "generated-videos.json").read_bytes() == data
    assert main(["--dir", str(directory), "verify"]) == 1  # the app's file is not the replay of the log
    out = capsys.readouterr().out
    assert "holds 3 entries the log does not" in out, out


def test_a_snapshot_without_a_checkpoint_is_kept_beside_before_it_is_replaced(
    ledger_dir: Path, clock: FakeClock
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        ledger.set_video_metadata(entry(status="ready"))
    (ledger_dir / "checkpoint.json").unlink()
    snapshot = ledger_dir / "generated-videos.json"
    edited = snapshot.read_bytes().replace(b'"ready"', b'"generating"')  # every key is in the log
    snapshot.write_bytes(edited)
    Ledger(ledger_dir, clock=clock).close()
    [copy] = replaced(ledger_dir)
    assert copy.read_bytes() == edited
    assert Ledger(ledger_dir, readonly=True).verify().ok
    Ledger(ledger_dir, clock=clock).close()  # now vouched for by a checkpoint: nothing more is kept
    assert replaced(ledger_dir) == [copy]


def test_a_checkpointed_snapshot_replaced_by_the_apps_file_is_not_overwritten(
    ledger_dir: Path, clock: FakeClock
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    app = json.dumps(APP_FILE).encode()
    (ledger_dir / "generated-videos.json").write_bytes(app)  # copied over the ledger's own
    before = files_state(ledger_dir)
    with Ledger(ledger_dir, clock=clock) as ledger, pytest.raises(UnimportedSnapshotError):
        ledger.set_video_metadata(entry(status="ready"))
    after = files_state(ledger_dir)
    assert {k: v for k, v in after.items() if "lock" not in k} == {
        k: v for k, v in before.items() if "lock" not in k
    }
    with Ledger(ledger_dir, clock=clock) as ledger:
        report = ledger.import_entries(ledger_dir / "generated-videos.json")
        assert (report.imported, report.already_present) == (2, 1)  # colosseum/rome-80ad was in the log
        ledger.set_video_metadata(entry(status="ready"))
    assert len(json.loads((ledger_dir / "generated-videos.json").read_bytes())) == 3
    assert Ledger(ledger_dir, readonly=True).verify().ok


@pytest.mark.parametrize(
    "odd",
    [
        {"spotId": "petra ", "eraId": "nabataean"},  # an id the ledger refuses (trailing space)
        {"status": "queued"},  # a status the ledger does not know
        {"createdAt": "yesterday"},  # a time that is not one
        {"thumbnail": None, "prompt": 7},  # a field of the wrong type
    ],
    ids=["bad-id", "unknown-status", "bad-time", "wrong-type"],
)
def test_the_apps_file_with_an_entry_the_ledger_refuses_is_not_replaced_by_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], odd: dict[str, object]
) -> None:
    """One entry the ledger cannot take made the whole app's file look like no entries at all: the open
    replaced it with ``[]`` and ``import`` of it in place said "imported 0 entries", exit 0."""
    directory = tmp_path / "data"
    directory.mkdir()
    data = json.dumps([APP_FILE[0], {**APP_FILE[2], **odd}]).encode()
    snapshot = directory / "generated-videos.json"
    snapshot.write_bytes(data)
    assert main(["--dir", str(directory), "import", str(snapshot)]) == 2  # the bad entry, named
    err = capsys.readouterr().err
    assert err.startswith("video-ledger: error: entry 1: ") and len(err.splitlines()) == 1, err
    assert snapshot.read_bytes() == data
    assert sorted(p.name for p in directory.iterdir()) == ["generated-videos.json"]  # no ledger made
    with Ledger(directory) as ledger, pytest.raises(UnimportedSnapshotError, match="holds 2 entries"):
        ledger.set_video_metadata(entry("new", "one", status="pending"))
    assert main(["--dir", str(directory), "verify"]) == 1
    assert "it holds 2 entries the log does not: adopt them" in capsys.readouterr().out
    assert snapshot.read_bytes() == data
    assert not (directory / "events.jsonl").exists(), "nothing created until it is imported"


def test_the_apps_file_with_a_decomposed_id_is_adopted_in_place(tmp_path: Path) -> None:
    """An id in NFD is stored in NFC by import: after it, the app's file holds nothing the log lacks."""
    directory = tmp_path / "data"
    directory.mkdir()
    snapshot = directory / "generated-videos.json"
    snapshot.write_bytes(json.dumps([{**APP_FILE[2], "spotId": "cafe\u0301"}]).encode())
    assert main(["--dir", str(directory), "import", str(snapshot)]) == 0
    with Ledger(directory) as ledger:
        assert [e.spot_id for e in ledger.get_all_video_metadata()] == ["caf\u00e9"]
        ledger.set_video_metadata(entry("new", "one", status="pending"))
    assert Ledger(directory, readonly=True).verify().ok


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(APP_FILE + APP_FILE[:1], id="duplicate key"),
        pytest.param([{k: v for k, v in APP_FILE[2].items() if k != "createdAt"}], id="missing createdAt"),
        pytest.param([*APP_FILE[:1], {"spotId": "x"}], id="invalid item"),
    ],
)
@pytest.mark.parametrize("where", ["app directory", "no directory"])
def test_a_refused_import_leaves_the_directory_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[object], where: str
) -> None:
    if where == "app directory":
        directory, _ = app_directory(tmp_path)
    else:
        directory = tmp_path / "none"
    before = files_state(directory) if directory.exists() else None
    source = tmp_path / "import.json"
    source.write_text(json.dumps(bad))
    assert main(["--dir", str(directory), "import", str(source)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "entry " in err, err
    assert (files_state(directory) if directory.exists() else None) == before
    if before is not None:
        assert sorted(p.name for p in directory.iterdir()) == ["generated-videos.json"]
