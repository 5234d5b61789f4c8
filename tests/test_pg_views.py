"""PostgreSQL for the people and tools that read it: the ``ledger_events_json`` view (each event as JSON with
its type and entry) and the index by entry, through which one entry's history reads only its own rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Ledger

from .conftest import FakeClock, entry
from .pg import PgServer, require_psycopg

require_psycopg()

import psycopg  # noqa: E402


def _record(ledger: Ledger) -> None:
    for spot in ("acropolis", "colosseum", "petra"):
        ledger.set_video_metadata(entry(spot, "founding"))
    ledger.mark_video_failed("colosseum", "founding", "CUDAOutOfMemory: x")
    ledger.set_video_metadata(entry("colosseum", "founding"))
    ledger.set_video_metadata(entry("colosseum", "founding", "ready"))


def test_one_entrys_history_over_postgresql_is_the_file_stores(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.app_database()
    with (
        Ledger(tmp_path / "pg", store=url, clock=FakeClock()) as on_pg,
        Ledger(tmp_path / "file", clock=FakeClock()) as on_file,
    ):
        _record(on_pg)
        _record(on_file)
        for spot in ("colosseum", "petra", "nowhere"):
            assert list(on_pg.history_lines(spot, "founding")) == list(
                on_file.history_lines(spot, "founding")
            )
        assert [e.type for e in on_pg.history("colosseum", "founding", type="failed")] == ["failed"]
        assert len(list(on_pg.history("colosseum"))) == 4  # a spot alone: every row, filtered


def test_the_entry_query_goes_through_the_index(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    from ledger.postgres import _OF_ENTRY

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table: show the index can serve the query
        plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + _OF_ENTRY.encode(), ("a", "b")).fetchall())
    assert "ledger_events_entry" in plan, plan


def test_the_view_shows_each_event_as_json_to_the_app_role(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.app_database()
    with Ledger(tmp_path / "pg", store=url, clock=FakeClock()) as ledger:
        _record(ledger)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT seq, type, spot_id, era_id, ts, event ->> 'error' FROM ledger_events_json ORDER BY seq"
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows][3] == (4, "failed", "colosseum")
    assert rows[3][5] == "CUDAOutOfMemory: x" and rows[0][4].endswith("Z")
    assert len(rows) == 6


@pytest.mark.parametrize(
    "statement", ["DELETE FROM ledger_events_json", "UPDATE ledger_events_json SET seq = 1"]
)
def test_the_view_changes_nothing(pg_server: PgServer, tmp_path: Path, statement: str) -> None:
    url = pg_server.app_database()
    with Ledger(tmp_path / "pg", store=url, clock=FakeClock()) as ledger:
        _record(ledger)
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute(statement.encode())
