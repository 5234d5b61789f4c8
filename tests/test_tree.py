"""The tree files beside the snapshot (ledger/tree.py): kept current as the projector writes, on every
store; their root is the one anyone recomputes from the log's lines; damage, a torn write, a replaced log
or a full disk never leave a wrong tree in use."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger
from ledger.backend import EventStore
from ledger.fileops import FileOps
from ledger.memory import MemoryStore
from ledger.merkle import CompactRange, inclusion_proof, leaf_hash, root, verify_inclusion
from ledger.stores import open_store
from ledger.tree import (
    HEADER_SIZE,
    INDEX_NAME,
    KEEP_LAG,
    KEYS_NAME,
    PAGE_SIZE,
    TREE_NAME,
    UNIT,
    TreeFile,
    key_digest,
    node_slot,
)

from .conftest import FakeClock, entry
from .pg import OnPostgres


def write_some(ledger: Ledger, n: int, *, spots: int = 5) -> None:
    """``n`` events (each a new prompt) over ``spots`` entries, the first of them after the last event."""
    start = ledger.head().seq
    for i in range(n):
        ledger.set_video_metadata(entry(f"spot-{i % spots}", "era", status="pending", prompt=f"p{start + i}"))


def log_lines(directory: Path) -> list[bytes]:
    return (directory / "events.jsonl").read_bytes().split(b"\n")[:-1]


def log_root(directory: Path) -> bytes:
    """The root recomputed from events.jsonl with nothing of the ledger but the two hash rules."""
    return root([leaf_hash(line) for line in log_lines(directory)])


def test_the_post_order_slots() -> None:
    assert [node_slot(0, i) for i in range(4)] == [0, 1, 3, 4]
    assert (node_slot(1, 0), node_slot(1, 1), node_slot(2, 0)) == (2, 5, 6)


def test_the_tree_keeps_up_with_the_appends_and_its_root_is_the_logs(tmp_path: Path) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        for n in range(1, 40):
            write_some(ledger, 1)
            tree = TreeFile(tmp_path)
            assert tree.load() and 0 <= n - tree.size < KEEP_LAG  # kept up in steps, never further behind
            assert tree.root() == root([leaf_hash(x) for x in log_lines(tmp_path)[: tree.size]])
        ledger.set_many([entry(f"bulk-{i}", "era", status="pending") for i in range(300)])
    tree = TreeFile(tmp_path)
    assert tree.load() and tree.size == 339 and tree.root() == log_root(tmp_path)
    assert tree.head.seq == 339
    # every node in the file is the tree's
    leaves = [leaf_hash(line) for line in (tmp_path / "events.jsonl").read_bytes().split(b"\n")[:-1]]
    for index in range(0, 339, 7):
        proof = inclusion_proof(index, 339, tree.node)
        verify_inclusion(index, 339, leaves[index], proof, tree.root())


def test_the_tree_is_kept_on_the_memory_store(tmp_path: Path) -> None:
    store = MemoryStore()
    with Ledger(tmp_path, store=store, clock=FakeClock()) as ledger:
        write_some(ledger, 25)
        lines = [r.line for r in store.records()]
        tree = TreeFile(tmp_path)
        tree.follow(store)
    assert tree.size == 25 and tree.root() == root([leaf_hash(x) for x in lines])


class TestOnPostgres(OnPostgres):
    def test_the_tree_is_kept_on_postgres(self, tmp_path: Path) -> None:
        store = self.create_store()
        with Ledger(tmp_path, store=store, clock=FakeClock()) as ledger:
            write_some(ledger, 25)
            lines = [r.line for r in store.records()]
            tree = TreeFile(tmp_path)
            tree.follow(store)
        assert tree.size == 25 and tree.root() == root([leaf_hash(x) for x in lines])
        other, again = TreeFile(tmp_path), self.reopen(store)
        try:
            assert other.load() and [leaf for leaf, _ in other.records(again, [0, 7, 24])] == [0, 7, 24]
        finally:
            again.close()


def test_an_entrys_records_are_found_through_the_index(tmp_path: Path) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 30, spots=4)
        ledger.set_many([entry(f"bulk-{i}", "era", status="pending") for i in range(50)])
        write_some(ledger, 6, spots=4)
    store = open_store(tmp_path)
    try:
        tree = TreeFile(tmp_path)
        tree.follow(store)
        leaves = tree.leaves_of("spot-1", "era")
        assert leaves == [i for i in range(30) if i % 4 == 1] + [80 + i for i in range(6) if i % 4 == 1]
        records = dict(tree.records(store, leaves))
        assert sorted(records) == leaves
        for leaf, record in records.items():
            assert record.seq == leaf + 1 and record.event.key == ("spot-1", "era")
            assert leaf_hash(record.line) == tree.node(0, leaf)
        assert key_digest("spot-1", "era") != key_digest("spot-1", "era2")
    finally:
        store.close()


def _follow(directory: Path) -> TreeFile:
    store = open_store(directory)
    try:
        tree = TreeFile(directory)
        tree.follow(store)
        return tree
    finally:
        store.close()


@pytest.mark.parametrize(
    "damage",
    [
        "header byte",
        "peak",
        "tree cut short",
        "index cut short",
        "keys cut short",
        "keys gone",
        "tree gone",
        "index gone",
        "garbage",
    ],
)
def test_damaged_tree_files_are_rebuilt_from_the_log(tmp_path: Path, damage: str) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        ledger.set_many([entry(f"bulk-{i}", "era", status="pending") for i in range(2 * UNIT)])
        write_some(ledger, 21)
    size = 2 * UNIT + 21
    _follow(tmp_path)
    tree_path, index_path = tmp_path / TREE_NAME, tmp_path / INDEX_NAME
    data = bytearray(tree_path.read_bytes())
    if damage == "header byte":
        data[20] ^= 0xFF
        tree_path.write_bytes(data)
    elif damage == "peak":
        slot = node_slot(*CompactRange.peak_ids(size)[-1])
        data[HEADER_SIZE + 32 * slot] ^= 0x01
        tree_path.write_bytes(data)
    elif damage == "tree cut short":
        tree_path.write_bytes(data[:-32])
    elif damage == "index cut short":
        index_path.write_bytes(index_path.read_bytes()[:-1])
    elif damage == "keys cut short":
        (tmp_path / KEYS_NAME).write_bytes((tmp_path / KEYS_NAME).read_bytes()[:-8])
    elif damage == "keys gone":
        (tmp_path / KEYS_NAME).unlink()
    elif damage == "tree gone":
        tree_path.unlink()
    elif damage == "index gone":
        index_path.unlink()
    else:
        tree_path.write_bytes(b"not a tree at all" * 100)
    damaged = TreeFile(tmp_path)
    assert damaged.load() is False or damaged.size == 0  # not taken as a tree of that size
    tree = _follow(tmp_path)
    assert tree.size == size and tree.root() == log_root(tmp_path)
    assert tree.leaves_of("spot-3", "era") == [2 * UNIT + i for i in range(21) if i % 5 == 3]
    again = TreeFile(tmp_path)
    assert again.load() and again.root() == log_root(tmp_path)


def test_a_tree_of_another_log_is_rebuilt(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    with Ledger(one, clock=FakeClock()) as a, Ledger(two, clock=FakeClock()) as b:
        write_some(a, 10)
        write_some(b, 12, spots=2)
    (two / TREE_NAME).replace(one / TREE_NAME)
    (two / INDEX_NAME).replace(one / INDEX_NAME)
    (two / KEYS_NAME).replace(one / KEYS_NAME)
    tree = _follow(one)
    assert tree.size == 10 and tree.root() == log_root(one)


def test_a_tree_ahead_of_a_log_cut_short_is_rebuilt(tmp_path: Path) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 10)
    log = tmp_path / "events.jsonl"
    lines = log.read_bytes().split(b"\n")[:-1]
    log.write_bytes(b"\n".join(lines[:6]) + b"\n")
    (tmp_path / "events.jsonl.sync.lock").unlink(missing_ok=True)
    tree = _follow(tmp_path)
    assert tree.size == 6 and tree.root() == log_root(tmp_path)


class FullDisk(FileOps):
    def __init__(self) -> None:
        self.full = True

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().pwrite(fd, data, offset)


def test_a_full_disk_leaves_the_tree_behind_and_the_write_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 5)
        ops = FullDisk()
        ledger._projector.tree = TreeFile(tmp_path, ops)  # the tree's files on a disk that is full
        with caplog.at_level(logging.WARNING, logger="ledger"):
            write_some(ledger, 3)
        assert ledger.head().seq == 8
        assert any("merkle.tree is behind the log" in r.getMessage() for r in caplog.records)
        stuck = TreeFile(tmp_path)
        assert stuck.load() is not False and stuck.size <= 8
        ops.full = False
        write_some(ledger, 1)
        assert ledger.proofs().head() == (9, log_root(tmp_path))  # a proof brings the tree up at once
    tree = TreeFile(tmp_path)
    assert tree.load() and tree.size == 9 and tree.root() == log_root(tmp_path)


def test_follow_reads_only_what_is_new(tmp_path: Path) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 50)

    store: EventStore = open_store(tmp_path)
    try:
        read: list[int] = []
        real = store.read

        def counting_read(after=None):  # type: ignore[no-untyped-def]
            for batch in real(after) if after is not None else real():
                read.extend(e.seq for e in batch.events)
                yield batch

        TreeFile(tmp_path).follow(store)
        store.read = counting_read  # type: ignore[method-assign]
        tree = TreeFile(tmp_path)
        assert tree.follow(store) == 0 and read == list(range(1, 51))  # the tail's keys (50 < UNIT records)
        read.clear()
        assert tree.follow(store) == 0 and read == []  # and nothing more
        with Ledger(tmp_path, clock=FakeClock()) as ledger:
            write_some(ledger, 3)
        added = tree.follow(store)  # the writer's projector may have taken some in already
        # another process's header: the tail's keys read again (fewer than UNIT records), then what is new
        assert 1 <= added <= 3 and set(read) == set(range(1, 54)) and len(read) < UNIT
    finally:
        store.close()


def test_a_damaged_line_in_the_log_is_the_readers_error_once_not_a_loop(tmp_path: Path) -> None:
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        write_some(ledger, 6)
    _follow(tmp_path)
    lines = log_lines(tmp_path)
    lines[2] = lines[2].replace(b'"pending"', b'"pendinG"')  # same length: its crc fails
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / TREE_NAME).write_bytes(b"")  # the tree rebuilt: it reads the damaged line
    with pytest.raises(CorruptLogError) as info:
        _follow(tmp_path)
    assert info.value.line == 3


def _truth(directory: Path) -> dict[tuple[str, str], list[int]]:
    """Each entry's leaves, from events.jsonl read as plain JSON."""
    found: dict[tuple[str, str], list[int]] = {}
    for leaf, line in enumerate(log_lines(directory)):
        event = json.loads(line)
        found.setdefault((event["spotId"], event["eraId"]), []).append(leaf)
    return found


