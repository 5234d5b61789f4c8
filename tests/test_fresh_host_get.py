"""A host with no snapshot yet reads one entry (``get SPOT ERA``) from that entry's records alone: over
PostgreSQL through the index by entry, so no other row is read (a damaged row of another entry is never
met), where a fold of the whole store meets it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.errors import CorruptLogError

from .conftest import entry, recent_clock
from .pg import tamper


def _write(url: str, writer_dir: Path) -> None:
    with Ledger(writer_dir, store=url, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one", "pending"))
        ledger.set_video_metadata(entry("b", "two", "pending"))  # record 2: damaged below
        ledger.set_video_metadata(entry("a", "one", "generating"))
        for i in range(50):
            ledger.set_video_metadata(entry(f"other-{i}", "era", "pending"))
        ledger.set_video_metadata(entry("a", "one", "ready"))


def test_a_fresh_host_reads_one_entry_through_the_index_and_no_other_row(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.postgres import init

    init(pg_url)
    _write(pg_url, tmp_path / "writer")
    tamper(pg_url, 2)  # another entry's row: a whole fold meets it
    fresh = tmp_path / "fresh"
    with Ledger(fresh, store=pg_url, readonly=True) as ledger:
        found = ledger.get_video_metadata("a", "one")
        assert found is not None and found.status == "ready" and found.local_path == "videos/a-one.mp4"
        assert found.created_at is not None and found.attempt is not None
        assert ledger.get_video_metadata("nobody", "era") is None
    with Ledger(fresh, store=pg_url, readonly=True) as ledger, pytest.raises(CorruptLogError):
        ledger.get_all_video_metadata()  # the whole store: the damaged row is met
    assert main(["--dir", str(fresh), "--store", pg_url, "get", "a", "one", "--json"]) == 0
    assert '"status":"ready"' in capsys.readouterr().out
    assert not fresh.exists() or not any(fresh.iterdir())  # a read-only get writes nothing


def test_the_entry_read_alone_is_the_entry_a_whole_fold_gives(pg_url: str, tmp_path: Path) -> None:
    from ledger.postgres import init

    init(pg_url)
    _write(pg_url, tmp_path / "writer")
    with Ledger(tmp_path / "writer", store=pg_url, readonly=True) as whole:
        expected = {e.key: e for e in whole.get_all_video_metadata()}
    for key in [("a", "one"), ("b", "two"), ("other-7", "era")]:
        with Ledger(tmp_path / "fresh", store=pg_url, readonly=True) as ledger:
            assert ledger.get_video_metadata(*key) == expected[key]


def test_on_the_file_store_a_directory_without_a_snapshot_gets_the_same_entry(
    ledger_dir: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one", "pending"))
        ledger.set_video_metadata(entry("a", "one", "generating"))
        expected = ledger.get_video_metadata("a", "one")
    (ledger_dir / "generated-videos.json").unlink()
    (ledger_dir / "checkpoint.json").unlink()
    with Ledger(ledger_dir, readonly=True) as ledger:
        assert ledger.get_video_metadata("a", "one") == expected
