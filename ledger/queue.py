"""The work queue: which entry a worker claims next, and which running attempts have lost their lease. Pure.

:class:`Work` is what the work loop knows of one entry, folded from its events (:func:`advance`);
:class:`WorkIndex` keeps every entry's :class:`Work` and, beside it, a heap of the claimable entries keyed
by *(eligible at, queued order)* and a heap of the leased running attempts keyed by when their lease runs
out, both brought forward as records are folded. A claim looks at the top of a heap (stale items, whose
entry changed since they were pushed, are dropped there): it neither reads the log nor scans the entries.

The rules (``docs/lifecycle.md``, *The work loop*):

- **Claimable**: an entry that is ``pending`` (eligible from the time it was queued), or ``failed`` with
  attempts left under the retry policy and an error it retries, eligible once its backoff has passed
  (:meth:`ledger.retry.RetryPolicy.retry_at`). Never a ``ready`` or ``generating`` one.
- **Order**: the earliest eligible first; at the same time, the one queued first (lower ``seq``).
- **Lease**: a running attempt started with a lease holds it until ``lease`` seconds after its
  ``generating`` event or its last ``renewed`` event. It is *current* until then; an attempt without a
  lease (started by ``generation()`` without one, or before format 3) holds none and is never expired here.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterable
from typing import Final

import msgspec

from ledger.errors import InvalidEntryError
from ledger.events import (
    EventType,
    Failed,
    Generating,
    Imported,
    Pending,
    Policy,
    Ready,
    Renewed,
    Status,
    Worker,
    crc32,
)
from ledger.retry import DEFAULT_POLICY, RetryPolicy, shift

__all__ = (
    "STATE_VERSION",
    "Work",
    "WorkIndex",
    "advance",
    "attempt_text",
    "claim_key",
    "decode_state",
    "encode_state",
    "lease_current",
    "lease_expiry",
    "worker_text",
)

Key = tuple[str, str]
Filter = tuple[str | None, str | None]
_ALL: Final[Filter] = (None, None)


class Work(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the work loop knows of one entry after its events so far (a list of its fields in the work
    state file, :func:`encode_state`)."""

    status: Status
    ts: str
    """The time of its last event (a renewal included): its ``updatedAt``."""
    seq: int
    """The ``seq`` of its last event but renewals: the order it was queued (or failed) in."""
    attempt: int | None
    """Its running or last attempt's number (as the entry's ``attempt``)."""
    tries: int
    """Attempts since it was last queued (``pending``), ready or imported."""
    error: str | None = None
    lease: float | None = None
    """The running attempt's lease in seconds (``None``: it holds none)."""
    worker: Worker | None = None
    """The running (or last) attempt's worker, when it said."""


def _number(event: Pending | Generating) -> int | None:
    if event.attempt is not None:
        return event.attempt
    return event.seq if event.v >= 2 and isinstance(event, Generating) else None


def advance(work: Work | None, event: EventType) -> Work | None:
    """The entry's :class:`Work` after ``event`` (one of its own; ``policy`` events change none)."""
    match event:
        case Generating():
            tries = 1 if work is None or work.status in ("pending", "ready") else work.tries + 1
            return Work(
                "generating", event.ts, event.seq, _number(event), tries, None, event.lease, event.worker
            )
        case Pending():
            return Work("pending", event.ts, event.seq, _number(event), 0)
        case Ready():
            tries = 0 if work is None else work.tries
            worker = None if work is None else work.worker
            return Work("ready", event.ts, event.seq, event.attempt, tries, None, None, worker)
        case Failed():
            tries = 0 if work is None else work.tries
            worker = None if work is None else work.worker
            return Work("failed", event.ts, event.seq, event.attempt, tries, event.error, None, worker)
        case Imported():
            return Work(event.status, event.ts, event.seq, None, 0, event.error)
        case Renewed():
            if work is None or work.status != "generating" or work.attempt != event.attempt:
                return work  # not this attempt's (the lifecycle refuses it; a replay keeps what it had)
            return Work(
                "generating", event.ts, work.seq, work.attempt, work.tries, None, event.lease, work.worker
            )
    return work


def claim_key(work: Work, policy: RetryPolicy) -> tuple[str, int] | None:
    """*(eligible at, queued order)* of a claimable entry; ``None`` if it is not claimable at any time."""
    if work.status == "pending":
        return (work.ts, work.seq)
    if work.status == "failed":
        at = policy.retry_at(work.ts, work.tries, work.error)
        return None if at is None else (at, work.seq)
    return None


def lease_expiry(work: Work) -> str | None:
    """When a running attempt's lease runs out (an event time); ``None``: not running, or no lease."""
    if work.status != "generating" or work.lease is None:
        return None
    return shift(work.ts, work.lease)


def lease_current(work: Work, now: str) -> bool:
    """Whether ``work`` is a running attempt whose lease has not run out at ``now``."""
    expiry = lease_expiry(work)
    return expiry is not None and now < expiry


