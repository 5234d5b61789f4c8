"""The work loop on a real ledger: claim, its job's block and lease, heartbeat, reap by lease, requeue, the
retry policy kept in the log, generation() on a ready entry; and worker processes claiming at once on the
file store and on PostgreSQL (tests/bench/bench_claim.py at a tiny size)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.bench.bench_claim as bench_claim
from ledger import (
    AlreadyReadyError,
    Generating,
    IllegalTransitionError,
    Ledger,
    Renewed,
    RetryPolicy,
    Worker,
)
from ledger.errors import EntryNotFoundError, InvalidEntryError

from .conftest import ROOT, FakeClock, files_state


def _queue(ledger: Ledger, *spots: str, era: str = "e") -> None:
    ledger.set_many([{"spotId": s, "eraId": era, "prompt": f"{s} p", "status": "pending"} for s in spots])


def _video(directory: Path, name: str) -> Path:
    path = directory / "videos" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"video " + name.encode())
    return path


def test_claim_takes_the_oldest_queued_entry_and_none_when_nothing_is_left(ledger: Ledger) -> None:
    _queue(ledger, "b", "a")
    _queue(ledger, "c")
    ledger.set_video_metadata({"spotId": "r", "eraId": "e", "prompt": "p", "status": "generating"})
    taken = []
    while (job := ledger.claim(worker="w1")) is not None:
        with job:
            job.ready(_video(ledger.directory, f"{job.spot_id}.mp4"))
        taken.append((job.spot_id, job.attempt))
    assert taken == [("b", 1), ("a", 1), ("c", 1)], "queued order (one commit: the order it was given)"
    assert ledger.claim() is None
    started = [e for e in ledger.history() if isinstance(e, Generating) and e.worker is not None]
    assert {(e.worker.name, e.worker.pid > 0, bool(e.worker.host)) for e in started} == {("w1", True, True)}
    assert all(e.lease == 60.0 for e in started), "the default lease"


def test_claim_filters_by_spot_or_era(ledger: Ledger) -> None:
    _queue(ledger, "a", "b", era="x")
    _queue(ledger, "a", era="y")
    job = ledger.claim(era="y")
    assert job is not None and (job.spot_id, job.era_id) == ("a", "y")
    job = ledger.claim(spot="b")
    assert job is not None and (job.spot_id, job.era_id) == ("b", "x")
    assert ledger.claim(spot="b") is None
    job = ledger.claim()
    assert job is not None and (job.spot_id, job.era_id) == ("a", "x")


def test_failed_entries_are_retried_by_the_policy_in_the_log_then_stay_failed_until_requeued(
    ledger_dir: Path, clock: FakeClock
) -> None:
    first = Ledger(ledger_dir, clock=clock)
    _queue(first, "s")
    seq = first.set_retry_policy(RetryPolicy(max_attempts=2, backoff=60, not_retried=("BadPrompt",)))
    assert first.set_retry_policy(RetryPolicy(max_attempts=2, backoff=60, not_retried=("BadPrompt",))) == seq
    other = Ledger(ledger_dir, clock=clock)  # another worker's handle: the same policy, from the log
    assert other.retry_policy() == RetryPolicy(max_attempts=2, backoff=60, not_retried=("BadPrompt",))
    job = other.claim()
    assert job is not None
    with pytest.raises(RuntimeError), job:
        raise RuntimeError("GPU lost")
    assert first.claim() is None, "its backoff (60 s) has not passed"
    clock.now += dt.timedelta(seconds=61)
    job = first.claim()
    assert job is not None and job.attempt == 2
    with pytest.raises(RuntimeError), job:
        raise RuntimeError("GPU lost again")
    clock.now += dt.timedelta(hours=5)
    assert other.claim() is None, "both attempts used: it stays failed"
    entry = other.get_video_metadata("s", "e")
    assert entry is not None and entry.status == "failed" and entry.attempt == 2
    requeued = other.requeue("s", "e")
    assert requeued.status == "pending" and requeued.attempt == 2
    job = first.claim()
    assert job is not None and job.attempt == 3, "the count goes on across a requeue"
    with job:
        job.ready(_video(ledger_dir, "s.mp4"))
    assert [a.number for a in first.timeline("s", "e").attempts] == [1, 2, 3], "the same number in every view"
    with pytest.raises(EntryNotFoundError):
        first.requeue("nope", "e")
    first.close()
    other.close()


def test_an_error_the_policy_does_not_retry_ends_the_entrys_attempts(ledger: Ledger) -> None:
    ledger.set_retry_policy(RetryPolicy(max_attempts=5, backoff=0, not_retried=("BadPrompt",)))
    _queue(ledger, "s")
    job = ledger.claim()
    assert job is not None
    ledger.mark_video_failed("s", "e", "BadPrompt: empty", attempt=job.attempt)
    assert ledger.claim() is None


def test_the_jobs_block_renews_its_lease_and_stops_when_it_ends(ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    _queue(ledger, "s")
    job = ledger.claim(lease=0.3)
    assert job is not None
    with job:
        time.sleep(0.75)  # past two renewals (every 0.1 s) and more than two leases
        assert ledger.reap() == [], "a current lease is never reaped"
        job.ready(_video(ledger_dir, "s.mp4"))
    renewals = [e for e in ledger.history() if isinstance(e, Renewed)]
    assert 3 <= len(renewals) <= 8, len(renewals)
    count = sum(1 for _ in ledger.history())
    time.sleep(0.3)
    assert sum(1 for _ in ledger.history()) == count, "no renewal after the block"
    ledger.close()


def test_an_expired_lease_is_reaped_and_the_next_claim_takes_the_entry_back(
    ledger_dir: Path, clock: FakeClock
) -> None:
    ledger = Ledger(ledger_dir, clock=clock)
    ledger.set_retry_policy(RetryPolicy(backoff=0))
    _queue(ledger, "s")
    lost = ledger.claim(lease=30)  # its worker dies: the block never runs, nothing renews
    assert lost is not None
    clock.now += dt.timedelta(seconds=20)
    assert ledger.reap() == [] and ledger.reap(dt.timedelta(seconds=1)) == [], "the lease is current"
    ledger.heartbeat("s", "e", lost.attempt)
    clock.now += dt.timedelta(seconds=29)
    assert ledger.reap(dt.timedelta(seconds=1)) == [], "renewed 29 s ago: current for 1 s more"
    clock.now += dt.timedelta(seconds=2)
    again = ledger.claim()
    assert again is not None and again.attempt == lost.attempt + 1, "the claim reaped it and took it back"
    events = list(ledger.history())
    assert events[-2].type == "failed" and "lease of attempt 1 ran out" in events[-2].error  # type: ignore[union-attr]
    before = files_state(ledger_dir)
    with pytest.raises(IllegalTransitionError, match="cannot renew the lease of attempt 1"):
        ledger.heartbeat("s", "e", lost.attempt)
    assert files_state(ledger_dir) == before, "nothing recorded"
    ledger.close()


def test_generation_on_a_ready_entry_is_refused_unless_regenerate(ledger: Ledger, ledger_dir: Path) -> None:
    with ledger.generation("s", "e", "p") as job:
        job.ready(_video(ledger_dir, "v.mp4"))
    before = files_state(ledger_dir)
    with pytest.raises(AlreadyReadyError, match="already ready") as caught:
        ledger.generation("s", "e", "p").__enter__()
    assert caught.value.attempt == 1 and isinstance(caught.value, IllegalTransitionError)
    assert files_state(ledger_dir) == before
    with ledger.generation("s", "e", "p", regenerate=True) as job:
        assert job.attempt == 2
        job.ready(_video(ledger_dir, "v2.mp4"))


def test_claim_checks_its_arguments(ledger: Ledger) -> None:
    for lease in (0, -1, 8 * 86400, "soon"):
        with pytest.raises(InvalidEntryError):
            ledger.claim(lease=lease)
    _queue(ledger, "s")
    job = ledger.claim(worker=Worker(host="h", pid=1, name="n"), lease="90s")
    assert job is not None and job.lease == 90


def test_a_worker_name_meets_the_one_rule_of_the_api_and_the_command_line(ledger: Ledger) -> None:
    """A name too long or not on one line is refused, nothing recorded, as ``claim --worker`` refuses it (not
    cut to fit); no name is ``worker``, with this host and pid."""
    _queue(ledger, "s")
    log = ledger.directory / "events.jsonl"
    before = log.read_bytes()
    for bad in ("w" * 257, "two\nlines"):
        with pytest.raises(InvalidEntryError, match="worker"):
            ledger.claim(worker=bad)
        assert log.read_bytes() == before
    assert ledger.claim() is not None
    (attempt,) = ledger.provenance("s", "e")
    assert attempt.worker == Worker(name="worker", host=os.uname().nodename, pid=os.getpid())


@pytest.mark.parametrize("over", ["file", "postgresql"])
def test_worker_processes_never_claim_one_entry_twice(
    tmp_path: Path, over: str, request: pytest.FixtureRequest
) -> None:
    """4 processes x 40 queued entries, 30 % of attempts failing, at most 3 attempts: no entry is generated
    while ready, no attempt is started twice, every entry ends ready or failed with its attempts used, and
    the attempts are exactly what the failures explain."""
    store = request.getfixturevalue("pg_url") if over == "postgresql" else None
    result = bench_claim.run(tmp_path / "ledger", store=store, workers=4, entries=40, fail=0.3, attempts=3)
    assert result.problems == [], result.problems
    assert result.attempts == result.expected_attempts
    assert result.ready + result.failed == 40


GROUP = r"""
import os, signal, sys, time
from ledger import Ledger

