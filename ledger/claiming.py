"""The work loop on a ledger: claim the next job, renew its lease, reap expired leases, requeue, and the
ledger's retry policy. The rules are :mod:`ledger.queue`'s and :mod:`ledger.retry`'s; this room keeps a
:class:`~ledger.queue.WorkIndex` current from the store and records through the handle's
:class:`~ledger.writer.Writer`.

A claim is atomic across processes and hosts on every store: it is a commit like any other, whose plans run
under the store's lock (:meth:`ledger.backend.EventStore.append`) against the entries as they are there,
records included that this handle had not read. It offers the best few entries in order; the first that is
exactly as the index saw it (status, last event time, attempt) is taken, the others record nothing. If none
is, the index reads the records it missed and the claim picks again.

The index is built once per handle by reading the log (the work state, tries and leases, is not in the
snapshot); each later claim reads only the records after the last one it read.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Final, Protocol

import msgspec

from ledger import lifecycle, requests
from ledger.backend import GENESIS, Head
from ledger.errors import IllegalTransitionError, InvalidEntryError, LedgerError, StaleHeadError
from ledger.events import (
    EventType,
    Policy,
    Provenance,
    Renewed,
    VideoMetadata,
    Worker,
    format_ts,
    validate_entry,
)
from ledger.fileops import atomic_write
from ledger.layout import CHECKPOINT_NAME
from ledger.pipeline import Job, Recorder, Signer
from ledger.provenance import event_records, this_worker
from ledger.queue import Work, WorkIndex, claim_key, decode_state, encode_state, lease_current, lease_expiry
from ledger.retry import RetryPolicy, parse_duration
from ledger.writer import POLICY_KEY, Writer
from projections.stats import describe_span

__all__ = (
    "DEFAULT_LEASE",
    "MAX_LEASE",
    "POLICY_KEY",
    "WORK_STATE_NAME",
    "Claims",
    "WorkLoop",
    "check_lease",
)

log = logging.getLogger("ledger")

DEFAULT_LEASE: Final = 60.0
"""Seconds of a claimed attempt's lease unless the claim says otherwise."""
MAX_LEASE: Final = 7 * 86400.0
_PICKS: Final = 100
"""How often a claim picks again after every entry it offered was taken by other claimers first."""
_OFFERED: Final = 16
"""Entries one claim's commit offers, best first: it takes the first of them still as the index saw it,
so claimers that picked the same top entry at once do not all go round again (one commit, not one each)."""
WORK_STATE_NAME: Final = CHECKPOINT_NAME + ".work"
"""The work state file beside the checkpoint: the work loop's index as of a place in the log, so that a
fresh handle's first claim reads only the log after it (:meth:`Claims.sync`)."""
_SAVE_AFTER: Final = 2048
"""A sync that folded at least this many records (a fresh handle catching up) saves the work state."""
_MAX_STATE: Final = 1 << 30


def check_lease(lease: float | str | None) -> float:
    """A lease in seconds (a number, or a duration such as ``"90s"``), checked: more than 0, at most a
    week; ``None``: :data:`DEFAULT_LEASE`."""
    if lease is None:
        return DEFAULT_LEASE
    seconds = parse_duration(lease) if isinstance(lease, str) else float(lease)
    if not 0 < seconds <= MAX_LEASE:
        raise InvalidEntryError(f"a lease is more than 0 s and at most 7 days, not {lease!r}")
    return seconds


