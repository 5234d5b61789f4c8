"""The event-store contract (:mod:`ledger.backend`) as one test case class, run against every backend.

A backend's test module subclasses :class:`EventStoreContract` (named ``Test...`` there, so pytest collects
it) and implements :meth:`create_store` (a fresh, empty store), :meth:`reopen` (another handle on the same
store: another process's view) and :meth:`damage` (flip one byte of a stored record's line, as a failing
disk would). ``tests/test_backend_contract.py`` does so for the memory and the file backends.

What is pinned, per test below: durability (a record is there for every handle once ``append`` returns,
and after reopening), all or nothing (a ``decide`` that raises appends nothing; a batch is read whole or
not at all), seq contiguity (1, 2, 3 … with no gaps), the chain (each line's ``prev`` is the SHA-256 of
the line before, lines read back byte for byte as appended), what ``decide`` is shown (every record after
the caller's head, so concurrent writers never fork the chain), ``wait`` (at once, on a later append, on a
timeout), ``check`` (a sound store end to end; damage named at its line), reading only what is durable,
``at`` (each record found with or without its bookmark; ``None`` beyond the store) and a head beyond the
store refused by ``read`` (:class:`~ledger.errors.StaleHeadError`).
"""

from __future__ import annotations

import abc
import itertools
import threading
import time
from collections.abc import Sequence

import pytest

from ledger.backend import GENESIS, Batch, Decide, EventStore, Head, Record
from ledger.errors import CorruptLogError, StaleHeadError
from ledger.events import FORMAT_VERSION, GENESIS_HASH, Generating, Pending, encode_line, line_hash

TS = "2026-11-24T09:00:00.000000Z"


def make_records(tip: Head, n: int, *, spot: str = "colosseum", ts: str = TS) -> list[Record]:
    """``n`` records continuing ``tip``, as the store API would build them."""
    records = []
    seq, prev = tip.seq, tip.hash
    for i in range(n):
        seq += 1
        cls = Pending if i % 2 == 0 else Generating
        event = cls(
            v=FORMAT_VERSION, seq=seq, ts=max(ts, tip.ts), spot_id=spot, era_id=f"era-{seq}", prev=prev,
            prompt=f"prompt {seq}",
        )  # fmt: skip
        line = encode_line(event)[:-1]
        records.append(Record(seq, line, event))
        prev = line_hash(line)
    return records


def appender(n: int, seen: list[tuple[Head, list[Record]]] | None = None, **kw: str) -> Decide:
    """A ``decide`` that appends ``n`` records after whatever tip it is shown (noting what it saw)."""

    def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
        if seen is not None:
            seen.append((tip, list(unseen)))
        return make_records(tip, n, **kw)

    return decide


def everything(store: EventStore, after: Head = GENESIS) -> list[Record]:
    return list(store.records(after))