class WorkIndex:
    """Every entry's :class:`Work`, the claimable ones and the leases in heaps, and the retry policy, as
    of the records folded (:meth:`fold`)."""

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.works: dict[Key, Work] = {}
        self.policy = policy
        self.policy_seq = 0
        """The ``seq`` of the ``policy`` event in force (0: none, the default)."""
        self._queues: dict[Filter, list[tuple[str, int, Key]]] = {_ALL: []}
        self._leases: list[tuple[str, int, Key]] = []

    @classmethod
    def restore(
        cls, works: dict[Key, Work], policy: RetryPolicy, policy_seq: int,
        heaps: tuple[list[tuple[str, int, Key]], list[tuple[str, int, Key]]] | None = None,
    ) -> WorkIndex:  # fmt: skip
        """The index of ``works`` under ``policy`` (set by event ``policy_seq``), with the unfiltered queue
        and the leases as ``heaps`` (each a list in heap order, as :meth:`heaps` gives them), or built
        again from ``works``."""
        index = cls(policy)
        index.works, index.policy_seq = works, policy_seq
        if heaps is None:
            leases = [(e, w.seq, key) for key, w in works.items() if (e := lease_expiry(w)) is not None]
            heapq.heapify(leases)
            heaps = (index._build(_ALL), leases)
        index._queues, index._leases = {_ALL: heaps[0]}, heaps[1]
        return index

    def heaps(self) -> tuple[list[tuple[str, int, Key]], list[tuple[str, int, Key]]]:
        """The unfiltered queue and the leases, each without its stale items and in heap order."""
        works, policy = self.works, self.policy
        queue = [i for i in self._queues[_ALL] if (w := works.get(i[2])) and claim_key(w, policy) == i[:2]]
        leases = [i for i in self._leases if (w := works.get(i[2])) and (lease_expiry(w), w.seq) == i[:2]]
        heapq.heapify(queue)
        heapq.heapify(leases)
        return queue, leases

    def fold(self, events: Iterable[EventType]) -> None:
        """Take in ``events`` (in log order)."""
        works = self.works
        for event in events:
            if isinstance(event, Policy):
                self._set_policy(RetryPolicy.of(event), event.seq)
                continue
            key = (event.spot_id, event.era_id)
            before = works.get(key)
            work = advance(before, event)
            if work is None or work is before:
                continue
            works[key] = work
            self._push(key, work)

    def _push(self, key: Key, work: Work) -> None:
        claim = claim_key(work, self.policy)
        if claim is not None:
            item = (claim[0], claim[1], key)
            for (spot, era), queue in self._queues.items():
                if (spot is None or spot == key[0]) and (era is None or era == key[1]):
                    heapq.heappush(queue, item)
        expiry = lease_expiry(work)
        if expiry is not None:
            heapq.heappush(self._leases, (expiry, work.seq, key))

    def _set_policy(self, policy: RetryPolicy, seq: int) -> None:
        """A new policy moves every failed entry's eligibility: the queues are built again (rare)."""
        self.policy, self.policy_seq = policy, seq
        self._queues = {where: self._build(where) for where in self._queues}

    def _build(self, where: Filter) -> list[tuple[str, int, Key]]:
        spot, era = where
        items = []
        for key, work in self.works.items():
            if (spot is None or spot == key[0]) and (era is None or era == key[1]):
                claim = claim_key(work, self.policy)
                if claim is not None:
                    items.append((claim[0], claim[1], key))
        heapq.heapify(items)
        return items

    def next(self, now: str, *, spot: str | None = None, era: str | None = None) -> Key | None:
        """The claimable entry to take at ``now`` (an event time), of ``spot`` and/or ``era`` when given:
        the earliest eligible, then the first queued; ``None`` if none is eligible yet."""
        top = self.top(now, 1, spot=spot, era=era)
        return top[0] if top else None

    def top(self, now: str, count: int, *, spot: str | None = None, era: str | None = None) -> list[Key]:
        """Up to ``count`` claimable entries eligible at ``now``, best first (see :meth:`next`). Stale heap
        items (their entry changed since) are dropped on the way: O(``count`` log n). The first call with
        a new filter builds its heap from the entries once; later ones are kept current by :meth:`fold`."""
        where = (spot, era)
        queue = self._queues.get(where)
        if queue is None:
            queue = self._queues[where] = self._build(where)
        taken: list[tuple[str, int, Key]] = []
        while queue and len(taken) < count:
            at, seq, key = queue[0]
            if at > now:
                break
            item = heapq.heappop(queue)
            work = self.works.get(key)
            if work is not None and claim_key(work, self.policy) == (at, seq) and item not in taken:
                taken.append(item)  # else the entry moved on since this was pushed: dropped
        for item in taken:  # still claimable until a claim records otherwise
            heapq.heappush(queue, item)
        return [key for _, _, key in taken]

    def outstanding(self) -> int:
        """How many entries still have work: running, or claimable now or later (a scan of every entry:
        for a worker deciding, when no claim is left, whether to wait or stop)."""
        policy = self.policy
        return sum(
            1 for w in self.works.values() if w.status == "generating" or claim_key(w, policy) is not None
        )

    def queued(self) -> int:
        """How many items the unfiltered queue holds (stale ones included): its size, for the benchmark."""
        return len(self._queues[_ALL])

    def expired(self, now: str) -> list[Key]:
        """The running attempts whose lease ran out by ``now``, the longest expired first."""
        found: list[Key] = []
        leases = self._leases
        while leases and leases[0][0] <= now:
            expiry, seq, key = heapq.heappop(leases)
            work = self.works.get(key)
            if work is not None and work.seq == seq and lease_expiry(work) == expiry and key not in found:
                found.append(key)
        for key in found:  # still running until the caller records them failed: kept in the heap
            work = self.works[key]
            heapq.heappush(leases, (lease_expiry(work) or "", work.seq, key))
        return found

    def work(self, key: Key) -> Work | None:
        return self.works.get(key)