class Claims:
    """The work loop of one ledger handle: its writer, and the recorder its jobs end through."""

    def __init__(self, writer: Writer, recorder: Recorder) -> None:
        self.writer, self.recorder = writer, recorder
        self.index = WorkIndex()
        self.head: Head = GENESIS
        self._seeded = False
        self.state_path = writer.directory / WORK_STATE_NAME

    def sync(self) -> None:
        """Fold the records after :attr:`head` into the index. The first call starts from the work state
        file where the store holds its place exactly (:meth:`seed`), else from the start; one that folded
        many records (:data:`_SAVE_AFTER`) saves the state for the next fresh handle."""
        if not self._seeded:
            self._seeded = True
            self.seed()
        store, before = self.writer.store, self.head.seq
        try:
            batches = list(store.read(self.head))
        except StaleHeadError:  # the store was replaced under this handle: start again
            self.index, self.head, before = WorkIndex(), GENESIS, 0
            batches = list(store.read(GENESIS))
        for batch in batches:
            self.index.fold(batch.events)
            self.head = batch.end
        if self.head.seq - before >= _SAVE_AFTER and not self.writer.readonly:
            self.save()

    def seed(self) -> None:
        """Start the index from the work state file if it is whole (its CRC-32) and the store holds the
        record it is as of exactly (``seq``, hash and time, as a checkpoint is checked: its records before
        are then the ones the state was folded from, the chain says); else leave it empty. A cache: any
        doubt reads the log instead."""
        try:
            restored = decode_state(self.writer.ops.read_regular(self.state_path, _MAX_STATE))
        except OSError:
            return
        if restored is None:
            return
        index, place = restored
        head = Head(*place)
        try:
            found = self.writer.store.at(head)
        except LedgerError:
            return  # the full read reports what is wrong with the store
        if found is not None and found[:3] == head[:3]:
            self.index, self.head = index, found

    def save(self) -> None:
        """Write the work state file as of :attr:`head` (no fsync: a cache, checked when read); a failure
        is logged, not raised (the next fresh handle reads the log)."""
        try:
            atomic_write(
                self.writer.ops, self.state_path, encode_state(self.index, self.head), label="work_state",
                durable=False,
            )  # fmt: skip
        except (OSError, LedgerError) as exc:
            log.warning("could not save the work state %s: %s", self.state_path, exc)

    def policy(self) -> tuple[RetryPolicy, int]:
        """The retry policy in force and the ``seq`` of the ``policy`` event that set it (0: the default)."""
        with self.writer.mutex:
            self.sync()
            return self.index.policy, self.index.policy_seq

    def claim(
        self, worker: Worker, lease: float, spot: str | None, era: str | None, *,
        provenance: Provenance | None = None, signer: Signer | None = None,
    ) -> Job | None:  # fmt: skip
        """See :meth:`WorkLoop.claim`."""
        writer = self.writer
        records = event_records(provenance=provenance, worker=worker)  # checked before the lock
        made = records.get("provenance")
        with writer.mutex:
            for _ in range(_PICKS):
                self.sync()
                now = format_ts(writer.clock())
                if self.index.expired(now):
                    self.reap_expired(now)
                    continue
                keys = self.index.top(now, _OFFERED, spot=spot, era=era)
                if not keys:
                    return None
                took: list[tuple[str, str]] = []
                batch = [(key, self._take(key, keys[0], took, lease, records)) for key in keys]
                outcomes = writer.commit(batch)
                for entry, recorded in outcomes:
                    if recorded and entry is not None and entry.attempt is not None:
                        return Job(
                            self.recorder, entry.spot_id, entry.era_id, entry.attempt, lease=lease,
                            provenance=made, signer=signer,
                        )  # fmt: skip
            return None

    def _take(
        self,
        key: tuple[str, str],
        first: tuple[str, str],
        took: list[tuple[str, str]],
        lease: float,
        records: dict[str, object],
    ) -> requests.Plan:
        """The plan that starts ``key``'s attempt if no entry offered before it in this commit was taken
        and the entry is as the index saw it (else it records nothing). ``took`` holds the one taken in
        this run of the plans (a store may run them twice; each run starts with ``first``'s plan)."""
        seen = self.index.work(key)
        assert seen is not None

        def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
            if key == first:
                took.clear()
            if took or current is None or not _as_seen(current, seen):
                return None  # one taken already, or another writer got there first
            start = msgspec.structs.replace(current, status="generating", error=None, attempt=None)
            change = lifecycle.plan_change(current, validate_entry(start))
            assert change is not None  # pending or failed to generating is a change
            change.fields.update(records, lease=lease)
            took.append(key)
            return change

        return plan

    def settled(self, spot_id: str, era_id: str) -> bool:
        """Whether the entry is done as far as the work loop goes: ``ready``, or ``failed`` with no attempt
        left under the retry policy (or an error it does not retry); ``False`` for one that is not there."""
        with self.writer.mutex:
            self.sync()
            work = self.index.work(requests.key(spot_id, era_id))
        if work is None:
            return False
        return work.status == "ready" or (
            work.status == "failed" and claim_key(work, self.index.policy) is None
        )

    def heartbeat(self, spot_id: str, era_id: str, attempt: int, lease: float | None) -> None:
        """See :meth:`WorkLoop.heartbeat`."""
        key = requests.given_ids(spot_id, era_id)
        with self.writer.mutex:
            if lease is None:
                self.sync()
                work = self.index.work(requests.key(spot_id, era_id))
                lease = work.lease if work is not None and work.lease is not None else DEFAULT_LEASE

        def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is None:
                raise requests.no_entry(spot_id, era_id)
            if current.status != "generating" or current.attempt != attempt:
                running = (
                    f"attempt {current.attempt} is running"
                    if current.status == "generating"
                    else (f"the entry is {current.status}")
                )
                raise IllegalTransitionError(
                    f"{spot_id}/{era_id}: cannot renew the lease of attempt {attempt}: it is not the entry's "
                    f"running attempt ({running}); nothing was recorded",
                    current=current.status,
                    requested="generating",
                )
            return lifecycle.Change(Renewed, {"attempt": attempt, "lease": lease})

        self.writer.commit_one(key, plan)

    def reap_expired(self, now: str) -> list[VideoMetadata]:
        """Record ``failed`` for every running attempt whose lease ran out by ``now`` (never one whose lease
        is current: each is checked again under the store's lock). Returns the entries it failed."""
        with self.writer.mutex:
            self.sync()
            batch = []
            for key in self.index.expired(now):
                seen = self.index.work(key)
                assert seen is not None
                batch.append((key, _reap_lease(seen, now)))
            outcomes = self.writer.commit(batch) if batch else []
            self.sync()
            return [o.entry for o in outcomes if o.recorded and o.entry is not None]

    def set_policy(self, policy: RetryPolicy) -> int:
        """See :meth:`WorkLoop.set_retry_policy`."""
        with self.writer.mutex:
            self.sync()
            if self.index.policy_seq and self.index.policy == policy:
                return self.index.policy_seq
            self.writer.commit([(POLICY_KEY, lambda current: lifecycle.Change(Policy, policy.fields()))])
            assert self.writer.last_seq is not None
            return self.writer.last_seq