def test_the_entry_index_finds_every_record_of_every_entry(tmp_path: Path) -> None:
    """Single appends (one unit completed at a time) and bulk writes (several at once, the index's
    subtrees merged and rebuilt in one step), read back by the projector's own handle and by a new one
    that reads the tail's keys from the log."""
    rng = random.Random(25)
    spots = [f"s{i}" for i in range(37)]
    with Ledger(tmp_path, clock=FakeClock()) as ledger:
        for step, bulk in enumerate([3, 250, 1, 1, 2, 600, 7, 255, 256, 1500, 40, 1, 1, 900]):
            if bulk < 4:
                for i in range(bulk):
                    ledger.set_video_metadata(
                        entry(rng.choice(spots), "era", status="pending", prompt=f"{step}.{i}")
                    )
            else:
                ledger.set_many(
                    [
                        entry(
                            rng.choice(spots),
                            rng.choice(["era", "e2"]),
                            status="pending",
                            prompt=f"{step}.{i}",
                        )
                        for i in range(bulk)
                    ]
                )
            truth = _truth(tmp_path)
            for tree in (ledger._projector.tree, _follow(tmp_path)):
                if tree is ledger._projector.tree:
                    with ledger._projector.lock.held():
                        tree.follow(ledger._projector.store)
                assert tree.size == sum(map(len, truth.values()))
                for key, leaves in truth.items():
                    assert tree.leaves_of(*key) == leaves, (step, key)
                assert tree.leaves_of("nobody", "era") == []
    assert (tmp_path / KEYS_NAME).stat().st_size >= PAGE_SIZE * (
        sum(map(len, truth.values())) // UNIT
    ) * UNIT // 31
    rebuilt = TreeFile(tmp_path)
    store = open_store(tmp_path)
    try:
        rebuilt.rebuild(store)
    finally:
        store.close()
    for key, leaves in truth.items():
        assert rebuilt.leaves_of(*key) == leaves


