"""Reading a directory that holds only the app's own generated-videos.json (never imported): refused with
the writers' one-line error, and nothing is created there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger, UnimportedSnapshotError

from .conftest import files_state

APP_FILE = (
    b'[\n{"spotId":"a","eraId":"e","prompt":"p","status":"pending","createdAt":"2026-01-01T00:00:00.000000Z"},\n'
    b'{"spotId":"b","eraId":"e","prompt":"p","status":"ready","localPath":"videos/b.mp4",'
    b'"createdAt":"2026-01-01T00:00:00.000000Z","completedAt":"2026-01-01T00:01:00.000000Z"}\n]\n'
)


@pytest.fixture
def app_dir(ledger_dir: Path) -> Path:
    ledger_dir.mkdir(parents=True, exist_ok=True)
    (ledger_dir / "generated-videos.json").write_bytes(APP_FILE)
    return ledger_dir


def test_reads_of_an_unimported_app_file_refuse_as_writes_do_and_create_nothing(app_dir: Path) -> None:
    before = files_state(app_dir)
    ledger = Ledger(app_dir)
    with pytest.raises(UnimportedSnapshotError) as write:
        ledger.set_video_metadata({"spotId": "c", "eraId": "e", "prompt": "p", "status": "pending"})
    for read in (ledger.get_all_video_metadata, lambda: ledger.get_video_metadata("a", "e")):
        with pytest.raises(UnimportedSnapshotError) as refused:
            read()
        assert str(refused.value).split(";")[0] == str(write.value).split(";")[0]
        assert "nothing was read" in str(refused.value) and "import" in str(refused.value)
    ledger.close()
    with Ledger(app_dir, readonly=True) as reader:
        for read in (reader.get_all_video_metadata, reader.stats, lambda: list(reader.history())):
            with pytest.raises(UnimportedSnapshotError, match="nothing was read"):
                read()
        assert not reader.verify().ok, "verify reports it (adopt them with import)"
    assert files_state(app_dir) == before
    assert sorted(p.name for p in app_dir.iterdir()) == ["generated-videos.json"], "no log, no lock file"


def test_the_commands_say_it_in_one_line_and_import_still_adopts_the_file(
    app_dir: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    for argv in (["list"], ["get", "a", "e"], ["history"]):
        code, out, err = run_cli(*argv)
        assert (code, out) == (1, "")
        assert err.count("\n") == 1 and "holds 2 entries that the log does not" in err
    assert sorted(p.name for p in app_dir.iterdir()) == ["generated-videos.json"]
    assert run_cli("import", str(app_dir / "generated-videos.json"))[0] == 0
    code, out, _ = run_cli("list")
    assert code == 0 and "videos/b.mp4" in out
