"""A real, small generation pipeline against a ledger: the first thing a new user runs.

K worker processes take (spot, era) jobs from a queue and run each through ``Ledger.generation()``. A
stand-in generator waits a short random time, writes a small placeholder video under ``DIR/videos/``, and
fails at a chosen rate; a failed job is retried once. Everything it records is real: the same fsynced,
hash-chained events and snapshot a production pipeline would write.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

from ledger.errors import IllegalTransitionError, InvalidEntryError, LedgerError
from ledger.events import Failed
from ledger.pipeline import Terminated
from ledger.store import Ledger

__all__ = ("ERAS", "SPOTS", "DemoInterrupted", "DemoResult", "JobResult", "run_demo")

SPOTS = (
    "colosseum", "acropolis", "forbidden-city", "machu-picchu", "petra", "angkor-wat", "great-pyramid",
    "hagia-sophia", "alhambra", "chichen-itza", "stonehenge", "notre-dame", "taj-mahal", "kyoto-kinkaku-ji",
)  # fmt: skip
ERAS = ("founding", "golden-age", "decline", "rediscovery", "today", "far-future")


class StandInFailure(Exception):
    """The stand-in generator's simulated failure."""


@dataclass(frozen=True, slots=True)
class JobResult:
    spot_id: str
    era_id: str
    attempt: int
    outcome: str  # "ready", "failed" (the generator failed), "refused" (another attempt was live) or "error"
    detail: str = ""

    @property
    def final(self) -> bool:
        """Whether the job is finished (only a failed first attempt is retried)."""
        return not (self.outcome == "failed" and self.attempt == 1)


@dataclass(slots=True)
class DemoResult:
    jobs: int
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    existing: int = 0
    """Entries the ledger held before the demo started."""
    live: int = 0
    """Of those, entries with an attempt running (another pipeline, or another demo, is at work)."""

    @property
    def retried(self) -> int:
        return sum(1 for r in self.results if r.attempt == 2)

    @property
    def refused(self) -> int:
        """Jobs the ledger refused because another worker's attempt on the entry was live."""
        return sum(1 for r in self.results if r.outcome == "refused")

    @property
    def finished(self) -> int:
        """Jobs finished so far (a failed first attempt is not one: it is retried)."""
        return sum(1 for r in self.results if r.final)


class DemoInterrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM stopped the demo: its workers were stopped, each recording its running
    attempt as failed. ``signum`` is the signal, ``stopped`` the attempts recorded as failed because of it,
    ``result`` what finished before."""

    def __init__(self, signum: int, stopped: int, result: DemoResult) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name}: stopped the workers; {stopped} running attempt(s) recorded as failed, "
            f"{result.finished} of {result.jobs} jobs finished"
        )
        self.signum, self.stopped, self.result = signum, stopped, result


def _placeholder(rng: random.Random) -> bytes:
    # An ISO-BMFF-looking header and some bytes: a file that is small, distinct, and obviously not a video.
    return b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + rng.randbytes(rng.randint(512, 4096))


def _worker(
    directory: str, jobs: multiprocessing.Queue, results: multiprocessing.Queue,  # type: ignore[type-arg]
    fail_rate: float, seed: int, delay: tuple[float, float], store: str | None = None,
) -> None:  # fmt: skip
    # Ctrl-C reaches every process of the terminal's group: the parent alone decides, and stops the workers
    # with SIGTERM, which (inside generation()) records the running attempt as failed and exits with 143.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    entering = False  # recording `generating`: a SIGTERM now waits for the block, which records failed
    stop: list[int] = []

    def terminated(signum: int, frame: object) -> None:
        if not entering:
            raise Terminated(signum)
        stop.append(signum)

    signal.signal(signal.SIGTERM, terminated)
    ledger = Ledger(directory, store=store)
    videos = Path(directory) / "videos"
    while (job := jobs.get()) is not None:
        spot, era, attempt = job
        rng = random.Random(f"{seed}/{spot}/{era}/{attempt}")
        prompt = f"{spot.replace('-', ' ').title()} in its {era.replace('-', ' ')}, cinematic, eight seconds"
        try:
            entering = True
            with ledger.generation(spot, era, prompt) as run:
                entering = False
                if stop:
                    raise Terminated(stop[0])
                time.sleep(rng.uniform(*delay))
                if rng.random() < fail_rate:
                    raise StandInFailure(f"stand-in generator failed (simulated, attempt {attempt})")
                name = f"{spot}--{era}.mp4"
                videos.mkdir(exist_ok=True)
                (videos / name).write_bytes(_placeholder(rng))
                run.ready(videos / name, local_path=f"videos/{name}")
            results.put(JobResult(spot, era, attempt, "ready"))
        except StandInFailure as exc:
            results.put(JobResult(spot, era, attempt, "failed", str(exc)))
        except IllegalTransitionError as exc:  # another worker's attempt: not ours to record
            results.put(JobResult(spot, era, attempt, "refused", str(exc)))
        except LedgerError as exc:
            results.put(JobResult(spot, era, attempt, "error", str(exc)))
        finally:
            entering = False
        if stop:
            raise Terminated(stop[0])
    ledger.close()


def _terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def run_demo(
    directory: str | os.PathLike[str],
    *,
    spots: int = 4,
    eras: int = 3,
    workers: int = 2,
    fail_rate: float = 0.2,
    seed: int = 7,
    delay: tuple[float, float] = (0.05, 0.3),
    progress: Callable[[DemoResult, JobResult], None] | None = None,
    store: str | None = None,
) -> DemoResult:
    """Run ``spots * eras`` generation jobs on ``workers`` processes against the ledger in ``directory``
    (its events in ``store`` when given: a URL, as :class:`~ledger.store.Ledger` takes it).

    SIGINT or SIGTERM (in the main thread) stops the workers at once, each recording its running attempt
    as failed, and raises :class:`DemoInterrupted`. Bad numbers raise
    :class:`~ledger.errors.InvalidEntryError` naming the one at fault."""
    _check_numbers(spots, eras, workers, fail_rate)
    with Ledger(directory, store=store) as ledger:  # create the ledger before the workers race to
        start_seq = ledger.head().seq
        before = ledger.get_all_video_metadata()
    main = threading.current_thread() is threading.main_thread()
    todo = [(s, e) for s in SPOTS[:spots] for e in ERAS[:eras]]
    procs, jobs, results = _workers(workers, (os.fspath(directory), fail_rate, seed, delay, store))
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    result = DemoResult(
        jobs=len(todo), existing=len(before), live=sum(1 for e in before if e.status == "generating")
    )
    try:
        _start(procs, main)
        for spot, era in todo:  # after the forks: no queue feeder thread runs while this process forks
            jobs.put((spot, era, 1))
        _collect(procs, jobs, results, result, progress)
    except (KeyboardInterrupt, Terminated) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        _stop(procs, jobs)
        with Ledger(directory, readonly=True, store=store) as ledger:
            stopped = sum(
                1
                for e in ledger.history(since_seq=start_seq, type="failed")
                if isinstance(e, Failed) and e.error.startswith("interrupted")
            )
        raise DemoInterrupted(signum, stopped, result) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for _ in procs:
            jobs.put(None)
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    result.seconds = time.perf_counter() - started
    return result


def _workers(
    count: int, args: tuple[object, ...]
) -> tuple[list[BaseProcess], multiprocessing.Queue, multiprocessing.Queue]:  # type: ignore[type-arg]
    """``count`` worker processes (not started) over a jobs and a results queue, each given ``args``.

    Forked where there is fork: its queues' semaphores are unlinked at once, so no resource-tracker
    process is started (with spawn, an interrupted demo could end with the tracker's "leaked semaphore"
    warning on stderr); the workers open their own ledger handles, and this process holds none open."""
    get_context = multiprocessing.get_context
    context = get_context("fork") if sys.platform == "linux" else get_context("spawn")
    jobs: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    directory, *rest = args
    full = (directory, jobs, results, *rest)
    procs: list[BaseProcess] = [context.Process(target=_worker, args=full, daemon=True) for _ in range(count)]
    return procs, jobs, results


def _check_numbers(spots: int, eras: int, workers: int, fail_rate: float) -> None:
    if not 1 <= spots <= len(SPOTS):
        raise InvalidEntryError(f"--spots must be between 1 and {len(SPOTS)}, not {spots}")
    if not 1 <= eras <= len(ERAS):
        raise InvalidEntryError(f"--eras must be between 1 and {len(ERAS)}, not {eras}")
    if workers < 1:
        raise InvalidEntryError(f"--workers must be at least 1, not {workers}")
    if not 0.0 <= fail_rate <= 1.0:  # also refuses nan
        raise InvalidEntryError(f"--fail-rate must be between 0 and 1, not {fail_rate}")


def _start(procs: Sequence[BaseProcess], main: bool) -> None:
    """Start the workers, born ignoring SIGINT (an ignored signal stays ignored across exec), so a Ctrl-C
    while a worker still starts up prints no traceback from it."""
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        for proc in procs:
            proc.start()
    finally:
        if ignored is not None:
            signal.signal(signal.SIGINT, ignored)


def _collect(
    procs: Sequence[BaseProcess],
    jobs: multiprocessing.Queue,  # type: ignore[type-arg]
    results: multiprocessing.Queue,  # type: ignore[type-arg]
    result: DemoResult,
    progress: Callable[[DemoResult, JobResult], None] | None,
) -> None:
    """Take the workers' results until every job has its last attempt (a failed first one is retried)."""
    open_jobs = result.jobs
    while open_jobs:
        try:
            done: JobResult = results.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("every demo worker exited with jobs left") from None
            continue
        result.results.append(done)
        if done.outcome == "failed" and done.attempt == 1:
            jobs.put((done.spot_id, done.era_id, 2))  # retry once
        else:
            open_jobs -= 1
        if progress is not None:
            progress(result, done)


def _stop(procs: Sequence[BaseProcess], jobs: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """SIGTERM every worker (each records its running attempt as failed) and wait for them to exit."""
    jobs.cancel_join_thread()  # jobs no one will take must not keep this process from exiting
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def outcome_counts(result: DemoResult) -> Counter[str]:
    """Final outcome per job (the last attempt's)."""
    last: dict[tuple[str, str], str] = {}
    for r in result.results:
        last[(r.spot_id, r.era_id)] = r.outcome
    return Counter(last.values())
