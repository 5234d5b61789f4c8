"""Pure folds over the ledger's events: entries, files, timeline, stats.

Each view folds the events that :meth:`ledger.backend.EventStore.read` yields and imports nothing of the
ledger but its event types; files are written only at the edge (:mod:`ledger.projector`).
"""
