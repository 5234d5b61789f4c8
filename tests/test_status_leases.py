"""``status`` counts the running attempts whose lease ran out and that nothing reaped (the work loop's
index decides, as a claim would), reads the log back no further than the oldest running attempt's start,
and calls an expired lease a problem."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ledger import Ledger
from ledger.health import status

from .conftest import FakeClock, Run, entry

START = dt.datetime(2026, 11, 24, 9, 0, 0, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return START + dt.timedelta(seconds=seconds)


def _queue(ledger: Ledger, *spots: str) -> None:
    for spot in spots:
        ledger.set_video_metadata(entry(spot, "era", "pending"))


def test_an_expired_lease_is_counted_and_is_a_problem_until_reaped(ledger_dir: Path, run_cli: Run) -> None:
    clock = FakeClock(START)
    with Ledger(ledger_dir, clock=clock) as ledger:
        _queue(ledger, *(f"old-{i}" for i in range(50)))  # before every attempt: never read back to
        _queue(ledger, "a", "b")
        ledger.set_video_metadata(entry("c", "era", "generating"))  # no lease: never expires
        job_a = ledger.claim(worker="gpu-1", lease=30, spot="a")
        job_b = ledger.claim(worker="gpu-2", lease=30, spot="b")
        assert job_a is not None and job_b is not None
        clock.now = _at(20)
        ledger.heartbeat("b", "era", job_b.attempt, lease=300)  # b renewed: current until 20 + 300 s
        _queue(ledger, *(f"new-{i}" for i in range(20)))
    early = status(ledger_dir, now=_at(10))
    assert early.healthy and (early.live_attempts, early.expired_leases) == (3, 0)
    later = status(ledger_dir, now=_at(100), max_lag=1e9)
    assert (later.live_attempts, later.expired_leases) == (3, 1)
    assert not later.healthy
    assert "1 running attempt outlived the lease and nothing reaped it" in later.problems[0]
    assert status(ledger_dir, now=_at(1000), max_lag=1e9).expired_leases == 2
    with Ledger(ledger_dir, clock=FakeClock(_at(1000))) as ledger:
        assert {e.spot_id for e in ledger.reap(now=_at(1000))} == {"a", "b"}
    reaped = status(ledger_dir, now=_at(1000), max_lag=1e9)
    assert reaped.healthy and (reaped.live_attempts, reaped.expired_leases) == (1, 0)


def test_leases_taken_after_the_checkpoint_are_counted_from_the_tail(ledger_dir: Path) -> None:
    with Ledger(ledger_dir, clock=FakeClock(START)) as ledger:
        _queue(ledger, "a", "b")
        assert ledger.claim(worker="gpu-1", lease=30, spot="a") is not None
    with Ledger(ledger_dir, clock=FakeClock(_at(5)), projection="deferred") as deferred:
        assert deferred.claim(worker="gpu-2", lease=60, spot="b") is not None  # after the checkpoint
    found = status(ledger_dir, now=_at(50), max_lag=1e9)
    assert found.lag_events == 1 and (found.live_attempts, found.expired_leases) == (2, 1)
    assert status(ledger_dir, now=_at(100), max_lag=1e9).expired_leases == 2


def test_it_reads_back_no_further_than_the_oldest_running_attempt(ledger_dir: Path) -> None:
    """A damaged line before every running attempt started is never met: ``status`` does not read it."""
    with Ledger(ledger_dir, clock=FakeClock(START)) as ledger:
        _queue(ledger, *(f"old-{i}" for i in range(5)), "a")
        assert ledger.claim(worker="gpu-1", lease=30, spot="a") is not None
        _queue(ledger, "z")
    log = ledger_dir / "events.jsonl"
    data = bytearray(log.read_bytes())
    data[data.index(b"\n") + 20] ^= 1  # line 2, long since in the snapshot
    log.write_bytes(bytes(data))
    found = status(ledger_dir, now=_at(100), max_lag=1e9)
    assert (found.live_attempts, found.expired_leases) == (1, 1)


def test_status_json_says_expired_leases_and_exits_1(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir, clock=FakeClock(START)) as ledger:  # far in the past: the lease ran out
        _queue(ledger, "a")
        assert ledger.claim(worker="gpu-1", lease=30) is not None
    code, out, _ = run_cli("status", "--json", "--max-lag", "1e9")
    found = json.loads(out)
    assert code == 1 and found["expiredLeases"] == 1 and found["liveAttempts"] == 1
    assert any("outlived the lease" in p for p in found["problems"])
    code, out, _ = run_cli("status", "--max-lag", "1e9")
    assert code == 1 and "1 live attempt (1 of them with an expired lease)" in out
