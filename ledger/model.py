"""The write model: the entries a writer plans against, and the head they stand at.

A :class:`Model` is the fold (:mod:`projections.entries`) of a store's records up to :attr:`Model.head`. It
is kept current through the event-store interface only: :meth:`Model.catch_up` folds what
:meth:`~ledger.backend.EventStore.read` yields after the head; :meth:`Model.advance` takes in what an
append returned. The projector seeds it from the checkpointed snapshot (:meth:`Model.seed`) and writes
the snapshot of it; the writer plans every write against it. Its state changes only through its methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from ledger.backend import GENESIS, Batch, EventStore, Head, Record
from ledger.events import EventType
from projections import entries as entries_view

__all__ = ("Model",)


class Model:
    """The entries after the records up to :attr:`head` of ``store``."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.entries: entries_view.Entries = {}
        self.head: Head = GENESIS
        self.changed: set[tuple[str, str]] | None = None
        """The keys whose entries changed since the projector last encoded them; ``None``: not known."""
        self.loaded = False
        """Seeded (by the projector) and not since invalidated."""

    def seed(self, entries: entries_view.Entries, head: Head) -> None:
        """Start from ``entries``, the state after the records up to ``head`` (a checkpointed snapshot, or
        nothing at :data:`~ledger.backend.GENESIS`)."""
        self.entries, self.head, self.changed, self.loaded = entries, head, None, True

    def invalidate(self) -> None:
        """Forget the state: it may hold records that were not recorded. The owner seeds it again."""
        self.loaded = False

    def catch_up(self) -> bool:
        """Fold the durable records after :attr:`head` (one :meth:`~ledger.backend.EventStore.read`).
        Returns whether there were any. Raises what ``read`` raises
        (:class:`~ledger.errors.StaleHeadError`: seed again); the state is then invalidated."""
        end = self.head
        ends: list[Head] = []

        def events(batch: Batch) -> list[EventType]:
            ends.append(batch.end)
            return batch.events

        try:
            batches = self.store.read(end)
            first = next(batches, None)
            if first is None:  # the usual look: nothing new, no fold
                return False
            batches = itertools.chain((first,), batches)
            entries_view.fold(itertools.chain.from_iterable(map(events, batches)), self.entries)
        except BaseException:
            self.loaded = False  # the state may be half-updated
            raise
        self.head, self.changed = ends[-1], None  # which entries the fold changed is not kept
        return True

    def unseen(self, records: Iterable[Record]) -> entries_view.Entries:
        """The entries that ``records`` (after :attr:`head`, shown to an append but not read yet) change,
        folded over the state; the state itself is left as it is until :meth:`advance`."""
        changed: entries_view.Entries = {}
        for record in records:
            key = record.event.key
            if record.event.type != "policy":  # no entry's event
                changed[key] = entries_view.apply(changed.get(key) or self.entries.get(key), record.event)
        return changed

    def take_changed(self) -> set[tuple[str, str]] | None:
        """The keys changed since the last call (``None``: not known, all may have); from now on none."""
        changed, self.changed = self.changed, set()
        return changed

    def advance(self, changed: entries_view.Entries, head: Head) -> None:
        """An append returned: the records up to ``head`` are durable and ``changed`` are the entries they
        (and the records it was shown) changed."""
        self.entries.update(changed)
        if self.changed is not None:
            self.changed.update(changed)
        self.head = head
