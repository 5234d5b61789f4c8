"""The work queue's pure rules: which entry is claimed next, backoff and max attempts, leases, the policy;
checked against a plain reference over random histories (hypothesis), and the retry policy's own rules."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    Worker,
    format_ts,
)
from ledger.queue import WorkIndex, attempt_text, worker_text
from ledger.retry import DEFAULT_POLICY, RetryPolicy, parse_duration, policy_text

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
KEYS = [("s", "a"), ("s", "b"), ("t", "a"), ("t", "b")]


def ts(seconds: float) -> str:
    return format_ts(T0 + dt.timedelta(seconds=seconds))


class History:
    """Events built by hand in log order (the envelope's chain is not what these rules read)."""

    def __init__(self) -> None:
        self.events: list[EventType] = []
        self.now = 0.0
        self.attempts: dict[tuple[str, str], int] = {}

    def add(self, cls: type, key: tuple[str, str] | None = None, **fields: object) -> EventType:
        envelope: dict[str, object] = {"v": 3, "seq": len(self.events) + 1, "ts": ts(self.now), "prev": ""}
        if key is not None:
            envelope.update(spot_id=key[0], era_id=key[1])
        event = cls(**envelope, **fields)
        self.events.append(event)
        return event  # type: ignore[no-any-return]


def reference(history: list[EventType], policy: RetryPolicy, now: str) -> tuple[list, list]:
    """The claimable keys at ``now`` in claim order, and the running attempts whose lease ran out, by a plain
    walk over each entry's events (no index, no heap)."""
    state: dict[tuple[str, str], dict[str, object]] = {}
    for event in history:
        if isinstance(event, Policy):
            policy = RetryPolicy.of(event)
            continue
        key = (event.spot_id, event.era_id)
        s = state.setdefault(key, {"tries": 0})
        if isinstance(event, Renewed):
            if s.get("status") == "generating" and s.get("attempt") == event.attempt:
                s["lease_from"], s["lease"] = event.ts, event.lease
            continue
        s["seq"], s["ts"] = event.seq, event.ts
        if isinstance(event, Generating):
            s["tries"] = 1 if s.get("status") in (None, "pending", "ready") else int(s["tries"]) + 1  # type: ignore[call-overload]
            s.update(status="generating", attempt=event.attempt, lease=event.lease, lease_from=event.ts)
        elif isinstance(event, Pending | Imported):
            s.update(status=event.new_status, tries=0, error=getattr(event, "error", None))
        elif isinstance(event, Ready):
            s["status"] = "ready"
        elif isinstance(event, Failed):
            s.update(status="failed", error=event.error)
    claimable = []
    expired = []
    for key, s in state.items():
        if s["status"] == "pending":
            claimable.append((s["ts"], s["seq"], key))
        elif s["status"] == "failed":
            tries = int(s["tries"])  # type: ignore[call-overload]
            error = str(s["error"])
            if tries < policy.max_attempts and not any(error.startswith(p) for p in policy.not_retried):
                wait = policy.backoff * policy.backoff_factor ** max(tries - 1, 0)
                if policy.backoff_max is not None:
                    wait = min(wait, policy.backoff_max)
                at = format_ts(dt.datetime.fromisoformat(str(s["ts"])) + dt.timedelta(seconds=wait))
                if at <= now:
                    claimable.append((at, s["seq"], key))
        elif s["status"] == "generating" and s.get("lease") is not None:
            until = dt.datetime.fromisoformat(str(s["lease_from"])) + dt.timedelta(seconds=float(s["lease"]))  # type: ignore[arg-type]
            if format_ts(until) <= now:
                expired.append(key)
    claimable = [c for c in claimable if c[0] <= now]
    return [key for _, _, key in sorted(claimable)], sorted(expired)


STEP = st.one_of(
    st.tuples(st.just("queue"), st.sampled_from(KEYS)),
    st.tuples(st.just("claim"), st.none()),
    st.tuples(st.just("fail"), st.sampled_from(KEYS), st.sampled_from(["GPU lost", "BadPrompt: no"])),
    st.tuples(st.just("ready"), st.sampled_from(KEYS)),
    st.tuples(st.just("renew"), st.sampled_from(KEYS)),
    st.tuples(st.just("wait"), st.floats(0, 50)),
    st.tuples(st.just("policy"), st.integers(1, 4), st.floats(0, 20)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60))
def test_claim_follows_the_rules_on_any_history(steps: list[tuple]) -> None:
    """Whatever happened before: the index's next claim is the reference's first claimable entry (never a
    ready or running one, the oldest eligible first, backoff and max attempts respected, errors not
    retried skipped), and the expired leases are exactly the reference's, never a current one."""
    h, index = History(), WorkIndex(RetryPolicy(max_attempts=3, backoff=10, not_retried=("BadPrompt",)))
    policy = index.policy
    status: dict[tuple[str, str], str] = {}
    folded = 0
    for step in steps:
        kind = step[0]
        if kind == "queue" and status.get(step[1]) in (None, "ready", "failed"):
            h.add(Pending, step[1], prompt="p", attempt=h.attempts.get(step[1]))
            status[step[1]] = "pending"
        elif kind == "claim":
            key = index.next(ts(h.now))
            expected, _ = reference(h.events, policy, ts(h.now))
            assert key == (expected[0] if expected else None)
            if key is not None:
                assert status[key] in ("pending", "failed")
                h.attempts[key] = h.attempts.get(key, 0) + 1
                h.add(Generating, key, prompt="p", attempt=h.attempts[key], lease=30.0)
                status[key] = "generating"
        elif kind in ("fail", "ready") and status.get(step[1]) == "generating":
            if kind == "fail":
                h.add(Failed, step[1], error=step[2], attempt=h.attempts[step[1]])
            else:
                h.add(Ready, step[1], local_path="v.mp4", attempt=h.attempts[step[1]])
            status[step[1]] = "failed" if kind == "fail" else "ready"
        elif kind == "renew" and status.get(step[1]) == "generating":
            h.add(Renewed, step[1], attempt=h.attempts[step[1]], lease=30.0)
        elif kind == "wait":
            h.now += step[1]
        elif kind == "policy":
            h.add(Policy, max_attempts=step[1], backoff=step[2], not_retried=("BadPrompt",))
            policy = RetryPolicy(max_attempts=step[1], backoff=step[2], not_retried=("BadPrompt",))
        index.fold(h.events[folded:])
        folded = len(h.events)
        now = ts(h.now)
        claimable, expired = reference(h.events, policy, now)
        assert sorted(index.expired(now)) == expired
        assert index.next(now) == (claimable[0] if claimable else None)
        for spot in ("s", "t"):
            mine = [k for k in claimable if k[0] == spot]
            assert index.next(now, spot=spot) == (mine[0] if mine else None)


def _fold(*events: EventType) -> WorkIndex:
    index = WorkIndex(RetryPolicy(max_attempts=2, backoff=10, backoff_factor=3))
    index.fold(events)
    return index


def test_a_failed_entry_waits_its_backoff_then_is_claimed_until_its_attempts_are_used() -> None:
    h = History()
    key = ("s", "a")
    h.add(Pending, key, prompt="p")
    h.add(Generating, key, prompt="p", attempt=1)
    h.now = 5
    h.add(Failed, key, error="GPU lost", attempt=1)
    index = _fold(*h.events)
    assert index.next(ts(14.999)) is None, "backoff of 10 s not passed"
    assert index.next(ts(15)) == key
    h.add(Generating, key, prompt="p", attempt=2)
    h.add(Failed, key, error="GPU lost", attempt=2)
    index.fold(h.events[-2:])
    assert index.next(ts(10_000)) is None, "2 attempts used: not claimed again"
    h.add(Pending, key, prompt="p", attempt=2)  # requeued
    index.fold(h.events[-1:])
    assert index.next(ts(5)) == key
    assert index.work(key).tries == 0 and index.work(key).attempt == 2  # type: ignore[union-attr]


def test_oldest_queued_first_and_a_ready_or_running_entry_is_never_claimed() -> None:
    h = History()
    for key in KEYS:
        h.add(Pending, key, prompt="p")
        h.now += 1
    h.add(Generating, KEYS[0], prompt="p", attempt=1)
    h.add(Ready, KEYS[0], local_path="v.mp4", attempt=1)
    h.add(Generating, KEYS[1], prompt="p", attempt=1)
    index = _fold(*h.events)
    assert index.next(ts(100)) == KEYS[2]
    assert index.next(ts(100), era="b") == KEYS[3]
    assert index.next(ts(100), spot="s") is None


def test_a_lease_is_current_until_it_runs_out_and_a_renewal_moves_it_on() -> None:
    h = History()
    key = ("s", "a")
    h.add(Generating, key, prompt="p", attempt=1, lease=30.0, worker=Worker(host="h", pid=7, name="w"))
    index = _fold(*h.events)
    assert index.expired(ts(29.999)) == []
    h.now = 20
    h.add(Renewed, key, attempt=1, lease=30.0)
    index.fold(h.events[-1:])
    assert index.expired(ts(49.999)) == [], "renewed at 20 s: current until 50 s"
    assert index.expired(ts(50)) == [key]
    h.add(Renewed, key, attempt=9, lease=300.0)  # another attempt's renewal moves nothing
    index.fold(h.events[-1:])
    assert index.expired(ts(50)) == [key]
    assert worker_text(index.work(key).worker) == "w@h:7"  # type: ignore[union-attr]


def test_a_policy_event_applies_from_its_place_in_the_log() -> None:
    h = History()
    key = ("s", "a")
    h.add(Generating, key, prompt="p", attempt=1)
    h.add(Failed, key, error="BadPrompt: empty", attempt=1)
    index = WorkIndex()
    index.fold(h.events)
    assert index.next(ts(60)) == key, "the default policy retries every error"
    h.add(Policy, max_attempts=5, backoff=0, not_retried=("BadPrompt",))
    index.fold(h.events[-1:])
    assert index.policy.not_retried == ("BadPrompt",) and index.policy_seq == 3
    assert index.next(ts(60)) is None


def test_the_retry_policy_rules() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=10, backoff_factor=2, backoff_max=25)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]
    assert policy.retry_at(ts(0), 3, "x") == ts(25)
    assert policy.retry_at(ts(0), 4, "x") is None
    assert RetryPolicy(backoff_max=None, backoff=1, backoff_factor=1000).delay(400) == float("inf")
    assert RetryPolicy(max_attempts=3, backoff=30.0, backoff_factor=2.0, backoff_max=3600.0) == DEFAULT_POLICY
    assert policy_text(DEFAULT_POLICY) == "max_attempts=3 backoff=30s factor=2 max=3600s"
    for bad in ({"max_attempts": 0}, {"backoff": -1}, {"backoff_factor": 0.5}, {"not_retried": ("",)}):
        with pytest.raises(InvalidEntryError):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    assert [parse_duration(t) for t in ("90", "1.5m", "250ms", "2h", ".5s")] == [90, 90, 0.25, 7200, 0.5]
    for bad_text in ("", "-1s", "1w", "s", "1e3"):
        with pytest.raises(InvalidEntryError):
            parse_duration(bad_text)


