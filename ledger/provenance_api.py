"""The store API's provenance side: what made each video and what it cost, recall and reuse.

:class:`ProvenanceAPI` is a part of :class:`ledger.Ledger` (which inherits it), kept in a room of its
own: each method reads through the store's ``events()``, plans with :mod:`ledger.reuse`, and commits
through the ledger's writer, as the façade's other methods do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ledger import requests
from ledger import reuse as reuse_plans
from ledger.errors import InvalidEntryError
from ledger.events import Provenance, VideoMetadata, Worker, validate_entry
from ledger.media import recorded_file_problem
from ledger.provenance import event_records
from projections import provenance as provenance_view
from projections import stats as stats_view

if TYPE_CHECKING:
    from ledger.projector import Projector
    from ledger.stores import EventStore
    from ledger.writer import Writer

__all__ = ("ProvenanceAPI",)

log = logging.getLogger("ledger")


class ProvenanceAPI:
    """:meth:`provenance`, :meth:`stats_by`, :meth:`requeue_model` and :meth:`reuse` of a ledger."""

    # the ledger's (declared for the type checker; :class:`ledger.Ledger` sets and defines them)
    _store: EventStore
    _writer: Writer
    _projector: Projector
    directory: Path
    get_video_metadata: Callable[[str, str], VideoMetadata | None]

    def requeue_model(
        self, name: str, *, version: str | None = None, dry_run: bool = False
    ) -> list[provenance_view.AttemptRecord]:
        """Recall a model: put back to ``pending`` every entry whose current video was made by model
        ``name`` (of ``version``, if given), its ``localPath`` cleared and the reason in its history (the
        ``pending`` event's ``reason``). Returns the attempts whose videos were withdrawn, ordered by entry;
        with ``dry_run``, the ones that would be, recording nothing. Each entry is re-checked under the
        writer lock: one that changed meanwhile is left alone and not returned."""
        found = reuse_plans.recalled(self._store.events(), name, version)
        if dry_run or not found:
            return found
        requeued: set[tuple[str, str]] = set()
        self._writer.commit([(r.key, reuse_plans.requeue_if_current(r, requeued)) for r in found])
        return [r for r in found if r.key in requeued]

    def reuse(
        self, spot_id: str, era_id: str, prompt: str, *, provenance: Provenance, worker: Worker | None = None
    ) -> VideoMetadata | None:
        """Take an existing video instead of generating one: if a current video was made with this
        provenance (same model, version and weights, seed, parameters, final prompt, inputs:
        :func:`projections.provenance.fingerprint`) and its file is still as recorded, record an attempt
        for ``(spot_id, era_id)`` that is ``ready`` with that video at once (``generating`` then ``ready``
        naming the attempt it reuses, in one commit) and return the entry. ``None``: nothing to reuse,
        nothing recorded. A record without a model or a seed matches nothing (a random seed makes another
        video): :class:`~ledger.errors.InvalidEntryError`."""
        found = reuse_plans.reusable_for(self._store.events(), prompt, provenance)
        if found is None:
            return None
        problem = recorded_file_problem(
            found.local_path or "", found.size, found.sha256, ops=self._projector.ops, root=self.directory
        )
        if problem is not None:
            log.warning("not reusing %s/%s: %s: %s", found.spot_id, found.era_id, found.local_path, problem)
            return None
        key = requests.given_ids(spot_id, era_id)
        fields = {"spotId": spot_id, "eraId": era_id, "prompt": prompt, "status": "generating"}
        records = event_records(provenance=provenance, worker=worker)
        plans = reuse_plans.take_video(found, validate_entry(fields), records)
        return self._writer.commit([(key, plan) for plan in plans])[-1].entry

    def stats_by(self, by: stats_view.GroupBy) -> list[stats_view.GroupStats]:
        """The attempts by model, era or spot (``by``): how many, how they ended, the GPU-seconds they
        took and the share of it spent on attempts that failed (:func:`projections.stats.stats_by`)."""
        if by not in stats_view.GROUP_BY:
            raise InvalidEntryError(f"stats by {by!r}: give one of {', '.join(stats_view.GROUP_BY)}")
        return stats_view.stats_by(self._store.events(), by)

    def provenance(self, spot_id: str, era_id: str) -> list[provenance_view.AttemptRecord]:
        """Every attempt of ``(spot_id, era_id)``, the current one first: what made each video (model,
        seed, parameters, prompt, inputs), who ran it, what it cost, how it ended. Raises
        :class:`~ledger.errors.EntryNotFoundError` for an entry the ledger does not hold."""
        entry = self.get_video_metadata(spot_id, era_id)
        if entry is None:
            raise requests.no_entry(spot_id, era_id)
        return provenance_view.provenance(self._store.events(), entry.spot_id, entry.era_id)