def _reap_lease(seen: Work, now: str) -> requests.Plan:
    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None or not _as_seen(current, seen) or lease_current(seen, now):
            return None  # renewed or ended meanwhile
        error = f"abandoned: the lease of attempt {current.attempt} ran out at {lease_expiry(seen)}"
        return lifecycle.plan_change(current, msgspec.structs.replace(current, status="failed", error=error))

    return plan


def _requeue(spot_id: str, era_id: str) -> requests.Plan:
    def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
        if current is None:
            raise requests.no_entry(spot_id, era_id)
        if current.status == "generating":
            raise IllegalTransitionError(
                f"{spot_id}/{era_id}: attempt {current.attempt} is running; end it first (reap, or record it "
                "failed); nothing was recorded",
                current="generating",
                requested="pending",
            )
        if current.status == "pending":
            return None  # already queued: nothing to record
        queued = msgspec.structs.replace(current, status="pending", error=None, attempt=None)
        return lifecycle.plan_change(current, validate_entry(queued))

    return plan


def _as_seen(current: VideoMetadata, seen: Work) -> bool:
    """Whether the entry under the lock is as the index saw it (no event on it since)."""
    return current.status == seen.status and current.updated_at == seen.ts and current.attempt == seen.attempt


class _Host(Recorder, Protocol):
    """What the work loop's methods need of the ledger handle they are mixed into."""

    _writer: Writer
    _claims: Claims | None

    @property
    def claims(self) -> Claims: ...

    def get_all_video_metadata(self) -> list[VideoMetadata]: ...

    def history(
        self, spot_id: str | None = None, era_id: str | None = None, *, type: str
    ) -> Iterable[EventType]: ...


