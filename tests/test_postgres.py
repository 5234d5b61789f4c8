"""The PostgreSQL store beyond the shared contract: the test server itself, concurrency, faults, tampering."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest

from .conftest import PYTHON, ROOT, FakeClock, entry
from .pg import CuttingProxy, PgServer, require_psycopg

require_psycopg()

import psycopg  # noqa: E402

from ledger import Ledger  # noqa: E402
from ledger.backend import GENESIS, Head, Record  # noqa: E402
from ledger.errors import (  # noqa: E402
    ConflictError,
    CorruptLogError,
    DurabilityError,
    InvalidEntryError,
    LedgerClosedError,
    LedgerIOError,
    NoLedgerError,
)
from ledger.events import decode_event, line_hash  # noqa: E402
from ledger.postgres import (  # noqa: E402
    SCHEMA_VERSION,
    CommitInDoubtError,
    PostgresStore,
    SchemaVersionError,
    init,
    schema_version,
)

from .contract import TS, appender, everything, make_records  # noqa: E402
from .pg import free_port, superuser_url  # noqa: E402


def test_each_test_gets_a_fresh_database_on_a_loopback_only_server(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
    assert tables == (0,) and listen == ("127.0.0.1",) and sockets == (str(pg_server.root),)
    assert pg_server.database() != pg_url


@pytest.mark.parametrize(("ci", "outcome", "code"), [("", "1 skipped", 0), ("true", "1 error", 1)])
def test_without_server_binaries_the_tests_skip_saying_why_and_fail_under_ci(
    tmp_path: Path, ci: str, outcome: str, code: int
) -> None:
    env = {**os.environ, "VIDEO_LEDGER_PG_BIN": str(tmp_path), "CI": ci}
    test = "tests/test_postgres.py::test_each_test_gets_a_fresh_database_on_a_loopback_only_server"
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsf", test],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert outcome in result.stdout, result.stdout
    assert (
        f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in VIDEO_LEDGER_PG_BIN={tmp_path}"
        in (result.stdout)
    )


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


def test_a_schema_of_version_1_is_refused_until_init_migrates_it_keeping_its_records(pg_url: str) -> None:
    from ledger.postgres import _MIGRATIONS

    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE ledger_schema_version (version integer NOT NULL)")
        conn.execute(_MIGRATIONS[0].encode())
        conn.execute("INSERT INTO ledger_schema_version VALUES (1)")
        (record,) = make_records(GENESIS, 1)
        conn.execute(
            "INSERT INTO ledger_events (seq, line, request_id) VALUES (1, %s, %s)",
            (record.line, uuid.uuid4()),
        )
        conn.execute("UPDATE ledger_head SET seq = 1, hash = %s, ts = %s", (line_hash(record.line), TS))
    with pytest.raises(SchemaVersionError, match="run init to migrate it"):
        PostgresStore(pg_url)
    assert init(pg_url) == SCHEMA_VERSION == 3
    store = PostgresStore(pg_url)
    try:
        store.append(store.head(), appender(1))
        assert [r.seq for r in everything(store)] == [1, 2] and list(store.check())
        with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.errors.RaiseException):
            conn.execute("UPDATE ledger_head SET seq = 1")  # the head row's check is in place
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


@pytest.mark.parametrize(
    "role", ["public", "PUBLIC", " Public ", '"public"', "pg_write_all_data", "pg_database_owner", "postgres"]
)
def test_init_refuses_an_app_role_whose_grants_reach_past_the_app_and_creates_nothing(
    pg_url: str, role: str
) -> None:
    import io

    from ledger.cli import main

    with pytest.raises(
        InvalidEntryError, match=r"the app role .* is (PUBLIC|a predefined|a superuser).*nothing"
    ):
        init(pg_url, app_role=role)
    err = io.StringIO()
    assert main(["--store", pg_url, "init", "--app-role", role], out=io.StringIO(), err=err) == 2
    assert err.getvalue().count("\n") == 1 and "nothing was created" in err.getvalue()
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        functions = conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'ledger%'").fetchone()
    assert tables == (0,) and functions == (0,) and schema_version(pg_url) == 0


APP_ROLE_CANNOT = [
    "ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_append_only",
    "ALTER TABLE ledger_head DISABLE TRIGGER ledger_head_names_the_last_record",
    "DROP TRIGGER ledger_events_append_only ON ledger_events",
    "ALTER TABLE ledger_events OWNER TO ledger_app",
    "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE sql AS 'SELECT NULL'",
    "SET session_replication_role = replica",
    "SET ROLE ledger_owner",
    "DROP TABLE ledger_events",
]


def _owned_by_a_role_nobody_logs_in_as(pg_server: PgServer) -> str:
    """A ledger set up as docs/scaling.md says: its tables owned by ``ledger_owner`` (NOLOGIN), created
    by a superuser acting as that role: the app role's URL."""
    from .pg import APP_ROLE

    url = pg_server.database()
    db = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ledger_owner'").fetchone():
            conn.execute("CREATE ROLE ledger_owner NOLOGIN")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
        conn.execute(f"ALTER DATABASE {db} OWNER TO ledger_owner")
    init(url + "?options=-c%20role%3Dledger_owner", app_role=APP_ROLE)
    return pg_server.database_url(db, APP_ROLE)


