"""The store API (``ledger.store.Ledger``): the card's functions, the snapshot's shape, checkpoints and reads
across handles; and a Ledger over each event store (memory, PostgreSQL), where each store's case subclasses
:class:`LedgerOverStore` as ``tests/contract.py`` does for the stores themselves."""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import msgspec
import pytest

import ledger as ledger_module
from ledger import (
    CorruptLogError,
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    Ledger,
    NoLedgerError,
    ReadOnlyLedgerError,
    VideoMetadata,
)
from ledger.backend import EventStore
from ledger.events import decode_event
from ledger.memory import MemoryStore
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import FakeClock, entry, files_state
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


def test_a_new_ledger_has_an_empty_log_and_an_empty_array_snapshot(ledger_dir: Path) -> None:
    Ledger(ledger_dir).close()
    assert (ledger_dir / "events.jsonl").read_bytes() == b""
    assert (ledger_dir / "generated-videos.json").read_bytes() == b"[]\n"
    assert Ledger(ledger_dir).get_all_video_metadata() == []


def test_the_shipped_data_snapshot_is_an_empty_array() -> None:
    assert (Path(__file__).parent.parent / "data" / "generated-videos.json").read_bytes() == b"[]\n"


def test_the_card_functions(ledger: Ledger) -> None:
    assert ledger.get_video_metadata("colosseum", "rome-80ad") is None
    ledger.set_video_metadata(entry(status="generating"))
    ready = ledger.set_video_metadata(entry(status="ready"))
    ledger.set_video_metadata(entry("akropolis", "athens", status="generating"))
    failed = ledger.mark_video_failed("akropolis", "athens", "out of memory")
    assert ledger.get_video_metadata("colosseum", "rome-80ad") == ready
    assert ledger.get_all_video_metadata() == [failed, ready]  # ordered by (spotId, eraId)
    assert failed.status == "failed"
    assert failed.error == "out of memory"


def test_set_accepts_the_camel_case_dict_the_app_uses(ledger: Ledger) -> None:
    stored = ledger.set_video_metadata(
        {"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating", "localPath": "x.mp4"}
    )
    assert stored.local_path == "x.mp4"


def test_mark_failed_on_a_missing_entry_is_a_typed_error(ledger: Ledger, ledger_dir: Path) -> None:
    state = files_state(ledger_dir)
    with pytest.raises(EntryNotFoundError, match="no entry for spotId='nope'"):
        ledger.mark_video_failed("nope", "never", "x")
    assert files_state(ledger_dir) == state


def test_snapshot_has_the_cards_shape(ledger: Ledger, ledger_dir: Path) -> None:
    ledger.set_video_metadata(entry(status="generating"))
    ledger.set_video_metadata(entry(status="ready"))
    ledger.set_video_metadata(entry("akropolis", "athens", status="generating"))
    ledger.mark_video_failed("akropolis", "athens", "boom")
    ledger.set_video_metadata(entry("babylon", "600bc", status="pending"))
    raw = (ledger_dir / "generated-videos.json").read_bytes()
    assert raw.endswith(b"]\n")
    items = json.loads(raw.decode("utf-8"))
    assert [(i["spotId"], i["eraId"]) for i in items] == sorted((i["spotId"], i["eraId"]) for i in items)
    card = ["spotId", "eraId", "prompt", "localPath", "status", "createdAt", "completedAt", "error"]
    allowed = {*card, "updatedAt", "attempt"}  # the two additions, documented in docs/format.md
    for item in items:
        assert set(item) <= allowed
        assert None not in item.values(), "keys without a value are left out, never null"
        assert {"spotId", "eraId", "prompt", "status", "createdAt", "updatedAt"} <= set(item)
        assert [k for k in item if k in card] == [k for k in card if k in item], "the card's order"
        assert item["createdAt"].endswith("Z")
        assert len(item["createdAt"]) == len("2026-11-24T09:00:00.000000Z")
    by_status = {i["status"]: i for i in items}
    assert "error" in by_status["failed"]
    assert "localPath" in by_status["ready"]
    assert "completedAt" in by_status["ready"]
    assert "completedAt" not in by_status["pending"]