class EventStoreContract(abc.ABC):
    """The contract every :class:`~ledger.backend.EventStore` passes."""

    @abc.abstractmethod
    def create_store(self) -> EventStore:
        """A fresh, empty store (closed by the test)."""

    @abc.abstractmethod
    def reopen(self, store: EventStore) -> EventStore:
        """Another handle on the same store (as another process opens it)."""

    @abc.abstractmethod
    def damage(self, store: EventStore, seq: int) -> None:
        """Flip one byte inside the JSON of record ``seq``'s stored line."""

    # -- an empty store ----------------------------------------------------------------------------------

    def test_an_empty_store_has_the_genesis_head_and_no_records(self) -> None:
        store = self.create_store()
        try:
            assert store.head()[:3] == (0, GENESIS_HASH, "")
            assert everything(store) == []
            audit = store.check()
            assert list(audit) == [] and audit.end[:3] == (0, GENESIS_HASH, "") and audit.torn is None
        finally:
            store.close()

    # -- append: durable, contiguous, chained, all or nothing -------------------------------------------

    def test_append_returns_the_new_head_and_the_records_read_back_byte_for_byte(self) -> None:
        store = self.create_store()
        try:
            written: list[Record] = []

            def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
                assert tip[:3] == GENESIS[:3] and list(unseen) == []
                written.extend(make_records(tip, 3))
                return written

            head = store.append(GENESIS, decide)
            assert head[:3] == (3, line_hash(written[-1].line), TS)
            assert store.head()[:3] == head[:3]
            assert [(r.seq, r.line, r.event) for r in everything(store)] == [
                (r.seq, r.line, r.event) for r in written
            ]
        finally:
            store.close()

    def test_seqs_are_contiguous_and_every_prev_is_the_hash_of_the_line_before(self) -> None:
        store = self.create_store()
        try:
            head = GENESIS
            for n in (1, 5, 2, 40):
                head = store.append(head, appender(n))
            records = everything(store)
            assert [r.seq for r in records] == list(range(1, 49)) == [r.event.seq for r in records]
            hashes = [GENESIS_HASH, *(line_hash(r.line) for r in records)]
            assert [r.event.prev for r in records] == hashes[:-1]
            assert head[:2] == (48, hashes[-1])
            assert all(b"\n" not in r.line for r in records)
        finally:
            store.close()

    def test_an_appended_record_is_durable_for_every_handle_and_after_reopening(self) -> None:
        store = self.create_store()
        other = self.reopen(store)
        try:
            head = store.append(GENESIS, appender(2))
            assert other.head()[:3] == head[:3]  # visible to the other handle as soon as append returned
            assert everything(other) == everything(store)
            store.close()
            again = self.reopen(other)
            try:
                assert again.head()[:3] == head[:3] and len(everything(again)) == 2
            finally:
                again.close()
        finally:
            store.close()
            other.close()

    def test_a_decide_that_raises_appends_nothing_and_its_error_comes_through(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(1))

            def refuse(tip: Head, unseen: Sequence[Record]) -> list[Record]:
                make_records(tip, 3)  # built, then refused: none of them may land
                raise KeyError("refused")

            with pytest.raises(KeyError, match="refused"):
                store.append(head, refuse)
            assert store.head()[:3] == head[:3] and len(everything(store)) == 1
            assert store.append(head, appender(1))[0] == 2  # the store is still usable
        finally:
            store.close()

    def test_a_decide_that_returns_nothing_appends_nothing_and_returns_the_tip(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(2))
            assert store.append(head, lambda tip, unseen: [])[:3] == head[:3]
            assert store.append(GENESIS, lambda tip, unseen: [])[:3] == head[:3]  # the tip, not ``after``
            assert len(everything(store)) == 2
        finally:
            store.close()

    # -- conflicts: a writer behind the tip is shown what it missed ----------------------------------------

    def test_decide_is_shown_every_record_after_the_callers_head(self) -> None:
        store = self.create_store()
        other = self.reopen(store)
        try:
            mine = store.append(GENESIS, appender(1))
            theirs = other.append(mine, appender(3, spot="acropolis"))
            seen: list[tuple[Head, list[Record]]] = []
            head = store.append(mine, appender(1, seen=seen))  # planned knowing only event 1
            tip, unseen = seen[-1]  # the run whose records landed (a store may try the caller's head first)
            assert tip[:3] == theirs[:3]
            assert all(run[0][:3] == mine[:3] and run[1] == [] for run in seen[:-1])
            assert [r.seq for r in unseen] == [2, 3, 4] and all(
                r.event.spot_id == "acropolis" for r in unseen
            )
            assert [(r.line, r.event) for r in unseen] == [
                (r.line, r.event) for r in everything(other, mine)[:3]
            ]
            assert head[0] == 5 and everything(store)[-1].event.prev == theirs.hash
        finally:
            store.close()
            other.close()

    def test_concurrent_appenders_never_fork_the_chain(self) -> None:
        stores = [self.create_store()]
        stores += [self.reopen(stores[0]) for _ in range(3)]
        errors: list[BaseException] = []

        def work(store: EventStore, spot: str) -> None:
            try:
                head = GENESIS
                for _ in range(10):
                    head = store.append(head, appender(2, spot=spot))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s, f"spot-{i}")) for i, s in enumerate(stores)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == []
            records = everything(stores[0])
            assert [r.seq for r in records] == list(range(1, 81))
            hashes = [GENESIS_HASH, *(line_hash(r.line) for r in records)]
            assert [r.event.prev for r in records] == hashes[:-1]
            for i in range(4):  # each writer's two records of one append are adjacent: all or nothing
                mine = [r.seq for r in records if r.event.spot_id == f"spot-{i}"]
                assert len(mine) == 20 and all(b == a + 1 for a, b in zip(mine[::2], mine[1::2], strict=True))
        finally:
            for store in stores:
                store.close()

    # -- read --------------------------------------------------------------------------------------------

    def test_read_after_a_head_yields_only_the_later_records_in_batches(self) -> None:
        store = self.create_store()
        try:
            first = store.append(GENESIS, appender(3))
            store.append(first, appender(4))
            batches = list(store.read(first))
            assert all(isinstance(b, Batch) and len(b.lines) == len(b.events) > 0 for b in batches)
            assert [e.seq for b in batches for e in b.events] == [4, 5, 6, 7]
            assert all(
                b.end[:3] == (b.events[-1].seq, line_hash(b.lines[-1]), b.events[-1].ts) for b in batches
            )
            assert batches[-1].end[:3] == store.head()[:3]
            assert list(store.read(store.head())) == []
            assert [r.seq for r in everything(store, Head(first.seq, first.hash, first.ts))] == [4, 5, 6, 7]
        finally:
            store.close()

    def test_reading_on_from_a_batch_end_yields_what_was_appended_since(self) -> None:
        store = self.create_store()
        other = self.reopen(store)
        try:
            store.append(GENESIS, appender(5))
            end = list(store.read())[-1].end
            other.append(other.head(), appender(3, spot="acropolis"))
            later = everything(store, end)
            assert [r.seq for r in later] == [6, 7, 8] and later[0].event.prev == end.hash
            assert [r.seq for r in everything(store, Head(end.seq, end.hash, end.ts))] == [6, 7, 8]
        finally:
            store.close()
            other.close()

    def test_reading_from_a_head_the_store_does_not_hold_raises_where_the_chain_breaks(self) -> None:
        store = self.create_store()
        try:
            first = store.append(GENESIS, appender(2))
            store.append(first, appender(2))
            forged = first._replace(hash="f" * 64)
            with pytest.raises(CorruptLogError) as caught:
                everything(store, forged)
            assert caught.value.line == 3
        finally:
            store.close()

    def test_reading_after_a_head_beyond_the_store_raises_stale_head(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(3))
            beyond = Head(head.seq + 2, "f" * 64, head.ts)  # a head of a longer store (no bookmark)
            with pytest.raises(StaleHeadError):
                everything(store, beyond)
        finally:
            store.close()

    # -- at ----------------------------------------------------------------------------------------------

    def test_at_finds_each_record_the_store_holds_with_or_without_its_bookmark(self) -> None:
        store = self.create_store()
        try:
            assert store.at(GENESIS) == GENESIS
            first = store.append(GENESIS, appender(3))
            head = store.append(first, appender(2))
            for place in (first, head):
                found = store.at(place)
                assert found is not None and found == place  # bookmark included
                found = store.at(Head(place.seq))  # no bookmark (a checkpoint another store wrote)
                assert found is not None and found[:3] == place[:3]
            second = everything(store)[1]
            assert store.at(Head(2))[:3] == (2, line_hash(second.line), second.event.ts)  # type: ignore[index]
            assert store.at(Head(head.seq + 1)) is None
            assert store.at(head._replace(seq=head.seq + 1)) is None  # a bookmark that leads elsewhere
        finally:
            store.close()

    def test_read_is_a_view_as_of_the_call(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(2))
            batches = store.read(GENESIS)
            store.append(head, appender(2))  # after the call: not part of that read
            assert [e.seq for b in batches for e in b.events] == [1, 2]
        finally:
            store.close()

    # -- wait --------------------------------------------------------------------------------------------

    def test_wait_returns_at_once_when_a_later_record_is_there_and_false_on_timeout(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(2))
            assert store.wait(1, timeout=0) is True
            assert store.wait(0, timeout=5) is True
            started = time.monotonic()
            assert store.wait(head.seq, timeout=0.3) is False
            assert 0.25 <= time.monotonic() - started < 5
        finally:
            store.close()

    def test_wait_wakes_when_another_handle_appends(self) -> None:
        store = self.create_store()
        other = self.reopen(store)
        try:
            head = store.append(GENESIS, appender(1))
            timer = threading.Timer(0.3, lambda: other.append(head, appender(1)))
            started = time.monotonic()
            timer.start()
            try:
                assert store.wait(head.seq, timeout=20) is True
            finally:
                timer.join()
            assert time.monotonic() - started < 10
            assert store.head()[0] == 2
        finally:
            store.close()
            other.close()

    # -- check -------------------------------------------------------------------------------------------

    def test_check_reads_a_sound_store_to_its_head(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(30))
            audit = store.check()
            batches = list(audit)
            events = [e for batch in batches for e in batch.events]
            assert [e.seq for e in events] == list(range(1, 31))
            assert batches[-1].end[:3] == head[:3]
            assert audit.end[:3] == head[:3] and audit.torn is None
        finally:
            store.close()

    def test_check_names_a_damaged_record_at_its_line(self) -> None:
        store = self.create_store()
        try:
            store.append(GENESIS, appender(6))
            self.damage(store, 3)
            audit = store.check()
            with pytest.raises(CorruptLogError) as caught:
                for _ in audit:
                    pass
            assert caught.value.line == 3
        finally:
            store.close()

    # -- newest_first ------------------------------------------------------------------------------------

    reads_check_lines = True
    """Whether the store's reads check each stored line (the memory store holds its events decoded and
    does not: it has no damage of its own to find)."""

    def test_newest_first_gives_every_record_newest_first_byte_for_byte(self) -> None:
        store = self.create_store()
        try:
            assert list(store.newest_first()) == []
            head = store.append(GENESIS, appender(1))
            head = store.append(head, appender(4500))  # past a batch and a chunk of the file
            store.append(head, appender(7, spot="acropolis"))
            forward = [(r.line, r.event) for r in everything(store)]
            assert list(store.newest_first()) == forward[::-1]
        finally:
            store.close()

    def test_newest_first_is_a_view_as_of_the_call(self) -> None:
        store = self.create_store()
        other = self.reopen(store)
        try:
            head = store.append(GENESIS, appender(3))
            newest = store.newest_first()
            other.append(head, appender(2))  # after the call: not part of that read
            assert [event.seq for _, event in newest] == [3, 2, 1]
            assert [event.seq for _, event in store.newest_first()] == [5, 4, 3, 2, 1]
        finally:
            store.close()
            other.close()

    def test_newest_first_of_one_entry_holds_its_records_newest_first(self) -> None:
        store = self.create_store()
        try:
            head = store.append(GENESIS, appender(5))
            head = store.append(head, appender(1, spot="acropolis"))
            store.append(head, appender(3))
            mine = [(r.line, r.event) for r in everything(store) if r.event.key == ("acropolis", "era-6")]
            newest = store.newest_first("acropolis", "era-6")
            got = [item for item in newest if item[1].spot_id == "acropolis"]
            assert got == mine and len(got) == 1
        finally:
            store.close()

    def test_taking_the_newest_never_reads_the_oldest_and_reading_on_names_damage_at_its_line(self) -> None:
        if not self.reads_check_lines:
            pytest.skip("this store's reads check no stored line")
        store = self.create_store()
        try:
            store.append(GENESIS, appender(300))
            self.damage(store, 2)
            newest = store.newest_first()
            assert [event.seq for _, event in itertools.islice(newest, 5)] == [300, 299, 298, 297, 296]
            with pytest.raises(CorruptLogError) as caught:
                for _ in newest:
                    pass
            assert caught.value.line == 2
        finally:
            store.close()
