"""``video-ledger init``: a PostgreSQL schema and its app role, or a ledger directory, against the real
server (``tests/pg.py``)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ledger.postgres import SCHEMA_VERSION
from ledger.stores import STORE_ENV, open_store, store_name

from .conftest import cli_in_process, files_state, one_line_error, small_ledger
from .pg import PgServer, require_psycopg

require_psycopg()


def test_init_creates_the_schema_grants_the_app_role_and_runs_again_safely(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'copy_app'").fetchone():
            conn.execute("CREATE ROLE copy_app LOGIN")
    code, out, err = cli_in_process(capsys, "--store", pg_url, "init", "--app-role", "copy_app")
    assert (code, err) == (0, "")
    assert (
        out
        == f"ledger schema version {SCHEMA_VERSION} in {store_name(pg_url)}; role copy_app granted what the "
        "app needs\n"
    )
    app_url = pg_server.database_url(pg_url.rsplit("/", 1)[1], "copy_app")
    store = open_store(app_url)  # the app role reads the empty ledger
    try:
        assert store.head().seq == 0
    finally:
        store.close()
    small_ledger(tmp_path / "src", 4)
    code, out, _ = cli_in_process(capsys, "copy", "--from", str(tmp_path / "src"), "--to", app_url)
    assert code == 0 and out.startswith("copied 4 records"), "the app role holds what a copy into it needs"
    code, out, _ = cli_in_process(capsys, "init", "--store", pg_url)  # again, the option after the command
    assert code == 0 and out.startswith(f"ledger schema version {SCHEMA_VERSION} in ")


def test_init_takes_the_store_from_the_environment(
    capsys: pytest.CaptureFixture[str], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, pg_url)
    code, out, _ = cli_in_process(capsys, "init")
    assert code == 0 and str(store_name(pg_url)) in out


def test_init_on_a_directory_creates_the_ledger_and_says_it_has_no_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli_in_process(capsys, "--dir", str(tmp_path / "new"), "init")
    assert (code, err) == (0, "")
    said = (
        f"ledger directory {tmp_path / 'new'} ready: events.jsonl holds 0 events (a file store has no schema)"
    )
    assert out == said + "\n"
    assert (tmp_path / "new" / "events.jsonl").read_bytes() == b""
    small_ledger(tmp_path / "new", 3)
    before = files_state(tmp_path / "new")
    code, out, _ = cli_in_process(
        capsys, "--store", str(tmp_path / "new"), "init"
    )  # a directory store: the same
    assert code == 0 and "events.jsonl holds 3 events" in out
    assert files_state(tmp_path / "new") == before
    code, _, err = cli_in_process(capsys, "--dir", str(tmp_path / "new"), "init", "--app-role", "x")
    assert code == 2 and "--app-role is for a PostgreSQL store" in one_line_error(err)


@pytest.mark.parametrize("role", ["no_such_role", "", 'x"; DROP TABLE ledger_events; --'])
def test_init_with_an_app_role_that_does_not_exist_is_exit_2_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], pg_url: str, role: str
) -> None:
    """A role name is bad input, not a runtime problem (it was exit 1, with PostgreSQL's parser error for
    an empty one); it is quoted as an identifier, so SQL in it is only a strange name."""
    from ledger.postgres import schema_version

    code, out, err = cli_in_process(capsys, "--store", pg_url, "init", "--app-role", role)
    assert (code, out) == (2, "")
    assert "create it first" in one_line_error(err) or "empty" in err, err
    assert schema_version(pg_url) == 0, "the schema's creation was rolled back with the grant"


def test_init_help_names_every_grant_of_the_app_role(capsys: pytest.CaptureFixture[str]) -> None:
    """The help said "SELECT, INSERT on the events and no more"; the role is also granted SELECT, UPDATE on
    the head row (its lock) and SELECT on the schema version, as ledger.postgres grants it."""
    from ledger.postgres import _GRANTS

    code, out, _ = cli_in_process(capsys, "init", "--help")
    text = " ".join(out.split())
    assert code == 0
    for grant in _GRANTS:  # "GRANT SELECT, UPDATE ON ledger_head TO {role}"
        rights, table = grant.removeprefix("GRANT ").removesuffix(" TO {role}").split(" ON ")
        assert f"{rights} on {table}" in text, grant
