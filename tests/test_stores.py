"""Which store a ledger uses (``ledger.stores``): one rule for resolving it, naming it without its
secrets, and the command line's ``--store`` and ``$VIDEO_LEDGER_STORE`` with their one-line errors, on real
directories and the real PostgreSQL server (``tests/pg.py``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ledger import InvalidEntryError, Ledger
from ledger.stores import STORE_ENV, StoreChoice, describe_store, resolve_store

from .conftest import PYTHON, ROOT, cli_in_process, one_line_error, small_ledger
from .pg import free_port, require_psycopg

require_psycopg()


URL = "postgresql://app@db.example/ledger"


def test_without_a_store_the_directory_holds_its_own_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert resolve_store("d") == StoreChoice("d", None)
    assert resolve_store(None) == StoreChoice(None, None)


def test_a_url_is_the_store_and_the_directory_stays_this_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert resolve_store("host", URL) == StoreChoice("host", URL)
    monkeypatch.setenv(STORE_ENV, URL)
    assert resolve_store("host") == StoreChoice("host", URL)


def test_a_directory_store_is_the_ledger_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, str(tmp_path))
    assert resolve_store(None) == StoreChoice(str(tmp_path), None)
    assert resolve_store(tmp_path / "x" / "..") == StoreChoice(str(tmp_path), None)  # one directory


def test_a_different_directory_named_by_the_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "a"))
    with pytest.raises(InvalidEntryError, match=rf"^\${STORE_ENV} names the directory .*a and the ledger"):
        resolve_store(tmp_path / "b")
    monkeypatch.delenv(STORE_ENV)
    with pytest.raises(InvalidEntryError, match=r"^--store names the directory"):
        resolve_store(tmp_path / "b", tmp_path / "a", named_by="--store")
    # a program's explicit store= apart from the directory is kept (the directory holds only the snapshot)
    assert resolve_store(tmp_path / "b", tmp_path / "a") == StoreChoice(tmp_path / "b", tmp_path / "a")


def test_a_spec_that_names_no_store_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    with pytest.raises(InvalidEntryError, match="unknown store URL scheme 'mysql'"):
        resolve_store("d", "mysql://x/y")


def test_a_directory_store_on_the_command_line_is_the_ledger_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small_ledger(tmp_path / "a", 2)
    code, out, _ = cli_in_process(capsys, "--store", str(tmp_path / "a"), "list", "--json")
    assert code == 0 and '"spot-1"' in out
    code, _, err = cli_in_process(
        capsys, "--store", str(tmp_path / "a"), "--dir", str(tmp_path / "b"), "list"
    )
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
        code, out, err = cli_in_process(capsys, "--dir", directory, "list", "--json")
        assert code == 0 and '"spot-1"' in out, err
        with Ledger(directory, readonly=True) as ledger:  # the API takes the environment alike
            assert ledger.head().seq == 2
        monkeypatch.delenv(STORE_ENV)
        code, out, err = cli_in_process(capsys, "--store", store, "--dir", directory, "list", "--json")
        assert code == 0 and '"spot-1"' in out, err
        with Ledger(directory, store=store, readonly=True) as ledger:
            assert ledger.head().seq == 2
    code, _, err = cli_in_process(capsys, "--store", "a", "--dir", "sub", "list")
    assert code == 2 and "give one of them" in one_line_error(err)


def test_commands_that_open_no_ledger_ignore_the_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, "postgresql://app:s3cret@db-host/ledger")
    assert cli_in_process(capsys, "schema", "event")[0] == 0


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
        code, out, err = cli_in_process(capsys, *argv)
        assert (code, out) == (2, "")
        assert message in one_line_error(err) and "s3cret" not in err


def test_an_unreachable_server_is_one_line_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/ledger"
    for argv in (["--store", url, "init"], ["copy", "--from", url, "--to", str(tmp_path / "x")]):
        code, _, err = cli_in_process(capsys, *argv)
        assert code == 1 and "cannot connect to postgresql:127.0.0.1:" in one_line_error(err)
        assert "s3cret" not in err
    assert not (tmp_path / "x").exists()


def test_a_database_without_the_schema_names_init(capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    code, _, err = cli_in_process(capsys, "copy", "--from", pg_url, "--to", "unused")
    assert code == 1 and "create its schema first (video-ledger --store URL init" in one_line_error(err)


def test_describe_store_hides_passwords() -> None:
    assert describe_store("postgresql://u:pw@h:5432/db?password=x&sslmode=require") == (
        "postgresql://u:***@h:5432/db?password=***&sslmode=require"
    )
    assert describe_store("postgres://u@h/db") == "postgres://u@h/db"
    assert describe_store(Path("data")) == "data"


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
        code, out, err = cli_in_process(capsys, *argv)
        assert (code, out) == (2, "")
        assert message in one_line_error(err)
        assert "s3" not in err and "cret" not in err, err


def test_describe_store_hides_the_client_keys_passphrase_too() -> None:
    """``sslpassword=`` (the passphrase of the client's TLS key) is as secret as ``password=``; it was
    shown as written."""
    assert describe_store("postgresql://u@h/db?sslmode=verify-full&sslpassword=k3y&sslkey=/k") == (
        "postgresql://u@h/db?sslmode=verify-full&sslpassword=***&sslkey=/k"
    )
