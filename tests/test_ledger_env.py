"""``Ledger(directory, store=...)`` takes a store's spec (a ``postgresql://`` URL, or a directory), and with
no store the environment's default ``$VIDEO_LEDGER_STORE`` applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import InvalidEntryError, Ledger
from ledger.stores import STORE_ENV

from .conftest import FakeClock, entry
from .pg import require_psycopg


def test_a_url_opens_the_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    require_psycopg()
    from ledger.postgres import init

    init(pg_url)
    with Ledger(tmp_path / "a", store=pg_url, clock=FakeClock()) as ledger:
        ledger.set_video_metadata(entry("colosseum", "rome-80ad", "pending"))
        assert ledger.verify().ok
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "checkpoint.json", "generated-videos.json", "merkle.index", "merkle.keys", "merkle.tree",
        "snapshot.lock",
    ]  # fmt: skip
    with Ledger(tmp_path / "b", store=pg_url, readonly=True) as other:  # another host's directory
        assert [e.spot_id for e in other.get_all_video_metadata()] == ["colosseum"]


def test_the_environment_names_the_store_of_a_ledger(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_psycopg()
    from ledger.postgres import init

    init(pg_url)
    monkeypatch.setenv(STORE_ENV, pg_url)
    with Ledger(tmp_path / "a", clock=FakeClock()) as ledger:
        ledger.set_video_metadata(entry("petra", "nabataean", "pending"))
    assert not (tmp_path / "a" / "events.jsonl").exists(), "the events went to PostgreSQL"
    monkeypatch.delenv(STORE_ENV)
    with Ledger(tmp_path / "b", store=pg_url, readonly=True) as other:
        assert other.head().seq == 1
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "files"))  # a directory: the ledger directory
    with Ledger(clock=FakeClock()) as ledger:
        ledger.set_video_metadata(entry("petra", "nabataean", "pending"))
        assert ledger.directory == tmp_path / "files"
    assert (tmp_path / "files" / "events.jsonl").stat().st_size > 0
    with Ledger(tmp_path / "files", readonly=True) as same:
        assert same.head().seq == 1
    with pytest.raises(InvalidEntryError, match="give one of them"):
        Ledger(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    monkeypatch.setenv(STORE_ENV, "")  # empty: unset
    with Ledger(tmp_path / "c") as plain:
        assert plain.log_path.exists()


def test_a_directory_store_holds_the_events_and_the_directory_the_snapshot(tmp_path: Path) -> None:
    with Ledger(tmp_path / "events", clock=FakeClock()) as writer:
        writer.set_video_metadata(entry("petra", "nabataean", "pending"))
    with Ledger(tmp_path / "host", store=str(tmp_path / "events"), clock=FakeClock()) as ledger:
        assert [e.spot_id for e in ledger.get_all_video_metadata()] == ["petra"]
    assert (tmp_path / "host" / "generated-videos.json").read_bytes() == (
        tmp_path / "events" / "generated-videos.json"
    ).read_bytes()
    assert not (tmp_path / "host" / "events.jsonl").exists()


def test_the_module_functions_take_a_directory_store_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ledger

    monkeypatch.delenv("VIDEO_LEDGER_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "shared"))
    ledger.set_video_metadata(entry("petra", "nabataean", "pending"))
    assert (tmp_path / "shared" / "events.jsonl").stat().st_size > 0 and not (tmp_path / "data").exists()
    ledger.default_ledger().close()
