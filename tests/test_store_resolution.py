"""One rule for which directory and which store a ledger uses (``ledger.stores.resolve_store``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import InvalidEntryError
from ledger.stores import STORE_ENV, StoreChoice, resolve_store

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