@pytest.mark.parametrize("statement", APP_ROLE_CANNOT)
def test_the_app_role_cannot_switch_the_checks_off_nor_become_the_tables_owner(
    pg_server: PgServer, statement: str
) -> None:
    url = _owned_by_a_role_nobody_logs_in_as(pg_server)
    store = PostgresStore(url)
    try:
        store.append(GENESIS, appender(2))
        with (
            psycopg.connect(url, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
        with psycopg.connect(url) as conn:
            owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename LIKE 'ledger%'")
            assert owners.fetchall() == [("ledger_owner",)]
            triggers = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ledger%' AND tgenabled = 'O'"
            )
            assert triggers.fetchone() == (3,)  # the two on the events and the head row's, all in force
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            psycopg.connect(pg_server.database_url(url.rsplit("/", 1)[1], "ledger_owner")).close()
        assert len(everything(store)) == 2 and list(store.check())
    finally:
        store.close()


def test_a_role_that_owns_the_tables_and_logs_in_can_switch_the_append_only_check_off(pg_url: str) -> None:
    """What docs/scaling.md says exactly: the tables' owner (and a superuser) can get past the triggers;
    so the owner is a role nobody logs in as."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ledger_login_owner'").fetchone():
            conn.execute("CREATE ROLE ledger_login_owner LOGIN")
        conn.execute(f"ALTER DATABASE {pg_url.rsplit('/', 1)[1]} OWNER TO ledger_login_owner")
    owner_url = pg_url.replace("postgres@", "ledger_login_owner@")
    init(owner_url)
    store = PostgresStore(owner_url)
    try:
        store.append(GENESIS, appender(2))
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_append_only")
            conn.execute(
                "UPDATE ledger_events SET line = overlay(line placing 'X' from 12 for 1) WHERE seq = 1"
            )
        with pytest.raises(CorruptLogError) as caught:  # what verify then says
            list(store.check())
        assert caught.value.line == 1
    finally:
        store.close()


def test_a_bad_url_or_an_absent_server_is_a_clear_ledger_io_error(pg_server: PgServer) -> None:
    url = f"postgresql://ledger_app:secret@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(
        LedgerIOError, match=r"cannot connect to postgresql:127\.0\.0\.1:\d+/nowhere"
    ) as caught:
        PostgresStore(url)
    assert "secret" not in str(caught.value)


# -- passwords: from libpq's own places, never shown ---------------------------------------------------------


@pytest.mark.parametrize("source", ["PGPASSWORD", "PGPASSFILE", "~/.pgpass", "$VIDEO_LEDGER_STORE"])
def test_a_password_comes_from_libpqs_own_places_and_never_from_the_command_line(
    pg_server: PgServer, tmp_path: Path, source: str
) -> None:
    """The store's URL names no password; libpq finds it (the server asks this role for it) in
    ``PGPASSWORD``, the file ``PGPASSFILE`` names or ``~/.pgpass``; ``$VIDEO_LEDGER_STORE`` names the store
    without ``--store`` on the command line that ``ps`` shows every local user."""
    from .pg import PASSWORD, PASSWORD_ROLE

    url = pg_server.password_database()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE", "VIDEO_LEDGER_STORE")}
    env["HOME"] = str(home)

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "ledger", "--dir", str(tmp_path / "d"), *argv],
            cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused = run("--store", url, "list")
    assert refused.returncode == 1 and "password" in refused.stderr, refused.stderr
    passfile = home / ".pgpass"
    passfile.write_text(f"{pg_server.host}:{pg_server.port}:*:{PASSWORD_ROLE}:{PASSWORD}\n")
    passfile.chmod(0o600)  # libpq ignores a password file others may read
    if source == "PGPASSWORD":
        passfile.unlink()
        done = run("--store", url, "list", PGPASSWORD=PASSWORD)
    elif source == "PGPASSFILE":
        passfile = passfile.rename(tmp_path / "secrets")
        done = run("--store", url, "list", PGPASSFILE=str(passfile))
    elif source == "~/.pgpass":
        done = run("--store", url, "list")
    else:
        done = run("list", VIDEO_LEDGER_STORE=url)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert PASSWORD not in url


SECRET = "s3cr3t-Pw"
MISTYPED = [
    "/db?password%3D{s}",
    "/db?sslpassword%3D{s}",
    "/db?user=ledger_app&password%3d{s}",
    "/db?password{s}",
    "/db?password:{s}",
    "/db?password%20={s}",
    "/db?pass%77ord={s}",
    "/db?PASSWORD={s}",
    "/db?password=={s}",
    "/db?password=%{s}",
    "/db%3Fpassword%3D{s}",
    "/db&password={s}",
    "/db?password={s}&port=x",
    "/db?password={s}&bogus=1",
]


@pytest.mark.parametrize("tail", MISTYPED)
def test_no_mistyped_url_shows_its_password_in_any_error_or_message(
    pg_server: PgServer, tmp_path: Path, tail: str
) -> None:
    import io

    from ledger.cli import main
    from ledger.stores import describe_store

    url = f"postgresql://ledger_app@{pg_server.host}:{pg_server.port}" + tail.format(s=SECRET)
    shown = [describe_store(url)]
    for argv in (["--store", url, "list"], ["--store", url, "init"], ["copy", "--from", url, "--to", "x"]):
        out, err = io.StringIO(), io.StringIO()
        code = main(["--dir", str(tmp_path / "d"), *argv], out=out, err=err)
        assert code in (1, 2)
        shown += [out.getvalue(), err.getvalue()]
    for text in shown:
        assert SECRET not in text and SECRET.lower() not in text.lower(), text


# -- concurrency: writer processes on one store ---------------------------------------------------------

WRITER = """
import sys
from ledger.backend import GENESIS
from ledger.postgres import PostgresStore
from tests.contract import appender

store = PostgresStore(sys.argv[1])
head = GENESIS
for _ in range(int(sys.argv[3])):
    head = store.append(head, appender(1, spot=sys.argv[2]))
store.close()
"""


def test_eight_writer_processes_append_500_each_contiguously_on_one_chain(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    writers = [
        subprocess.Popen([PYTHON, "-c", WRITER, url, f"writer-{i}", "500"], cwd=ROOT, stderr=subprocess.PIPE)
        for i in range(8)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err.decode()[-2000:]
    store = PostgresStore(url)
    try:
        audit = store.check()
        events = [e for batch in audit for e in batch.events]  # every crc, seq and prev re-verified
        assert [e.seq for e in events] == list(range(1, 4001))
        assert audit.end[:3] == store.head()[:3]
        assert Counter(e.spot_id for e in events) == {f"writer-{i}": 500 for i in range(8)}
    finally:
        store.close()


# -- faults: the connection cut around COMMIT, the server killed --------------------------------------------


@pytest.fixture
def proxy(pg_server: PgServer) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(pg_server.host, pg_server.port)
    yield proxy
    proxy.close()


def _request_ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT request_id FROM ledger_events ORDER BY seq")]


# An append whose head is the tip takes one round trip (BEGIN, the conditional insert, COMMIT in one
# pipeline); one whose head is stale finds that out there (nothing written) and takes the lock. The cuts
# are made on either path: "tip" cuts the one-round-trip pipeline, "stale" the locked path's COMMIT.
PATHS = {"tip": b"COMMIT", "stale": b"WITH new AS"}


def _on_path(path: str, url: str, store: PostgresStore) -> tuple[Head, int]:
    """The head to append after and how many runs of ``decide`` the path takes before its own: on "stale",
    another handle appends one record first, so ``store``'s head is not the tip (one run on it, in vain)."""
    first = store.append(GENESIS, appender(1))
    if path == "tip":
        return first, 0
    other = PostgresStore(url)
    try:
        other.append(first, appender(1, spot="acropolis"))
    finally:
        other.close()
    return first, 1


@pytest.mark.parametrize("path", PATHS)
def test_a_connection_cut_after_commit_was_sent_finds_the_request_and_appends_nothing_twice(
    pg_server: PgServer, proxy: CuttingProxy, path: str
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(proxy.url(url))
    try:
        first, vain = _on_path(path, url, store)
        proxy.arm("after", PATHS[path])
        seen: list[tuple[Head, list[Record]]] = []
        head = store.append(first, appender(2, seen=seen))
        assert proxy.cuts == 1
        assert len(seen) == vain + 1  # the retry found the committed request, it did not plan again
        records = everything(store)
        assert [r.seq for r in records] == list(range(1, vain + 4)) and head[:3] == store.head()[:3]
        ids = _request_ids(url)
        assert ids[-1] == ids[-2] != ids[-3] and len(set(ids)) == vain + 2
        assert list(store.check())
    finally:
        store.close()


@pytest.mark.parametrize("path", PATHS)
def test_a_connection_cut_before_commit_appends_once_on_the_retry(
    pg_server: PgServer, proxy: CuttingProxy, path: str
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(proxy.url(url))
    try:
        first, vain = _on_path(path, url, store)
        proxy.arm("before", PATHS[path])
        seen: list[tuple[Head, list[Record]]] = []
        head = store.append(first, appender(2, seen=seen))
        assert proxy.cuts == 1
        assert len(seen) == vain + 2  # the lost attempt rolled back: planned again on the tip, appended once
        assert seen[-1][0].seq == vain + 1  # the last plan ran on the tip as it was before its records
        assert [r.seq for r in everything(store)] == list(range(1, vain + 4)) and head[:3] == store.head()[:3]
        ids = _request_ids(url)
        assert ids[-1] == ids[-2] != ids[-3] and len(set(ids)) == vain + 2
        assert list(store.check())
    finally:
        store.close()


def test_when_the_server_stays_away_a_lost_commit_is_a_durability_error_that_find_resolves(
    pg_server: PgServer, proxy: CuttingProxy
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(proxy.url(url), retry_for=0.5)
    try:
        proxy.arm("after")
        proxy.refuse = True
        with pytest.raises(CommitInDoubtError, match=r"whether request .* was recorded is unknown") as caught:
            store.append(GENESIS, appender(2))
        with pytest.raises(LedgerClosedError):  # the handle refuses further appends
            store.append(GENESIS, appender(1))
    finally:
        store.close()
    direct = PostgresStore(url)
    try:
        assert isinstance(caught.value, DurabilityError)
        found = direct.find(caught.value.request)
        assert found is not None and found[:3] == direct.head()[:3] and found.seq == 2
        assert direct.find(uuid.uuid4()) is None
    finally:
        direct.close()
    proxy.refuse = False  # the server is back: the command the error names answers
    assert _settle(str(caught.value)) == "2"  # both records of the request are there


def _settle(message: str) -> str:
    """Run the one command an in-doubt error names (``psql …``) as a user would: what it prints."""
    import re
    import shlex

    from .pg import find_bindir

    command = re.search(r"run (psql '[^']*' -Atc \"[^\"]*\")", message)
    assert command is not None, message
    bindir = find_bindir()
    assert bindir is not None
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        shlex.split(command.group(1)), env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_commit_stays_in_doubt_until_a_lookup_under_the_lock_settles_it(
    pg_server: PgServer, proxy: CuttingProxy
) -> None:
    """COMMIT sent and its answer lost; the reconnect works but its lookup is cut too, and then the server
    is gone: the append is still in doubt (it was recorded), never "nothing was recorded"."""
    url = pg_server.app_database()
    store = PostgresStore(proxy.url(url), retry_for=1)
    try:
        proxy.arm("after")
        proxy.then = ("before", b"WHERE request_id")
        proxy.refuse_at = 2
        with pytest.raises(CommitInDoubtError) as caught:
            store.append(GENESIS, appender(2))
        assert proxy.cuts == 2
    finally:
        store.close()
    direct = PostgresStore(url)
    try:
        assert direct.find(caught.value.request) == direct.head() and direct.head().seq == 2
    finally:
        direct.close()


def test_when_the_server_stays_away_a_cut_before_commit_is_an_io_error_and_nothing_is_recorded(
    pg_server: PgServer, proxy: CuttingProxy
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(proxy.url(url), retry_for=0.5)
    try:
        first, _ = _on_path("stale", url, store)  # a stale head: the append takes the lock
        proxy.arm("before", b"FOR UPDATE")  # cut as the lock is asked for: COMMIT never sent, the store knows
        proxy.refuse = True
        with pytest.raises(LedgerIOError, match="before COMMIT; nothing was recorded") as caught:
            store.append(first, appender(2))
        assert not isinstance(caught.value, DurabilityError)
    finally:
        store.close()
    direct = PostgresStore(url)
    try:
        assert direct.head().seq == 2 and len(everything(direct)) == 2
    finally:
        direct.close()


def test_on_the_one_round_trip_path_a_cut_with_the_server_away_is_in_doubt_and_find_tells(
    pg_server: PgServer, proxy: CuttingProxy
) -> None:
    """The one round trip carries COMMIT with the insert: once it is sent, a cut leaves the append in doubt
    even when the server never got it; find on a new handle says nothing was recorded."""
    url = pg_server.app_database()
    store = PostgresStore(proxy.url(url), retry_for=0.5)
    try:
        first = store.append(GENESIS, appender(1))
        proxy.arm("before")
        proxy.refuse = True
        with pytest.raises(CommitInDoubtError) as caught:
            store.append(first, appender(2))
    finally:
        store.close()
    direct = PostgresStore(url)
    try:
        assert direct.find(caught.value.request) is None and direct.head()[:3] == first[:3]
    finally:
        direct.close()
    proxy.refuse = False
    assert _settle(str(caught.value)) == "0"


def test_a_read_whose_session_an_administrator_terminated_reconnects_and_reads(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url)
    try:
        head = store.append(GENESIS, appender(2))
        for _ in range(3):
            pid = store._connection().info.backend_pid
            with psycopg.connect(superuser_url(url), autocommit=True) as conn:
                assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
            assert store.head()[:3] == head[:3] and store._connection().info.backend_pid != pid
    finally:
        store.close()


def test_a_server_killed_mid_run_and_restarted_loses_nothing_acknowledged(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    acknowledged: list[Head] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(spot: str) -> None:
        store = PostgresStore(url, retry_for=60)
        head = GENESIS
        try:
            while not stop.is_set():
                try:
                    head = store.append(head, appender(2, spot=spot))
                except (LedgerIOError, ConflictError) as exc:  # a clear, typed error: plan again
                    errors.append(exc)
                    continue
                acknowledged.append(head)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(f"spot-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        before = len(acknowledged)
        pg_server.stop("immediate")  # a crash: no checkpoint, no goodbye to the clients
        time.sleep(0.5)
        pg_server.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    assert not [e for e in errors if not isinstance(e, LedgerIOError)], errors
    assert before > 0 and len(acknowledged) > before  # writers went on after the restart
    store = PostgresStore(url)
    try:
        records = {r.seq: r for r in everything(store)}
        for head in acknowledged:  # every acknowledged append is there, exactly as acknowledged
            assert line_hash(records[head.seq].line) == head.hash
        events = [e for batch in store.check() for e in batch.events]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert all(n % 2 == 0 for n in Counter(e.spot_id for e in events).values())  # no half append
    finally:
        store.close()


# -- tampering: a superuser's change is named ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ("UPDATE ledger_events SET line = overlay(line placing 'X' from 12 for 1) WHERE seq = 4", 4),
        ("DELETE FROM ledger_events WHERE seq = 3", 3),
        ("UPDATE ledger_head SET seq = 7", 7),
    ],
)
def test_a_row_a_superuser_changed_is_named_by_check(pg_server: PgServer, change: str, line: int) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url)
    try:
        store.append(GENESIS, appender(6))
        with psycopg.connect(superuser_url(url), autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # past the append-only triggers
            conn.execute(change)
        with pytest.raises(CorruptLogError) as caught:
            list(store.check())
        assert caught.value.line == line and str(caught.value).startswith("postgresql:127.0.0.1:")
    finally:
        store.close()


# -- the head row: the appends' lock, never trusted to say where the log ends ------------------------------

HEAD_LIES = {
    "moved back": "UPDATE ledger_head SET seq = 2, hash = %(hash2)s, ts = %(ts2)s",  # record 2, exactly
    "wrong hash": "UPDATE ledger_head SET hash = repeat('0', 64)",
    "time in 2099": "UPDATE ledger_head SET ts = '2099-01-01T00:00:00.000000Z'",
}


def _record_2(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT line FROM ledger_events WHERE seq = 2").fetchone()
    assert row is not None
    line = bytes(row[0])
    return {"hash2": line_hash(line), "ts2": decode_event(line).ts}


@pytest.mark.parametrize("lie", HEAD_LIES)
def test_the_app_role_cannot_make_the_head_row_lie(pg_server: PgServer, lie: str) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url)
    try:
        head = store.append(GENESIS, appender(4))
        with psycopg.connect(url, autocommit=True) as conn:  # the app role, which may UPDATE the head row
            with pytest.raises(psycopg.errors.RaiseException, match="ledger_head must name the last record"):
                conn.execute(HEAD_LIES[lie], _record_2(url))
            assert conn.execute("SELECT seq, hash, ts FROM ledger_head").fetchone() == tuple(head[:3])
        assert store.head()[:3] == head[:3] and list(store.check())
    finally:
        store.close()


@pytest.mark.parametrize("lie", HEAD_LIES)
def test_a_head_row_that_lies_hides_nothing_and_lends_no_writer_its_hash_or_time(
    pg_server: PgServer, tmp_path: Path, lie: str
) -> None:
    """The head row made to lie past the check (as the tables' owner or a superuser can): readers read
    where the records end, a writer one record behind chains onto the last record, and a later event is
    stamped by the clock, not by the head row."""
    url = pg_server.app_database()
    writer = PostgresStore(url)
    try:
        behind = writer.append(GENESIS, appender(3))
        head = writer.append(behind, appender(1, spot="acropolis"))
        with psycopg.connect(superuser_url(url), autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # past the head row's check
            conn.execute(HEAD_LIES[lie], _record_2(url))
        host = PostgresStore(url)  # a new host
        try:
            assert host.head()[:3] == head[:3] and [r.seq for r in everything(host)] == [1, 2, 3, 4]
            assert host.wait(3, timeout=0) is True
        finally:
            host.close()
        late = PostgresStore(url)  # a writer one record behind: shown record 4, chained onto it
        try:
            seen: list[tuple[Head, list[Record]]] = []
            after = late.append(behind, appender(1, seen=seen))
            assert seen[-1][0][:3] == head[:3] and [r.seq for r in seen[-1][1]] == [4]
        finally:
            late.close()
        with Ledger(tmp_path / "host", store=url, clock=FakeClock()) as ledger:
            ledger.set_many([entry("forum", "rome-80ad", "pending")])
        events = [e for batch in writer.check() for e in batch.events]  # the chain and the head row, healed
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6] and events[4].prev == head.hash
        assert events[5].prev == after.hash
        assert events[5].ts.startswith("2026") and writer.head()[:3] == (
            6,
            line_hash(_line(url, 6)),
            events[5].ts,
        )
    finally:
        writer.close()


def _line(url: str, seq: int) -> bytes:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT line FROM ledger_events WHERE seq = %s", (seq,)).fetchone()
    assert row is not None
    return bytes(row[0])


# -- the head row's lock: bounded ----------------------------------------------------------------------------

SHORT_LOCKS = "?options=-c%20lock_timeout%3D1s%20-c%20idle_in_transaction_session_timeout%3D1s"


def test_a_store_session_bounds_its_wait_for_the_lock_and_its_idling_in_a_transaction(
    pg_server: PgServer,
) -> None:
    url = pg_server.app_database()
    store, own = PostgresStore(url), PostgresStore(url + "?options=-c%20lock_timeout%3D2s")
    try:
        settings = (
            "SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')"
        )
        assert store._connection().execute(settings).fetchone() == ("10s", "5s")
        assert own._connection().execute(settings).fetchone() == ("2s", "5s")  # the URL's own value wins
    finally:
        store.close()
        own.close()


def test_a_session_that_took_the_head_row_and_walked_away_is_named_and_nothing_is_recorded(
    pg_server: PgServer,
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url + SHORT_LOCKS)
    try:
        head = store.append(GENESIS, appender(2))
        with psycopg.connect(url, application_name="walked-away") as holder:
            holder.execute("SELECT * FROM ledger_head FOR UPDATE")  # BEGIN; … and no COMMIT
            pid = holder.info.backend_pid
            for after in (head, GENESIS):  # the one round trip (its head the tip) and the locked path
                started = time.monotonic()
                with pytest.raises(LedgerIOError) as caught:
                    store.append(after, appender(1))
                text = str(caught.value)
                assert time.monotonic() - started < 8 and not isinstance(caught.value, DurabilityError)
                assert (
                    f"pid {pid} (application_name 'walked-away', client 127.0.0.1, idle in transaction"
                    in text
                )
                assert "lock timeout" in text and text.endswith("nothing was recorded"), text
        assert store.head()[:3] == head[:3] and len(everything(store)) == 2
    finally:
        store.close()


STOPPING_WRITER = """
import os, signal, sys
from ledger.backend import GENESIS
from ledger.postgres import PostgresStore
from tests.contract import make_records

stops = [1]

def decide(tip, unseen):
    if unseen and stops:  # under the head row's lock, the first time: stop here, as a paused VM would
        stops.pop()
        os.kill(os.getpid(), signal.SIGSTOP)
    return make_records(tip, 1, spot="stopped")

store = PostgresStore(sys.argv[1])
print(store.append(GENESIS, decide).seq, flush=True)
"""


def test_a_writer_stopped_while_it_holds_the_head_row_lets_go_of_it_and_its_append_lands_once(
    pg_server: PgServer,
) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url + "?options=-c%20lock_timeout%3D4s")  # longer than the stopped one may idle
    try:
        head = store.append(GENESIS, appender(1))
        stopped = subprocess.Popen(
            [PYTHON, "-c", STOPPING_WRITER, url + SHORT_LOCKS], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while Path(f"/proc/{stopped.pid}/stat").read_text().split()[2] != "T":  # stopped, the lock held
                assert time.monotonic() < deadline and stopped.poll() is None
                time.sleep(0.05)
            started = time.monotonic()
            head = store.append(head, appender(1, spot="running"))  # the server ended the stopped session
            assert time.monotonic() - started < 5 and head.seq == 2
            os.kill(stopped.pid, signal.SIGCONT)
            out, _ = stopped.communicate(timeout=60)
        finally:
            stopped.kill()
        assert stopped.returncode == 0 and out.strip() == "3"  # its lost session settled: appended once
        assert [e.spot_id for e in store.events()] == ["colosseum", "running", "stopped"]
    finally:
        store.close()


def test_verify_counts_the_same_sound_events_before_damage_over_either_store(
    pg_server: PgServer, tmp_path: Path
) -> None:
    import io

    from ledger.cli import main

    from .pg import tamper

    url = pg_server.app_database()
    for where in (tmp_path / "files", tmp_path / "host"):
        store = url if where.name == "host" else None
        with Ledger(where, store=store, clock=FakeClock()) as ledger:
            ledger.set_many(entry(f"spot-{i}", "era", "pending") for i in range(6))
    log = tmp_path / "files" / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3][:10] + bytes([lines[3][10] ^ 1]) + lines[3][11:]  # record 4, as tamper() does
    log.write_bytes(b"".join(lines))
    tamper(url, 4)
    said = []
    for argv in (["--dir", str(tmp_path / "files")], ["--store", url, "--dir", str(tmp_path / "host")]):
        out = io.StringIO()
        assert main([*argv, "verify"], out=out, err=io.StringIO()) == 1
        said.append(out.getvalue().splitlines()[1])
    assert said == ["3 whole events before the problem"] * 2


def test_a_table_renamed_behind_the_ledgers_back_is_named_as_dropped_or_renamed(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url)
    try:
        store.append(GENESIS, appender(2))
        with psycopg.connect(superuser_url(url), autocommit=True) as conn:
            conn.execute("ALTER TABLE ledger_events RENAME TO ledger_events_old")
        for call in (store.head, lambda: store.append(GENESIS, appender(1)), lambda: list(store.check())):
            with pytest.raises(
                CorruptLogError, match=r'"ledger_events" does not exist\): it was dropped or renamed'
            ):
                call()
    finally:
        store.close()


# -- what append refuses, and wait without a doorbell -------------------------------------------------------


def test_records_that_do_not_continue_the_chain_are_refused_and_nothing_written(
    pg_server: PgServer,
) -> None:
    store = PostgresStore(pg_server.app_database())
    try:
        head = store.append(GENESIS, appender(2))
        wrong_seq = lambda tip, unseen: make_records(tip._replace(seq=tip.seq + 1), 1)  # noqa: E731
        wrong_prev = lambda tip, unseen: make_records(tip._replace(hash="0" * 64), 1)  # noqa: E731

        def wrong_event(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            (record,) = make_records(tip, 1)
            return [record._replace(event=msgspec.structs.replace(record.event, prompt="not its line"))]

        for decide in (wrong_seq, wrong_prev, wrong_event):  # the rule memory.py checks too: one function
            with pytest.raises(InvalidEntryError, match="cannot append record"):
                store.append(head, decide)
        assert store.head()[:3] == head[:3] and len(everything(store)) == 2
    finally:
        store.close()


# -- the one round trip and its fallback to the lock -----------------------------------------------------


def _lock_waiters(url: str) -> int:
    with psycopg.connect(superuser_url(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return int(row[0]) if row else 0


def test_a_handle_with_a_stale_head_writes_nothing_on_it_and_appends_after_what_it_missed(
    pg_server: PgServer,
) -> None:
    url = pg_server.app_database()
    store, other = PostgresStore(url), PostgresStore(url)
    try:
        mine = store.append(GENESIS, appender(1))
        theirs = other.append(mine, appender(2, spot="acropolis"))  # its head was the tip: one round trip
        seen: list[tuple[Head, list[Record]]] = []
        head = store.append(mine, appender(2, seen=seen))
        assert (
            [(tip[:3], [r.seq for r in unseen]) for tip, unseen in seen]
            == [
                (mine[:3], []),  # tried on its own head: the head had moved, nothing written
                (theirs[:3], [2, 3]),  # then under the lock, shown what it missed
            ]
        )
        audit = store.check()
        events = [e for batch in audit for e in batch.events]  # every crc, seq and prev re-verified
        assert [(e.seq, e.spot_id) for e in events] == [
            (1, "colosseum"), (2, "acropolis"), (3, "acropolis"), (4, "colosseum"), (5, "colosseum")
        ]  # fmt: skip
        assert audit.end[:3] == head[:3] == store.head()[:3] == other.head()[:3]
        assert len(set(_request_ids(url))) == 3
    finally:
        store.close()
        other.close()


def test_a_one_round_trip_append_waiting_on_a_writer_that_holds_the_lock_rechecks_the_head_it_committed(
    pg_server: PgServer,
) -> None:
    """READ COMMITTED: the head row's UPDATE waits for the writer holding it, then checks its WHERE against
    the row that writer committed: the head moved, so nothing is written and the append takes the lock."""
    url = pg_server.app_database()
    store, holder = PostgresStore(url), PostgresStore(url)
    in_lock, release = threading.Event(), threading.Event()
    try:
        tip = store.append(GENESIS, appender(1))  # holder's head (GENESIS) is stale now: it takes the lock

        def hold(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            if unseen:  # under the lock
                in_lock.set()
                assert release.wait(30)
            return make_records(tip, 2, spot="acropolis")

        held = threading.Thread(target=lambda: holder.append(GENESIS, hold))
        held.start()
        assert in_lock.wait(30)
        seen: list[tuple[Head, list[Record]]] = []
        done: list[Head] = []
        waiting = threading.Thread(target=lambda: done.append(store.append(tip, appender(1, seen=seen))))
        waiting.start()
        deadline = time.monotonic() + 30
        while _lock_waiters(url) < 1:  # its UPDATE of the head row waits on the holder's lock
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(seen) == 1 and seen[0][0][:3] == tip[:3]  # planned on its own head, sent, waiting
        release.set()
        held.join(30)
        waiting.join(30)
        assert not held.is_alive() and not waiting.is_alive()
        assert [r.seq for r in seen[1][1]] == [2, 3]  # then shown the holder's records, under the lock
        events = [e for batch in store.check() for e in batch.events]
        assert [e.spot_id for e in events] == ["colosseum", "acropolis", "acropolis", "colosseum"]
        assert len(seen) == 2 and done[0][:3] == store.head()[:3]
    finally:
        release.set()
        store.close()
        holder.close()


def test_a_handle_that_found_its_head_moved_takes_the_lock_at_once_until_it_sees_nothing_unseen(
    pg_server: PgServer, proxy: CuttingProxy
) -> None:
    url = pg_server.app_database()
    store, other = PostgresStore(proxy.url(url)), PostgresStore(url)
    try:
        mine = store.append(GENESIS, appender(1))
        theirs = other.append(mine, appender(1, spot="acropolis"))
        seen: list[tuple[Head, list[Record]]] = []
        mine = store.append(mine, appender(1, seen=seen))
        assert [len(unseen) for _, unseen in seen] == [0, 1]  # tried its head in vain, then the lock
        theirs = other.append(theirs, appender(1, spot="acropolis"))
        seen.clear()
        mine = store.append(mine, appender(1, seen=seen))
        assert [len(unseen) for _, unseen in seen] == [1]  # straight to the lock: no try in vain
        proxy.arm("before", b"FOR UPDATE")
        seen.clear()
        mine = store.append(mine, appender(1, seen=seen))  # its head is the tip, but it takes the lock
        assert proxy.cuts == 1 and [len(unseen) for _, unseen in seen] == [0]  # cut there, then planned
        proxy.arm("before", b"FOR UPDATE")
        seen.clear()
        mine = store.append(mine, appender(1, seen=seen))  # nothing unseen last time: one round trip again
        assert proxy.cuts == 1 and [len(unseen) for _, unseen in seen] == [0]
        assert [r.seq for r in everything(other)] == list(range(1, 8)) and list(other.check())
        assert mine[:3] == other.head()[:3]
    finally:
        store.close()
        other.close()


def test_a_decide_that_raises_on_a_stale_head_runs_again_on_what_it_missed(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    store, other = PostgresStore(url), PostgresStore(url)
    try:
        mine = store.append(GENESIS, appender(1))
        other.append(mine, appender(1, spot="acropolis"))

        def needs_acropolis(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            if not any(r.event.spot_id == "acropolis" for r in unseen):
                raise KeyError("no acropolis")  # true only on the stale head
            return make_records(tip, 1)

        assert store.append(mine, needs_acropolis).seq == 3
        with pytest.raises(KeyError, match="no acropolis"):  # raised on the tip (under the lock): the answer
            store.append(store.head(), needs_acropolis)
        assert store.head().seq == 3 and len(everything(store)) == 3
    finally:
        store.close()
        other.close()


def test_a_decide_that_returns_nothing_on_the_tip_takes_no_lock(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url)
    try:
        tip = store.append(GENESIS, appender(2))
        with psycopg.connect(url) as locker:
            locker.execute("SELECT seq FROM ledger_head FOR UPDATE")  # a writer holding the lock
            answers: list[Head] = []
            empty = threading.Thread(target=lambda: answers.append(store.append(tip, lambda t, u: [])))
            empty.start()
            empty.join(10)
            locked = empty.is_alive()
            locker.rollback()
            empty.join(30)
        assert not locked and answers[0][:3] == tip[:3]
    finally:
        store.close()


def test_wait_sees_a_record_that_came_without_a_notification_by_its_poll(pg_server: PgServer) -> None:
    url = pg_server.app_database()
    store = PostgresStore(url, poll=0.2)
    try:
        assert store.wait(0, timeout=0.3) is False  # listening now
        (record,) = make_records(GENESIS, 1)
        with psycopg.connect(superuser_url(url), autocommit=True) as conn, conn.transaction():
            conn.execute(  # as an append would, but without the NOTIFY
                "INSERT INTO ledger_events (seq, line, request_id) VALUES (1, %s, %s)",
                (record.line, uuid.uuid4()),
            )
            conn.execute("UPDATE ledger_head SET seq = 1, hash = %s, ts = %s", (line_hash(record.line), TS))
        started = time.monotonic()
        assert store.wait(0, timeout=10) is True
        assert time.monotonic() - started < 5 and [r.line for r in everything(store)] == [record.line]
    finally:
        store.close()


def test_a_connection_ends_a_silently_dead_network_path_within_about_a_minute(pg_url: str) -> None:
    """The system's defaults would keep a half-open connection (a network path that died without a word)
    waiting for hours: keepalives after 30 s idle, 3 probes 10 s apart, and sent data unacknowledged for
    60 s end it. The socket itself carries them; a URL's own values win."""
    import socket

    init(pg_url)
    store = PostgresStore(pg_url)
    store.head()
    conn = store._connection()
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
    finally:
        sock.close()
        store.close()
    own = PostgresStore(pg_url + "?keepalives_idle=7&connect_timeout=3")
    own.head()
    assert own._connection().info.get_parameters()["keepalives_idle"] == "7"
    assert own._connection().info.get_parameters()["connect_timeout"] == "3"
    own.close()
