"""Views folded from the ledger's event stream.

Each view is a pure fold over the events that :meth:`ledger.log.EventLog.scan` yields; files are written
only at the edge (:mod:`projections.snapshot`). The store API (:mod:`ledger.store`) is the one caller that
keeps the snapshot current.
"""