def test_snapshot_is_byte_identical_to_a_rebuild_and_to_a_fold_of_the_log(
    ledger: Ledger, ledger_dir: Path
) -> None:
    for i in range(30):
        ledger.set_video_metadata(entry(f"spot{i % 7}", f"era{i % 3}", status="pending", prompt=f"p{i}"))
    kept = (ledger_dir / "generated-videos.json").read_bytes()
    lines = (ledger_dir / "events.jsonl").read_bytes().splitlines()
    assert encode_snapshot(fold(decode_event(line) for line in lines)) == kept
    ledger.rebuild()
    assert (ledger_dir / "generated-videos.json").read_bytes() == kept


def test_snapshot_path_can_point_into_the_app(ledger_dir: Path, tmp_path: Path, clock: FakeClock) -> None:
    app_file = tmp_path / "app" / "src" / "lib" / "data" / "generated-videos.json"
    app_file.parent.mkdir(parents=True)
    with Ledger(ledger_dir, snapshot=app_file, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    assert json.loads(app_file.read_text())[0]["status"] == "generating"
    assert not (ledger_dir / "generated-videos.json").exists()


def test_a_write_is_seen_by_other_handles_and_processes(ledger_dir: Path, clock: FakeClock) -> None:
    writer = Ledger(ledger_dir, clock=clock)
    reader = Ledger(ledger_dir, readonly=True)
    assert reader.get_all_video_metadata() == []
    writer.set_video_metadata(entry(status="generating"))
    assert reader.get_video_metadata("colosseum", "rome-80ad") is not None
    other_writer = Ledger(ledger_dir, clock=clock)
    other_writer.set_video_metadata(entry(status="ready"))
    # the first writer checks its change against the other's write, not a stale cache
    with pytest.raises(ledger_module.IllegalTransitionError):
        writer.set_video_metadata(entry(status="failed"))
    assert writer.get_video_metadata("colosseum", "rome-80ad").status == "ready"  # type: ignore[union-attr]


def test_opening_reads_the_checkpointed_snapshot_not_the_whole_log(
    ledger_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        for i in range(20):
            ledger.set_video_metadata(entry(f"s{i}", "e", status="pending"))
    scanned: list[int] = []
    from ledger.backend import GENESIS, Head
    from ledger.log import EventLog

    original = EventLog.read

    def counting(self: EventLog, after: Head = GENESIS):  # type: ignore[no-untyped-def]
        for batch in original(self, after):
            scanned.extend(event.seq for event in batch.events)
            yield batch

    monkeypatch.setattr(EventLog, "read", counting)
    reopened = Ledger(ledger_dir, readonly=True)
    assert len(reopened.get_all_video_metadata()) == 20
    assert scanned == [], "no event was replayed on open"


def test_a_snapshot_that_is_not_json_is_reported_and_rebuilt(
    ledger_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        good = (ledger_dir / "generated-videos.json").read_bytes()
    (ledger_dir / "generated-videos.json").write_bytes(b"[{not json")
    with caplog.at_level(logging.WARNING, logger="ledger"), Ledger(ledger_dir, clock=clock) as ledger:
        assert len(ledger.get_all_video_metadata()) == 1
    assert "not a valid JSON array" in caplog.text
    assert "rebuilding it from the log" in caplog.text
    assert (ledger_dir / "generated-videos.json").read_bytes() == good


def test_a_hand_edited_snapshot_is_not_trusted(ledger_dir: Path, clock: FakeClock) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        good = (ledger_dir / "generated-videos.json").read_bytes()
    (ledger_dir / "generated-videos.json").write_bytes(good.replace(b"generating", b"ready     "))
    with Ledger(ledger_dir, clock=clock) as ledger:
        assert ledger.get_video_metadata("colosseum", "rome-80ad").status == "generating"  # type: ignore[union-attr]
    assert (ledger_dir / "generated-videos.json").read_bytes() == good


def test_a_crash_between_snapshot_and_checkpoint_is_detected(ledger_dir: Path, clock: FakeClock) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        old_checkpoint = (ledger_dir / "checkpoint.json").read_bytes()
        ledger.set_video_metadata(entry(status="ready"))
    # as if the process died after renaming the new snapshot, before renaming the new checkpoint
    (ledger_dir / "checkpoint.json").write_bytes(old_checkpoint)
    reopened = Ledger(ledger_dir, readonly=True)
    assert reopened.get_video_metadata("colosseum", "rome-80ad").status == "ready"  # type: ignore[union-attr]
    report = reopened.verify()  # harmless: the snapshot is the replay at a later event than the checkpoint's
    assert report.ok and report.snapshot_seq == 2 and "behind the snapshot" in (report.note or "")
    Ledger(ledger_dir, clock=clock).close()  # a writer rewrites the checkpoint
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.note is None and report.checkpoint_seq == 2


def test_cutting_whole_trailing_lines_is_detected_against_the_checkpoint(
    ledger_dir: Path, clock: FakeClock
) -> None:
    with Ledger(ledger_dir, clock=clock) as ledger:
        for status in ("generating", "ready"):
            ledger.set_video_metadata(entry(status=status))
    log = ledger_dir / "events.jsonl"
    log.write_bytes(log.read_bytes().splitlines(keepends=True)[0])
    with pytest.raises(CorruptLogError, match="trailing events are missing"):
        Ledger(ledger_dir, readonly=True).get_all_video_metadata()
    report = Ledger(ledger_dir, readonly=True).verify()
    assert not report.ok
    assert "trailing events are missing" in (report.problem or "")


def test_readonly_ledger_creates_nothing_and_refuses_writes(tmp_path: Path) -> None:
    with pytest.raises(NoLedgerError, match="no ledger at"):
        Ledger(tmp_path / "absent", readonly=True)
    assert not (tmp_path / "absent").exists()
    Ledger(tmp_path / "made").close()
    before = files_state(tmp_path / "made")
    ledger = Ledger(tmp_path / "made", readonly=True)
    assert ledger.get_all_video_metadata() == []
    assert list(ledger.history()) == []
    with pytest.raises(ReadOnlyLedgerError):
        ledger.set_video_metadata(entry())
    assert files_state(tmp_path / "made") == before


def test_history_filters_by_entry_and_keeps_log_order(ledger: Ledger) -> None:
    ledger.set_video_metadata(entry("a", "1", status="generating"))
    ledger.set_video_metadata(entry("b", "1", status="generating"))
    ledger.set_video_metadata(entry("a", "1", status="ready"))
    assert [e.seq for e in ledger.history()] == [1, 2, 3]
    assert [e.STATUS for e in ledger.history("a", "1")] == ["generating", "ready"]
    assert [e.seq for e in ledger.history(era_id="1")] == [1, 2, 3]


def test_event_times_never_go_backwards(ledger_dir: Path) -> None:
    clock = FakeClock()
    with Ledger(ledger_dir, clock=clock) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
        clock.now -= clock.step * 1000  # the system clock steps back
        ledger.set_video_metadata(entry(status="ready"))
        times = [e.ts for e in ledger.history()]
    assert times[1] == times[0]


def test_get_with_bad_ids_is_a_typed_error(ledger: Ledger) -> None:
    with pytest.raises(InvalidEntryError):
        ledger.get_video_metadata("", "e")
    with pytest.raises(InvalidEntryError):
        ledger.get_video_metadata(5, "e")  # type: ignore[arg-type]


def test_entries_are_immutable_values(ledger: Ledger) -> None:
    stored = ledger.set_video_metadata(entry(status="generating"))
    with pytest.raises(AttributeError):
        stored.status = "ready"  # type: ignore[misc]
    ready = ledger.set_video_metadata(msgspec.structs.replace(stored, status="ready", local_path="v.mp4"))
    assert isinstance(ready, VideoMetadata)
    assert ready.status == "ready"


def test_files_are_created_with_the_process_umask(ledger_dir: Path, clock: FakeClock) -> None:
    old = os.umask(0o027)
    try:
        with Ledger(ledger_dir, clock=clock) as ledger:
            ledger.set_video_metadata(entry(status="generating"))
    finally:
        os.umask(old)
    for path in ledger_dir.iterdir():
        assert path.stat().st_mode & 0o007 == 0, f"{path.name} is accessible to others"


def test_regression_handles_that_are_never_closed_do_not_leak_descriptors(
    ledger_dir: Path, clock: FakeClock
) -> None:
    """Found by the long property run (EMFILE after thousands of unclosed handles): a handle's file
    descriptors are closed when it is garbage-collected."""
    import gc

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    Ledger(ledger_dir, clock=clock).set_video_metadata(entry(status="generating"))
    gc.collect()
    before = open_fds()
    for i in range(300):
        Ledger(ledger_dir, clock=clock).set_video_metadata(entry(f"s{i}", "e", status="pending"))
    gc.collect()
    assert open_fds() <= before + 3


def test_a_checkpoint_from_before_snapshot_crc32_is_replaced_after_one_replay(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as first:
        first.set_video_metadata(entry("a", "e", status="pending"))
    checkpoint = ledger_dir / "checkpoint.json"
    old = msgspec.json.decode(checkpoint.read_bytes())
    old["snapshotSha256"] = hashlib.sha256((ledger_dir / "generated-videos.json").read_bytes()).hexdigest()
    del old["snapshotCrc32"]
    checkpoint.write_bytes(msgspec.json.encode(old))
    with Ledger(ledger_dir, clock=FakeClock()) as second:  # replays, then writes a checkpoint of today's form
        assert second.get_video_metadata("a", "e") is not None
        second.set_video_metadata(entry("b", "e", status="pending"))
    assert "snapshotCrc32" in msgspec.json.decode(checkpoint.read_bytes())
    assert Ledger(ledger_dir, readonly=True).verify().ok


def test_set_many_writes_nothing_when_one_change_is_refused(ledger: Ledger, ledger_dir: Path) -> None:
    ledger.set_video_metadata(entry("a", "e", status="pending"))
    before = files_state(ledger_dir)
    with pytest.raises(IllegalTransitionError):
        ledger.set_many([entry("b", "e", status="pending"), entry("a", "e", status="ready")])  # the second
    assert files_state(ledger_dir) == before
    assert ledger.get_video_metadata("b", "e") is None
    stored = ledger.set_many([entry("b", "e", status="pending"), entry("a", "e", status="generating")])
    assert [e.key for e in stored] == [("b", "e"), ("a", "e")] and [e.seq for e in ledger.history()] == [
        1,
        2,
        3,
    ]


def test_update_entry_keeps_the_current_prompt_and_a_new_entry_needs_one(
    ledger: Ledger, ledger_dir: Path
) -> None:
    ledger.set_video_metadata(entry("a", "e", status="pending", prompt="the first prompt"))
    after = ledger.update_entry("a", "e", "generating")
    assert after.status == "generating" and after.prompt == "the first prompt"
    assert ledger.update_entry("a", "e", "failed", error="boom").prompt == "the first prompt"
    assert ledger.update_entry("a", "e", "pending", prompt="another").prompt == "another"
    before = files_state(ledger_dir)
    with pytest.raises(InvalidEntryError, match="b/e is a new entry: a prompt is required"):
        ledger.update_entry("b", "e", "pending")
    assert files_state(ledger_dir) == before


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
