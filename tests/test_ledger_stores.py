"""A :class:`~ledger.Ledger` over any event store: the task card's functions, history, verify
and rebuild on the memory and the PostgreSQL stores, the directory holding only the snapshot, its checkpoint
and the projection lock, and the snapshot byte-identical to a file-store ledger's given the same writes at
the same clock. Each store's case subclasses :class:`LedgerOverStore` (as ``tests/contract.py`` does for
the stores themselves)."""

from __future__ import annotations

import abc
import json
import threading
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger
from ledger.backend import EventStore
from ledger.memory import MemoryStore

from .conftest import FakeClock, entry
from .pg import OnPostgres


def workload(ledger: Ledger) -> int:
    """The task card's calls, the pipeline's and a bulk write; returns the number of events recorded."""
    ledger.set_video_metadata(entry("colosseum", "rome-80ad", status="pending"))
    ledger.set_many(
        [entry("acropolis", "athens", status="pending"), entry("petra", "nabataean", status="pending")]
    )
    job = ledger.begin_attempt("colosseum", "rome-80ad", "a prompt")
    ledger.mark_video_ready("colosseum", "rome-80ad", "videos/colosseum.mp4", attempt=job.attempt)
    ledger.begin_attempt("petra", "nabataean", "another prompt")
    ledger.mark_video_failed("petra", "nabataean", "boom")
    ledger.set_video_metadata(entry("acropolis", "athens", status="pending"))  # as it is: records nothing
    return 7