STATE_VERSION: Final = 1
"""The format of the work state file (:func:`encode_state`)."""


Place = tuple[int, str, str, int]
"""A place in the log as the work state keeps it: ``seq``, hash, time, the store's bookmark (a
:class:`ledger.backend.Head`'s fields)."""


class _Saved(msgspec.Struct, frozen=True, array_like=True):
    head: Place
    policy: tuple[int, float, float, float | None, tuple[str, ...]]
    policy_seq: int
    works: list[tuple[str, str, Work]]
    queue: list[tuple[str, int, tuple[str, str]]]
    leases: list[tuple[str, int, tuple[str, str]]]


class _Header(msgspec.Struct, frozen=True):
    v: int
    size: int
    crc32: str


_header_decoder = msgspec.json.Decoder(_Header)
_state_decoder = msgspec.json.Decoder(_Saved)


def encode_state(index: WorkIndex, head: Place) -> bytes:
    """The bytes of the work state file: the index as of ``head`` (every entry's :class:`Work` and the
    policy), a cache that spares a fresh handle reading the whole log. One header line (format, size and
    CRC-32 of the body), then the body (JSON)."""
    p = index.policy
    policy = (p.max_attempts, float(p.backoff), float(p.backoff_factor), p.backoff_max, p.not_retried)
    works = [(spot, era, work) for (spot, era), work in index.works.items()]
    place = (head[0], head[1], head[2], head[3])
    body = msgspec.json.encode(_Saved(place, policy, index.policy_seq, works, *index.heaps()))
    header = msgspec.json.encode(_Header(STATE_VERSION, len(body), f"{crc32(body):08x}"))
    return header + b"\n" + body


def decode_state(data: bytes | bytearray) -> tuple[WorkIndex, Place] | None:
    """The index and the head it is as of, from :func:`encode_state`'s bytes; ``None`` for anything else
    (another format, a torn or damaged file, values no log could have made). Whether the head is the
    store's is for the caller to check before it trusts any of it."""
    end = data.find(b"\n")
    first, body = memoryview(data)[:end], memoryview(data)[end + 1 :]  # no copy of the body
    paused = gc.isenabled()
    gc.disable()  # hundreds of thousands of new containers, none in a cycle: no collection passes over them
    try:
        header = _header_decoder.decode(first)
        whole = header.size == len(body) and header.crc32 == f"{crc32(body):08x}"
        if end < 0 or header.v != STATE_VERSION or not whole:
            return None
        saved = _state_decoder.decode(body)
        policy = RetryPolicy(*saved.policy)
        works = {(spot, era): work for spot, era, work in saved.works}
    except (msgspec.DecodeError, InvalidEntryError, TypeError):
        return None
    finally:
        if paused:
            gc.enable()
    if len(works) != len(saved.works) or saved.head[0] < 0:
        return None
    return WorkIndex.restore(works, policy, saved.policy_seq, (saved.queue, saved.leases)), saved.head


def worker_text(worker: Worker | None) -> str:
    """``name@host:pid`` (the parts the worker gave)."""
    if worker is None:
        return ""
    text = worker.name or ""
    if worker.host:
        text += f"@{worker.host}"
    if worker.pid:
        text += f":{worker.pid}"
    return text


def attempt_text(event: Pending | Generating) -> str:
    """What a ``pending``/``generating`` event of format 3 says of its attempt, for a history line:
    `` attempt=2 lease=30s worker=gpu-1@host-a:4242`` (empty for older events)."""
    text = ""
    if event.attempt is not None:
        text += f" attempt={event.attempt}" if isinstance(event, Generating) else f" after={event.attempt}"
    if isinstance(event, Generating):
        if event.lease is not None:
            text += f" lease={event.lease:g}s"
        if event.worker is not None:
            text += f" worker={worker_text(event.worker)}"
    return text