class Counting(FileOps):
    """The ledger's file operations, counting the bytes read from each file by name."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.read: dict[str, int] = {}

    def open_regular(self, path: Path, flags: int, mode: int = 0o666) -> int:
        fd = super().open_regular(path, flags, mode)
        self.names[fd] = path.name
        return fd

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        data = super().pread(fd, size, offset)
        name = self.names.get(fd, "?")
        self.read[name] = self.read.get(name, 0) + len(data)
        return data


def test_finding_an_entry_reads_o_log_n_pages_not_a_key_column(tmp_path: Path) -> None:
    """At 60,000 records a lookup reads a few pages of each sorted subtree: a column of 8 bytes a record
    would be 480,000 bytes, the entry index itself about a million."""
    n = 60_000
    with Ledger(tmp_path, clock=FakeClock(), projection="deferred") as ledger:
        for chunk in range(0, n, 5000):
            ledger.set_many(
                [
                    entry(f"e{(chunk + i) % 9973}", "era", status="pending", prompt=f"{chunk}")
                    for i in range(5000)
                ]
            )
        ledger.rebuild()
    ops = Counting()
    store = open_store(tmp_path)
    try:
        tree = TreeFile(tmp_path, ops)
        tree.follow(store)
        units = n // UNIT
        for spot in ("e0", "e4242", "e9972", "absent"):
            ops.read.clear()
            leaves = tree.leaves_of(spot, "era")
            expected = [] if spot == "absent" else list(range(int(spot[1:]), n, 9973))
            assert leaves == expected
            assert set(ops.read) <= {KEYS_NAME}  # neither the log nor the other tree files
            pages = sum(
                (-(-(UNIT << level) // 31)).bit_length() + 2
                for level in range(units.bit_length())
                if units >> level & 1
            )
            assert 0 < ops.read[KEYS_NAME] <= PAGE_SIZE * pages < 8 * n // 10
    finally:
        store.close()