class LedgerOverStore(abc.ABC):
    @abc.abstractmethod
    def create_store(self) -> EventStore:
        """A fresh, empty store."""

    @abc.abstractmethod
    def reopen(self, store: EventStore) -> EventStore:
        """Another handle on the same store."""

    def test_the_cards_functions_history_verify_and_rebuild(self, tmp_path: Path) -> None:
        directory = tmp_path / "over-store"
        with Ledger(directory, store=self.create_store(), clock=FakeClock()) as ledger:
            n = workload(ledger)
            got = ledger.get_video_metadata("colosseum", "rome-80ad")
            assert got is not None and got.status == "ready" and got.local_path == "videos/colosseum.mp4"
            assert [e.key[0] for e in ledger.get_all_video_metadata()] == ["acropolis", "colosseum", "petra"]
            assert [e.seq for e in ledger.history()] == list(range(1, n + 1))
            assert [e.type for e in ledger.history("petra")] == ["pending", "generating", "failed"]
            assert ledger.head().seq == n and ledger.stats().events == n
            report = ledger.verify()
            assert report.ok and report.events == n and report.snapshot_seq == n, report
            assert report.head == f"{n}:{ledger.head().hash}"
            assert ledger.rebuild().events == n
            lines = [line for line, _ in ledger.history_lines()]
        assert sorted(p.name for p in directory.iterdir()) == [
            "checkpoint.json", "generated-videos.json", "merkle.index", "merkle.keys", "merkle.tree",
        "snapshot.lock",
        ]  # fmt: skip
        with Ledger(tmp_path / "file", clock=FakeClock()) as file_ledger:  # the same writes, the same clock
            workload(file_ledger)
            assert [line for line, _ in file_ledger.history_lines()] == lines
        snapshot = (directory / "generated-videos.json").read_bytes()
        assert snapshot == (tmp_path / "file" / "generated-videos.json").read_bytes()

    def test_another_handle_sees_every_write_and_an_open_trusts_a_matching_checkpoint(
        self, tmp_path: Path
    ) -> None:
        store = self.create_store()
        with Ledger(tmp_path / "a", store=store, clock=FakeClock()) as first:
            n = workload(first)
            other = Ledger(tmp_path / "b", store=self.reopen(store), readonly=True)
            assert other.get_all_video_metadata() == first.get_all_video_metadata()
            first.set_video_metadata(entry("acropolis", "athens", status="generating"))
            assert other.head().seq == n + 1  # a write that returned is seen by every reader
            other.close()
            reopened = Ledger(tmp_path / "a", store=self.reopen(store), readonly=True)
            assert reopened.head().seq == n + 1 and reopened._projector.problem is None  # the checkpoint's
            reopened.close()

    def test_follow_reads_the_given_store(self, tmp_path: Path) -> None:
        stop = threading.Event()
        stop.set()  # the events already there, then stop
        with Ledger(tmp_path, store=self.create_store(), clock=FakeClock()) as ledger:
            n = workload(ledger)
            assert [e.seq for _, e in ledger.follow(since_seq=2, stop_event=stop)] == list(range(3, n + 1))
            caught: list[int] = []
            assert list(ledger.follow(stop_event=stop, on_caught_up=caught.append)) == [] and caught == [n]
        assert not (tmp_path / "events.jsonl").exists()

    def test_a_checkpoint_the_store_does_not_hold_is_not_trusted(self, tmp_path: Path) -> None:
        with Ledger(tmp_path, store=self.create_store(), clock=FakeClock()) as ledger:
            workload(ledger)
        with (
            Ledger(tmp_path, store=self.create_store(), readonly=True) as other,  # another, empty store
            pytest.raises(CorruptLogError, match="trailing events are missing"),
        ):
            other.get_all_video_metadata()

    def test_a_file_stores_log_in_the_directory_is_named_and_left_alone(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with Ledger(tmp_path / "d", clock=FakeClock()) as file_ledger:  # a file store's ledger was here
            workload(file_ledger)
        (tmp_path / "d" / "checkpoint.json").unlink()
        (tmp_path / "d" / "generated-videos.json").unlink()
        before = (tmp_path / "d" / "events.jsonl").read_bytes()
        with Ledger(tmp_path / "d", store=self.create_store(), clock=FakeClock()) as ledger:
            ledger.set_video_metadata(entry("colosseum", "rome-80ad", status="pending"))
        assert "holds a file store's events.jsonl, but this ledger's events are in" in caplog.text
        assert (tmp_path / "d" / "events.jsonl").read_bytes() == before

    def test_a_checkpoint_whose_own_time_was_changed_is_only_distrusted(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = self.create_store()
        with Ledger(tmp_path, store=store, clock=FakeClock()) as ledger:
            workload(ledger)
            expected = ledger.get_all_video_metadata()
        checkpoint = tmp_path / "checkpoint.json"
        data = json.loads(checkpoint.read_bytes())
        data["lastTs"] = "2001-01-01T00:00:00.000000Z"
        checkpoint.write_text(json.dumps(data))
        with Ledger(tmp_path, store=self.reopen(store), readonly=True) as other:
            assert other.get_all_video_metadata() == expected  # the replay stands
            assert other._projector.problem is not None  # not trusted: the next writer rewrites it
        assert "the checkpoint says event 7 at 2001-01-01" in caplog.text

    def test_a_checkpoint_of_another_history_is_named_as_a_rewritten_log(self, tmp_path: Path) -> None:
        with Ledger(tmp_path, store=self.create_store(), clock=FakeClock()) as ledger:
            n = workload(ledger)
        other_store = self.create_store()
        with Ledger(tmp_path / "elsewhere", store=other_store, clock=FakeClock()) as elsewhere:
            for i in range(n + 2):  # a longer history of other entries: no record has the checkpoint's hash
                elsewhere.set_video_metadata(entry(f"spot-{i}", "era", status="pending"))
        with (
            Ledger(tmp_path, store=self.reopen(other_store), readonly=True) as other,
            pytest.raises(CorruptLogError, match="rewritten, or the checkpoint is another log's"),
        ):
            other.get_all_video_metadata()


class TestLedgerOverMemory(LedgerOverStore):
    def create_store(self) -> EventStore:
        return MemoryStore()

    def reopen(self, store: EventStore) -> EventStore:
        assert isinstance(store, MemoryStore)
        return MemoryStore(store.log)


class TestLedgerOverPostgres(OnPostgres, LedgerOverStore):
    """A Ledger over the PostgreSQL store (a fresh database per test)."""
