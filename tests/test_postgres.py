"""The PostgreSQL store beyond the shared contract: the test server itself, concurrency, faults, tampering."""

from __future__ import annotations

import pytest

from .pg import PgServer, require_psycopg

require_psycopg()

import psycopg  # noqa: E402

from ledger.backend import GENESIS  # noqa: E402
from ledger.errors import LedgerIOError, NoLedgerError  # noqa: E402
from ledger.postgres import SCHEMA_VERSION, PostgresStore, SchemaVersionError, init, schema_version  # noqa: E402

from .contract import appender, everything  # noqa: E402
from .pg import free_port, superuser_url  # noqa: E402


def test_each_test_gets_a_fresh_database_on_a_loopback_only_server(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert tables == (0,) and listen == ("127.0.0.1",) and sockets == (str(pg_server.root),)
    assert pg_server.database() != pg_url


# -- the schema: init, versions, privileges, append-only ----------------------------------------------------


def test_init_creates_the_schema_once_and_is_safe_to_run_again(pg_server: PgServer, pg_url: str) -> None:
    assert schema_version(pg_url) == 0
    with pytest.raises(NoLedgerError, match="create its schema first"):
        PostgresStore(pg_url)
    assert init(pg_url) == SCHEMA_VERSION == schema_version(pg_url)
    store = PostgresStore(pg_url)
    try:
        head = store.append(GENESIS, appender(3))
        assert init(pg_url) == SCHEMA_VERSION  # again: nothing recreated, nothing lost
        assert store.head()[:3] == head[:3] and len(everything(store)) == 3
    finally:
        store.close()


def test_a_newer_schema_is_refused_with_a_typed_error(pg_url: str) -> None:
    init(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger_schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionError, match="upgrade video-ledger"):
        PostgresStore(pg_url)
    with pytest.raises(SchemaVersionError, match="newer than this code"):
        init(pg_url)


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger_events SET line = line", "DELETE FROM ledger_events", "TRUNCATE ledger_events"],
)
def test_the_events_refuse_change_even_from_their_owner_and_the_app_role_holds_no_more_than_it_needs(
    pg_server: PgServer, statement: str
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url)
    try:
        store.append(GENESIS, appender(2))
    finally:
        store.close()
    with (
        psycopg.connect(superuser_url(url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
    ):
        conn.execute(statement)
    with psycopg.connect(url, autocommit=True) as conn:  # the app role
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM ledger_head")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE ledger_other (x int)")
    store = PostgresStore(url)
    try:
        assert len(everything(store)) == 2 and list(store.check())
    finally:
        store.close()


def test_a_bad_url_or_an_absent_server_is_a_clear_ledger_io_error(pg_server: PgServer) -> None:
    url = f"postgresql://ledger_app:secret@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(
        LedgerIOError, match=r"cannot connect to postgresql:127\.0\.0\.1:\d+/nowhere"
    ) as caught:
        PostgresStore(url)
    assert "secret" not in str(caught.value)