def test_attempt_text_shows_the_attempt_its_lease_and_worker() -> None:
    h = History()
    worker = Worker(host="gpu-host", pid=42, name="w1")
    event = h.add(Generating, ("s", "a"), prompt="p", attempt=2, lease=30.0, worker=worker)
    assert attempt_text(event) == " attempt=2 lease=30s worker=w1@gpu-host:42"  # type: ignore[arg-type]
    legacy = Generating(v=2, seq=1, ts=ts(0), spot_id="s", era_id="a", prev="", prompt="p")
    assert attempt_text(legacy) == ""


def test_a_claim_looks_at_the_top_of_the_queue_not_at_every_entry() -> None:
    """100,000 queued entries: each next() and fold of one claim stays far under a millisecond (it neither
    scans the entries nor reads the log; tests/bench/bench_claim.py measures it on real stores)."""
    h = History()
    for i in range(100_000):
        h.add(Pending, (f"spot-{i:06d}", "era"), prompt="p")
    index = WorkIndex()
    index.fold(h.events)
    h.now = 1
    took = []
    for _ in range(200):
        start = time.perf_counter()
        key = index.next(ts(h.now))
        assert key is not None
        index.fold([h.add(Generating, key, prompt="p", attempt=1, lease=60.0)])
        took.append(time.perf_counter() - start)
    took.sort()
    assert took[len(took) // 2] < 0.001, took[len(took) // 2]
