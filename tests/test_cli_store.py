"""The command line's stores: ``--store`` and ``$VIDEO_LEDGER_STORE``, ``init``, ``copy``, and their one-line
errors, against real directories and the real PostgreSQL server (``tests/pg.py``)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.stores import STORE_ENV, describe_store, open_store, store_name

from .conftest import PYTHON, ROOT, FakeClock, entry, files_state
from .pg import PgServer, free_port, require_psycopg

require_psycopg()

import psycopg  # noqa: E402

from ledger.postgres import SCHEMA_VERSION  # noqa: E402

HEAD = r"\d+:[0-9a-f]{64}"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("video-ledger: error: "), err
    assert "Traceback" not in err
    return err


def small_ledger(directory: Path, n: int = 12) -> bytes:
    with Ledger(directory, clock=FakeClock()) as ledger:
        ledger.set_many(entry(f"spot-{i}", "era", "pending") for i in range(n))
    return (directory / "events.jsonl").read_bytes()


# -- --help ---------------------------------------------------------------------------------------------


def test_the_help_names_the_store_option_its_variable_init_and_copy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "--store STORE" in out and STORE_ENV in out
    assert "init" in out and "copy" in out
    code, out, _ = cli(capsys, "init", "--help")
    assert code == 0 and "--app-role ROLE" in out and "video-ledger --store postgresql://" in out
    code, out, _ = cli(capsys, "copy", "--help")
    assert code == 0 and "--from SRC" in out and "--to DST" in out and "video-ledger copy --from" in out


# -- init -----------------------------------------------------------------------------------------------


def test_init_creates_the_schema_grants_the_app_role_and_runs_again_safely(
    capsys: pytest.CaptureFixture[str], pg_server: PgServer, pg_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'copy_app'").fetchone():
            conn.execute("CREATE ROLE copy_app LOGIN")
    code, out, err = cli(capsys, "--store", pg_url, "init", "--app-role", "copy_app")
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
    code, out, _ = cli(capsys, "copy", "--from", str(tmp_path / "src"), "--to", app_url)
    assert code == 0 and out.startswith("copied 4 records"), "the app role holds what a copy into it needs"
    code, out, _ = cli(capsys, "init", "--store", pg_url)  # again, the option after the command
    assert code == 0 and out.startswith(f"ledger schema version {SCHEMA_VERSION} in ")


def test_init_takes_the_store_from_the_environment(
    capsys: pytest.CaptureFixture[str], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, pg_url)
    code, out, _ = cli(capsys, "init")
    assert code == 0 and str(store_name(pg_url)) in out


def test_init_on_a_directory_creates_the_ledger_and_says_it_has_no_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli(capsys, "--dir", str(tmp_path / "new"), "init")
    assert (code, err) == (0, "")
    said = (
        f"ledger directory {tmp_path / 'new'} ready: events.jsonl holds 0 events (a file store has no schema)"
    )
    assert out == said + "\n"
    assert (tmp_path / "new" / "events.jsonl").read_bytes() == b""
    small_ledger(tmp_path / "new", 3)
    before = files_state(tmp_path / "new")
    code, out, _ = cli(capsys, "--store", str(tmp_path / "new"), "init")  # a directory store: the same
    assert code == 0 and "events.jsonl holds 3 events" in out
    assert files_state(tmp_path / "new") == before
    code, _, err = cli(capsys, "--dir", str(tmp_path / "new"), "init", "--app-role", "x")
    assert code == 2 and "--app-role is for a PostgreSQL store" in one_line_error(err)


# -- --store on the other commands ----------------------------------------------------------------------


def test_a_directory_store_is_the_ledger_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small_ledger(tmp_path / "a", 2)
    code, out, _ = cli(capsys, "--store", str(tmp_path / "a"), "list", "--json")
    assert code == 0 and '"spot-1"' in out
    code, _, err = cli(capsys, "--store", str(tmp_path / "a"), "--dir", str(tmp_path / "b"), "list")
    assert code == 2 and "give one of them" in one_line_error(err)


def test_a_directory_store_spelled_another_way_is_the_same_ledger_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$VIDEO_LEDGER_STORE (or --store) and --dir naming one directory differently (``..``, a symbolic
    link, relative and absolute) is one ledger, not "two directories, give one of them" (exit 2)."""
    small_ledger(tmp_path / "a", 2)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    for store, directory in (
        (str(tmp_path / "sub" / ".." / "a"), "a"),
        (str(tmp_path / "link"), str(tmp_path / "a")),
        ("a", str(tmp_path / "a")),
    ):
        monkeypatch.setenv(STORE_ENV, store)
        code, out, err = cli(capsys, "--dir", directory, "list", "--json")
        assert code == 0 and '"spot-1"' in out, err
        with Ledger(directory, readonly=True) as ledger:  # the API takes the environment alike
            assert ledger.head().seq == 2
        monkeypatch.delenv(STORE_ENV)
        code, out, err = cli(capsys, "--store", store, "--dir", directory, "list", "--json")
        assert code == 0 and '"spot-1"' in out, err
        with Ledger(directory, store=store, readonly=True) as ledger:
            assert ledger.head().seq == 2
    code, _, err = cli(capsys, "--store", "a", "--dir", "sub", "list")
    assert code == 2 and "give one of them" in one_line_error(err)