directory, workers = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's leader outlives the signals: it waits
signal.signal(signal.SIGINT, signal.SIG_IGN)
children = []
for n in range(workers):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with Ledger(directory) as ledger:
            job = ledger.claim(worker=f"w{n}", lease=30)
            assert job is not None
            with job:
                os.write(1, f"{job.spot_id}\n".encode())  # one write: lines of workers never interleave
                time.sleep(60)
        os._exit(0)
    children.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(" ".join(map(str, codes)), flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
def test_a_signal_to_the_workers_process_group_records_every_running_attempt_failed(
    ledger_dir: Path, signum: int, twice: bool
) -> None:
    """What systemd stop and docker stop do: the signal to every process of the group, once or twice 2 ms
    apart. Each worker records its running attempt failed before it exits (a second signal waits until that
    commit is done), and the log verifies."""
    workers = 4
    with Ledger(ledger_dir) as ledger:
        _queue(ledger, *(f"s{i}" for i in range(workers)))
    with subprocess.Popen(
        [sys.executable, "-c", GROUP, str(ledger_dir), str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True, cwd=ROOT,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        started = [proc.stdout.readline().strip() for _ in range(workers)]
        assert sorted(started) == [f"s{i}" for i in range(workers)]
        os.killpg(proc.pid, signum)
        if twice:
            time.sleep(0.002)
            os.killpg(proc.pid, signum)
        codes = proc.stdout.readline().split()
        assert proc.wait(60) == 0
    with Ledger(ledger_dir) as ledger:
        entries = ledger.get_all_video_metadata()
        assert [e.status for e in entries] == ["failed"] * workers
    if signum == signal.SIGTERM:  # 143: the job re-raised it as exit 143; -15: a second signal that came
        # once the failure was recorded and the handler given back ended the process as SIGTERM does
        assert set(codes) <= {"143", "-15"} and len(codes) == workers, codes
    else:
        assert len(codes) == workers and "0" not in codes
        assert all(e.error is not None and e.error.startswith("interrupted") for e in entries), entries
        report = ledger.verify()
        assert report.ok and report.events == 2 * workers + workers
