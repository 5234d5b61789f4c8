"""One spelling of a store in every message (``ledger.stores.store_name``): a PostgreSQL store as
``postgresql:HOST:PORT/DATABASE`` (never its user, a password or ``postgresql://``), the file store by its
log file. Several messages of each kind, from real commands, name the store the same way."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.stores import RETRY_ENV, store_name

from .conftest import entry, recent_clock
from .pg import tamper


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def _small(directory: Path) -> None:
    with Ledger(directory, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one", "pending"))
        ledger.set_video_metadata(entry("a", "one", "generating"))
        ledger.set_video_metadata(entry("b", "two", "pending"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_message_spells_a_postgresql_store_one_way(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = str(store_name(pg_url))
    assert name.startswith("postgresql:127.0.0.1:") and "@" not in name
    said = {
        "no schema yet": _cli("--store", pg_url, "--dir", str(tmp_path / "a"), "status"),
        "init": _cli("--store", pg_url, "init"),
    }
    _small(tmp_path / "src")
    said["copy to it"] = _cli("copy", "--from", str(tmp_path / "src"), "--to", pg_url)
    said["copy from it"] = _cli("copy", "--from", pg_url, "--to", str(tmp_path / "back"))
    tamper(pg_url, 2)
    said["damage"] = _cli("--store", pg_url, "--dir", str(tmp_path / "c"), "history")
    said["damage, verify"] = _cli("--store", pg_url, "--dir", str(tmp_path / "c"), "verify")
    for what, (_, text) in said.items():
        assert name in text, (what, text)
        assert "postgresql://" not in text and "postgres@" not in text, (what, text)
    assert said["damage"][0] == 1 and f"{name}: line 2:" in said["damage"][1]
    monkeypatch.setenv(RETRY_ENV, "0")
    unreachable = pg_url.rsplit(":", 1)[0] + f":{_free_port()}/nowhere"
    code, text = _cli("--store", unreachable, "--dir", str(tmp_path / "d"), "status")
    assert code == 1 and f"cannot connect to {store_name(unreachable)}" in text
    assert "postgresql://" not in text


def test_every_message_names_the_file_store_by_its_log(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    _small(source)
    log = str(source / "events.jsonl")
    assert str(store_name(source)) == log
    said = {
        "copy": _cli("copy", "--from", str(source), "--to", str(target)),
    }
    assert f"from {log} to {target / 'events.jsonl'}" in said["copy"][1]
    data = bytearray((source / "events.jsonl").read_bytes())
    data[data.index(b"\n") + 20] ^= 1
    (source / "events.jsonl").write_bytes(bytes(data))
    said["damage"] = _cli("--dir", str(source), "history")
    said["damage, verify"] = _cli("--dir", str(source), "verify")
    for what, (_, text) in said.items():
        assert log in text, (what, text)
    assert f"{log}: line 2:" in said["damage"][1]