def test_commands_that_open_no_ledger_ignore_the_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, "postgresql://app:s3cret@db-host/ledger")
    assert cli(capsys, "schema", "event")[0] == 0


# -- copy -----------------------------------------------------------------------------------------------


def test_copy_prints_one_summary_line_and_resumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    source = small_ledger(tmp_path / "src")
    assert cli(capsys, "--store", pg_url, "init")[0] == 0
    code, out, err = cli(capsys, "copy", "--from", str(tmp_path / "src"), "--to", pg_url)
    assert (code, err) == (0, "")
    assert re.fullmatch(
        rf"copied 12 records from {re.escape(str(tmp_path / 'src' / 'events.jsonl'))} to "
        rf"{re.escape(str(store_name(pg_url)))}; head {HEAD}\n",
        out,
    )
    code, out, _ = cli(capsys, "copy", "--from", pg_url, "--to", str(tmp_path / "back"))
    assert code == 0 and (tmp_path / "back" / "events.jsonl").read_bytes() == source
    code, out, _ = cli(capsys, "copy", "--from", pg_url, "--to", str(tmp_path / "back"))
    assert code == 0 and "copied 0 records" in out and "resumed after the 12 already there" in out
    head = out.rsplit("head ", 1)[1].strip()
    code, out, _ = cli(capsys, "--dir", str(tmp_path / "back"), "verify", "--expect-head", head)
    assert code == 0, out


def test_copy_refusals_are_one_line_exit_1_and_change_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small_ledger(tmp_path / "src")
    with Ledger(tmp_path / "other", clock=FakeClock()) as other:
        other.set_video_metadata(entry("elsewhere", "era", "pending"))
    before = files_state(tmp_path / "other")
    code, out, err = cli(capsys, "copy", "--from", str(tmp_path / "src"), "--to", str(tmp_path / "other"))
    assert (code, out) == (1, "") and "differs from the source's" in one_line_error(err)
    assert files_state(tmp_path / "other") == before
    code, _, err = cli(capsys, "copy", "--from", str(tmp_path / "missing"), "--to", str(tmp_path / "x"))
    assert code == 1 and "no ledger at" in one_line_error(err)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://app:s3cret@db-host:notaport/ledger", "port 'notaport' is not 1..65535"),
        ("postgresql://app:s3cret@db-host/ledger?nosuch=1", 'invalid URI query parameter: "nosuch"'),
        ("postgresql://app:s3cret@[::1/ledger", "IPv6 host address"),
        ("mysql://app:s3cret@db-host/ledger", "unknown store URL scheme 'mysql'"),
    ],
)
def test_a_bad_url_is_one_line_exit_2_without_its_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, message: str
) -> None:
    small_ledger(tmp_path / "src", 1)
    for argv in (["--store", url, "init"], ["copy", "--from", str(tmp_path / "src"), "--to", url]):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (2, "")
        assert message in one_line_error(err) and "s3cret" not in err


def test_an_unreachable_server_is_one_line_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/ledger"
    for argv in (["--store", url, "init"], ["copy", "--from", url, "--to", str(tmp_path / "x")]):
        code, _, err = cli(capsys, *argv)
        assert code == 1 and "cannot connect to postgresql:127.0.0.1:" in one_line_error(err)
        assert "s3cret" not in err
    assert not (tmp_path / "x").exists()


