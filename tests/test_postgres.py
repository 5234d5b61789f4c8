"""The PostgreSQL store beyond the shared contract: the test server itself, concurrency, faults, tampering."""

from __future__ import annotations

from .pg import PgServer, require_psycopg

require_psycopg()

import psycopg  # noqa: E402


def test_each_test_gets_a_fresh_database_on_a_loopback_only_server(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert tables == (0,) and listen == ("127.0.0.1",) and sockets == (str(pg_server.root),)
    assert pg_server.database() != pg_url
