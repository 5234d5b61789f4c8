"""The event-store contract (``tests/contract.py``) run against each backend, and what only the file backend
promises beside it (it reads only what is fsynced)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ledger.backend import GENESIS, EventStore, Head, Record
from ledger.fileops import FileOps
from ledger.log import EventLog
from ledger.memory import MemoryStore
from ledger.recovery import create

from .contract import EventStoreContract, appender, everything, make_records
from .pg import OnPostgres, tamper


class TestMemoryStore(EventStoreContract):
    reads_check_lines = False

    def create_store(self) -> EventStore:
        return MemoryStore()

    def reopen(self, store: EventStore) -> EventStore:
        assert isinstance(store, MemoryStore)
        return MemoryStore(store.log)

    def damage(self, store: EventStore, seq: int) -> None:
        assert isinstance(store, MemoryStore)
        line = store.log.lines[seq - 1]
        store.log.lines[seq - 1] = line[:10] + bytes([line[10] ^ 1]) + line[11:]


class TestFileStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.count = itertools.count()

    def _open(self, path: Path) -> EventLog:
        path.parent.mkdir(exist_ok=True)
        log = EventLog(path, FileOps())
        with log.locked():
            create(log.file)
        return log

    def create_store(self) -> EventStore:
        return self._open(self.directory / f"store-{next(self.count)}" / "events.jsonl")

    def reopen(self, store: EventStore) -> EventStore:
        assert isinstance(store, EventLog)
        return self._open(store.path)

    def damage(self, store: EventStore, seq: int) -> None:
        assert isinstance(store, EventLog)
        data = bytearray(store.path.read_bytes())
        start = 0
        for _ in range(seq - 1):
            start = data.index(b"\n", start) + 1
        data[start + 10] ^= 1
        store.path.write_bytes(bytes(data))


def test_the_file_store_reads_only_what_is_known_to_be_fsynced(tmp_path: Path) -> None:
    """Lines a leader wrote but did not fsync (it died between the two) are not read, nor counted in the
    head; the next append shows them to its plan and fsyncs them with its own."""
    path = tmp_path / "events.jsonl"
    store = EventLog(path, FileOps())
    with store.locked():
        create(store.file)
    head = store.append(GENESIS, appender(2))
    unsynced = make_records(head, 2, spot="acropolis")
    with path.open("ab") as f:  # as a leader that died before its fsync leaves them
        f.write(b"".join(r.line + b"\n" for r in unsynced))
    assert store.head()[:3] == head[:3]
    assert len(everything(store)) == 2
    seen: list[tuple[Head, list[Record]]] = []
    after = store.append(head, appender(1, seen=seen))
    assert [r.seq for r in seen[0][1]] == [3, 4]
    assert after.seq == 5 and store.head()[:3] == after[:3] and len(everything(store)) == 5
    store.close()


class TestPostgresStore(OnPostgres, EventStoreContract):
    """The contract on a real PostgreSQL server (``tests/pg.py``), the store connected as a role that holds
    only what ``ledger.postgres.init(app_role=...)`` grants."""

    def damage(self, store: EventStore, seq: int) -> None:
        from ledger.postgres import PostgresStore

        assert isinstance(store, PostgresStore)
        tamper(store.url, seq)


def test_the_file_store_reads_newest_first_from_the_fsynced_end(tmp_path: Path) -> None:
    """``newest_first`` starts at the fsynced size on record: lines a leader wrote but did not fsync, and a
    torn tail after them, are not read. Without the record, a forward pass finds where the whole lines end
    (the log fsynced first, as every reader does then) and the torn tail is left out."""
    path = tmp_path / "events.jsonl"
    store = EventLog(path, FileOps())
    with store.locked():
        create(store.file)
    head = store.append(GENESIS, appender(3))
    unsynced = make_records(head, 2, spot="acropolis")
    with path.open("ab") as f:  # as a leader that died before its fsync leaves them, then a torn write
        f.write(b"".join(r.line + b"\n" for r in unsynced) + unsynced[0].line[:40])
    assert [event.seq for _, event in store.newest_first()] == [3, 2, 1]
    store.record.path.unlink()
    fresh = EventLog(path, FileOps())
    assert [(line, event) for line, event in fresh.newest_first()] == [
        (r.line, r.event) for r in [*everything(fresh)][::-1]
    ]
    assert [event.seq for _, event in fresh.newest_first()] == [5, 4, 3, 2, 1]
    fresh.close()
    store.close()


def test_the_file_store_reads_lines_longer_than_a_chunk_backward(tmp_path: Path) -> None:
    """A line that spans several of the backward reader's chunks comes back whole."""
    path = tmp_path / "events.jsonl"
    store = EventLog(path, FileOps())
    with store.locked():
        create(store.file)
    head = store.append(GENESIS, appender(2))
    head = store.append(head, appender(1, spot="x" * 200))
    store.append(head, appender(2))
    lines = [r.line for r in everything(store)]
    assert list(store.file.lines_backward(path.stat().st_size, chunk=7)) == lines[::-1]
    assert [line for line, _ in store.newest_first()] == lines[::-1]
    store.close()