def test_a_database_without_the_schema_names_init(capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    code, _, err = cli(capsys, "copy", "--from", pg_url, "--to", "unused")
    assert code == 1 and "create its schema first (video-ledger --store URL init" in one_line_error(err)


def test_describe_store_hides_passwords() -> None:
    assert describe_store("postgresql://u:pw@h:5432/db?password=x&sslmode=require") == (
        "postgresql://u:***@h:5432/db?password=***&sslmode=require"
    )
    assert describe_store("postgres://u@h/db") == "postgres://u@h/db"
    assert describe_store(Path("data")) == "data"


# -- real processes -------------------------------------------------------------------------------------


def test_without_psycopg_a_url_names_the_extra_and_directories_still_copy(tmp_path: Path) -> None:
    """psycopg made unimportable in a real process, as where the postgres extra is not installed."""
    small_ledger(tmp_path / "src", 3)
    code = (
        "import sys; sys.modules['psycopg'] = None; from ledger.cli import main; sys.exit(main(sys.argv[1:]))"
    )

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    for argv in (
        ["--store", "postgresql://h/db", "init"],
        ["copy", "--from", "postgresql://h/db", "--to", "x"],
    ):
        result = run(*argv)
        assert result.returncode == 1
        assert result.stderr == (
            "video-ledger: error: the PostgreSQL store needs: pip install 'video-ledger[postgres]'\n"
        )
    result = run("copy", "--from", str(tmp_path / "src"), "--to", str(tmp_path / "dst"))
    assert result.returncode == 0 and result.stdout.startswith("copied 3 records"), result.stderr


def on_a_terminal(command: list[str]) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run ``command`` with its standard error on a terminal (a pty): the result, and what the terminal
    showed."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=follower, timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    return result, shown


def test_copy_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    small_ledger(tmp_path / "src", 5)
    command = [PYTHON, "-m", "ledger", "copy", "--from", str(tmp_path / "src")]
    piped = subprocess.run(
        [*command, "--to", str(tmp_path / "a")], capture_output=True, text=True, timeout=60
    )
    assert (piped.returncode, piped.stderr) == (0, "")
    result, shown = on_a_terminal([*command, "--to", str(tmp_path / "b")])
    assert result.returncode == 0 and result.stdout.startswith(b"copied 5 records")
    assert b"\rcopying: 0/5 records" in shown and b"\rcopying: 5/5 records" in shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://app:s3cret%zz@db-host/ledger", "invalid percent-encoded token"),
        ("postgresql://app@db-host/ledger?password=s3cret%zz", "invalid percent-encoded token"),
        ("postgresql://app:s3cret%00@db-host/ledger", "forbidden value %00"),
        ("postgresql://app:s3cret%FF@db-host/ledger", "not UTF-8"),
        ("postgresql://app:123/s3cret@db-host/ledger", "write '@' in them as %40 and '/' as %2F"),
        ("postgresql://app:s3@cret@db-host/ledger", "write '@' in them as %40 and '/' as %2F"),
    ],
)
def test_a_url_libpq_cannot_read_as_written_is_exit_2_without_any_of_its_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, message: str
) -> None:
    """libpq quotes the value it could not decode (the password itself), and reads an unencoded ``@`` or
    ``/`` in a password as the end of the user part (the password then showed up as a host or a database
    name in "cannot connect to ..."), and a byte that is not UTF-8 was a traceback."""
    small_ledger(tmp_path / "src", 1)
    for argv in (["--store", url, "init"], ["copy", "--from", str(tmp_path / "src"), "--to", url]):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (2, "")
        assert message in one_line_error(err)
        assert "s3" not in err and "cret" not in err, err


@pytest.mark.parametrize("role", ["no_such_role", "", 'x"; DROP TABLE ledger_events; --'])
def test_init_with_an_app_role_that_does_not_exist_is_exit_2_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], pg_url: str, role: str
) -> None:
    """A role name is bad input, not a runtime problem (it was exit 1, with PostgreSQL's parser error for
    an empty one); it is quoted as an identifier, so SQL in it is only a strange name."""
    from ledger.postgres import schema_version

    code, out, err = cli(capsys, "--store", pg_url, "init", "--app-role", role)
    assert (code, out) == (2, "")
    assert "create it first" in one_line_error(err) or "empty" in err, err
    assert schema_version(pg_url) == 0, "the schema's creation was rolled back with the grant"


def test_a_copy_that_fails_before_any_progress_is_one_line_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, the progress line's closing newline was written even when no progress was shown: a
    damaged source gave an empty line, then the error."""
    small_ledger(tmp_path / "src", 3)
    log = tmp_path / "src" / "events.jsonl"
    data = bytearray(log.read_bytes())
    data[30] ^= 1  # line 1 damaged
    log.write_bytes(bytes(data))
    result, shown = on_a_terminal(
        [PYTHON, "-m", "ledger", "copy", "--from", str(tmp_path / "src"), "--to", str(tmp_path / "dst")]
    )
    assert result.returncode == 1
    assert shown.startswith(b"video-ledger: error: ") and shown.count(b"\n") == 1, shown
    assert not (tmp_path / "dst").exists()


def test_init_help_names_every_grant_of_the_app_role(capsys: pytest.CaptureFixture[str]) -> None:
    """The help said "SELECT, INSERT on the events and no more"; the role is also granted SELECT, UPDATE on
    the head row (its lock) and SELECT on the schema version, as ledger.postgres grants it."""
    from ledger.postgres import _GRANTS

    code, out, _ = cli(capsys, "init", "--help")
    text = " ".join(out.split())
    assert code == 0
    for grant in _GRANTS:  # "GRANT SELECT, UPDATE ON ledger_head TO {role}"
        rights, table = grant.removeprefix("GRANT ").removesuffix(" TO {role}").split(" ON ")
        assert f"{rights} on {table}" in text, grant


def test_describe_store_hides_the_client_keys_passphrase_too() -> None:
    """``sslpassword=`` (the passphrase of the client's TLS key) is as secret as ``password=``; it was
    shown as written."""
    assert describe_store("postgresql://u@h/db?sslmode=verify-full&sslpassword=k3y&sslkey=/k") == (
        "postgresql://u@h/db?sslmode=verify-full&sslpassword=***&sslkey=/k"
    )