class WorkLoop:
    """The work loop's part of :class:`~ledger.store.Ledger` (mixed in): ``claim``, ``heartbeat``,
    ``reap``, ``requeue`` and the retry policy (``docs/lifecycle.md``, *The work loop*)."""

    _claims: Claims | None = None

    @property
    def claims(self: _Host) -> Claims:
        """This handle's work loop: its index of the queue, leases and policy."""
        with self._writer.mutex:
            if self._claims is None:
                self._claims = Claims(self._writer, self)
            return self._claims

    def claim(
        self: _Host,
        *,
        worker: str | Worker | None = None,
        lease: float | str | None = None,
        spot: str | None = None,
        era: str | None = None,
        provenance: Provenance | None = None,
        signer: Signer | None = None,
    ) -> Job | None:
        """Take the next job: start an attempt on the entry that waited longest among those that are
        ``pending``, or ``failed`` with attempts left under the retry policy and their backoff passed;
        ``None`` when there is none (yet). ``spot``/``era`` take only that spot's or era's entries.

        Atomic across processes and hosts on every store: two claimers never start the same entry. The
        attempt records ``worker`` (a name, or a :class:`~ledger.events.Worker`; host and pid are this
        process's) and holds a lease of ``lease`` seconds (or a duration such as ``"90s"``; default
        :data:`DEFAULT_LEASE`), which the returned job renews while its block runs::

            while (job := ledger.claim(worker="gpu-1")) is not None:
                with job:
                    job.ready(render(job.spot_id, job.era_id))

        ``provenance`` (what the worker knows before it knows the job: its model, say) goes on the attempt's
        ``generating`` event, and ``job.ready(provenance=...)`` completes it; with a ``signer``, ``ready``
        embeds the disclosure first (as :meth:`generation` does).

        A running attempt whose lease ran out is first recorded ``failed`` (as :meth:`reap` does)."""
        who = worker if isinstance(worker, Worker) else this_worker(worker or "worker")
        return self.claims.claim(who, check_lease(lease), spot, era, provenance=provenance, signer=signer)

    def heartbeat(
        self: _Host, spot_id: str, era_id: str, attempt: int, *, lease: float | str | None = None
    ) -> None:
        """Renew running attempt ``attempt``'s lease (a ``renewed`` event) for ``lease`` seconds (default:
        the lease it holds). A job's block does this by itself; shell workers call it (``video-ledger
        heartbeat``). Raises :class:`~ledger.errors.IllegalTransitionError` (nothing recorded) if
        ``attempt`` is not the entry's running attempt."""
        seconds = None if lease is None else check_lease(lease)
        self.claims.heartbeat(spot_id, era_id, attempt, seconds)

    def reap(
        self: _Host, older_than: dt.timedelta | None = None, *, now: dt.datetime | None = None
    ) -> list[VideoMetadata]:
        """Mark ``failed`` every running attempt whose lease ran out, and (given ``older_than``) every other
        entry that has been ``generating`` for longer than ``older_than`` without any event (its worker
        died), but never an attempt whose lease is current. Returns the entries it failed.

        Safe beside live workers: each entry is re-checked under the writer lock, so a worker that records
        ``ready`` first wins (the entry is left alone), and a worker that comes second gets
        :class:`~ledger.errors.IllegalTransitionError`."""
        if older_than is not None and older_than <= dt.timedelta(0):
            raise InvalidEntryError(f"older_than must be positive, not {older_than}")
        claims = self.claims
        moment = format_ts(now or self._writer.clock())
        reaped = claims.reap_expired(moment)
        if older_than is None:
            return reaped
        cutoff = format_ts((now or self._writer.clock()) - older_than)
        leased = {key for key, work in claims.index.works.items() if lease_current(work, moment)}
        generating = [
            e for e in self.get_all_video_metadata() if e.status == "generating" and e.key not in leased
        ]
        span = describe_span(older_than.total_seconds())
        batch = requests.reap(generating, cutoff, span, lambda: self.history(type="imported"))
        return reaped + [o.entry for o in self._writer.commit(batch) if o.recorded and o.entry is not None]

    def requeue(self: _Host, spot_id: str, era_id: str) -> VideoMetadata:
        """Queue the entry again (``pending``; its attempts start over under the retry policy): a failed
        entry that used up its attempts, or a ready one to make again. A running attempt is refused
        (:class:`~ledger.errors.IllegalTransitionError`); a pending entry records nothing."""
        return self._writer.commit_one(requests.given_ids(spot_id, era_id), _requeue(spot_id, era_id))

    def retry_policy(self: _Host) -> RetryPolicy:
        """The ledger's retry policy: the last ``policy`` event's, else
        :data:`~ledger.retry.DEFAULT_POLICY`."""
        return self.claims.policy()[0]

    def set_retry_policy(self: _Host, policy: RetryPolicy) -> int:
        """Record ``policy`` as the retry policy of every worker of this ledger; returns its event's
        ``seq`` (the one in force, if it is the same)."""
        return self.claims.set_policy(policy)
