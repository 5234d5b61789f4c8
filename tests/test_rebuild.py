"""A rebuild's pass over the log: the Merkle tree beside the snapshot built in the same pass."""

from __future__ import annotations

from pathlib import Path

from ledger import Ledger
from ledger.fileops import FileOps
from ledger.layout import TREE_INDEX_NAME, TREE_KEYS_NAME, TREE_NAME
from ledger.tree import TreeFile

from .conftest import FakeClock, entry

TREE_FILES = (TREE_NAME, TREE_KEYS_NAME, TREE_INDEX_NAME)


class Counting(FileOps):
    """The ledger's file operations, counting the bytes read."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    def pread(self, fd: int, count: int, offset: int) -> bytes:
        data = super().pread(fd, count, offset)
        self.read += len(data)
        return data


def a_log(directory: Path, events: int = 600) -> int:
    """A ledger of ``events`` events over 30 entries; the size of its log."""
    with Ledger(directory, clock=FakeClock(), projection="deferred") as ledger:
        for i in range(events):
            ledger.set_video_metadata(entry(f"s{i % 30}", "e", ("generating", "ready")[i // 30 % 2]))
    return (directory / "events.jsonl").stat().st_size


def tree_bytes(directory: Path) -> list[bytes]:
    return [(directory / name).read_bytes() for name in TREE_FILES]


def test_a_rebuild_of_a_log_without_its_tree_reads_the_log_once_and_builds_the_tree_as_follow_does(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "l"
    size = a_log(directory)
    for name in TREE_FILES:
        (directory / name).unlink(missing_ok=True)  # a deferred ledger wrote none; a copied log has none
    ops = Counting()
    with Ledger(directory, clock=FakeClock(), ops=ops) as ledger:
        ops.read = 0
        assert ledger.rebuild().events == 600
        assert size <= ops.read < 1.2 * size  # the log once (a tree of its own would read it again)
        built = tree_bytes(directory)
        # the same files as the tree's own rebuild, which follows the store from its first record
        tree = TreeFile(directory)
        assert tree.rebuild(ledger._projector.store) == 600
        tree.close()
    assert tree_bytes(directory) == built
    assert TreeFile(directory).load() is True  # a whole tree, checked


def test_a_rebuild_leaves_a_current_tree_as_it_is(tmp_path: Path) -> None:
    directory = tmp_path / "l"
    a_log(directory)
    with Ledger(directory, clock=FakeClock()) as ledger:
        ledger.rebuild()
        before = tree_bytes(directory)
        ledger.rebuild()
    assert tree_bytes(directory) == before


def test_a_tree_of_another_log_is_rebuilt_in_the_rebuilds_pass(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    a_log(here, 300)
    a_log(there, 600)
    with Ledger(there, clock=FakeClock()) as ledger:
        ledger.rebuild()
    with Ledger(here, clock=FakeClock()) as ledger:  # the tree files of a longer log, not this one's
        ledger.rebuild()
        mine = tree_bytes(here)
    for name in TREE_FILES:
        (here / name).write_bytes((there / name).read_bytes())
    with Ledger(here, clock=FakeClock()) as ledger:
        assert ledger.rebuild().events == 300
    assert tree_bytes(here) == mine
