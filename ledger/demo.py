"""A real, small generation pipeline against a ledger: the first thing a new user runs.

The demo queues ``spots * eras`` entries (``pending``) and starts K worker processes, each looping
``Ledger.claim()`` → a stand-in generator → ``ready`` or ``failed``, as a production worker does
(``docs/pipeline-guide.md``). The ledger's retry policy decides what is tried again and when: the demo has no
retry code (on a ledger without a policy it records :data:`DEMO_POLICY`: 2 attempts, 0.2 s apart). The
stand-in generator waits a short random time, fails at a chosen rate, and otherwise writes a tiny real MP4
container under ``DIR/videos/`` (:mod:`ledger.mp4`); each attempt records its provenance (the stand-in
model, seed, parameters, the prompt's digest) and usage (wall time, stand-in GPU-seconds), and with a
signer (:class:`ledger.disclosure.C2paSigner`) each video carries a C2PA manifest naming its entry.
Everything it records is real: the same fsynced, hash-chained events and snapshot a production pipeline
would write.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ledger.errors import InvalidEntryError, LedgerError
from ledger.events import Failed, Generating, ModelRef, Provenance, Usage, VideoMetadata
from ledger.mp4 import write_mp4
from ledger.pipeline import Job, Signer, Terminated
from ledger.places import ERAS, SPOTS
from ledger.provenance import canonical_json, text_sha256
from ledger.retry import RetryPolicy, policy_text
from ledger.store import Ledger

if TYPE_CHECKING:  # imported where used: a short command imports this module for its option bounds
    import multiprocessing
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Event

    from ledger.disclosure import C2paSigner

__all__ = (
    "DEMO_POLICY",
    "ERAS",
    "MODEL",
    "SPOTS",
    "DemoInterrupted",
    "DemoResult",
    "DemoSigner",
    "JobResult",
    "demo_signer",
    "outcome_counts",
    "prompt_of",
    "run_demo",
)

DEMO_POLICY: Final = RetryPolicy(max_attempts=2, backoff=0.2, backoff_factor=1.0)
"""The policy the demo records on a ledger that has none: a failed entry is tried once more, 0.2 s on."""
MODEL: Final = ModelRef(name="stand-in", version="1")
"""The stand-in generator, as the provenance records name it."""
_FRAME: Final = (16, 16, 1.0)
"""The stand-in's videos: width, height (pixels) and seconds; its parameters, as provenance records them."""
_LEASE: Final = 30.0
_POLL: Final = 0.02
"""Seconds a worker waits before it claims again when nothing is claimable yet (a retry's backoff)."""


class StandInFailure(Exception):
    """The stand-in generator's simulated failure."""


@dataclass(frozen=True, slots=True)
class JobResult:
    spot_id: str
    era_id: str
    attempt: int
    outcome: str
    """``ready``; ``failed`` (the generator failed); ``error`` (the ledger refused its ready); or, found
    when queueing, ``refused`` (another attempt on the entry was live) or ``skipped`` (already ready)."""
    detail: str = ""
    retried: bool = False
    """Whether the ledger's retry policy runs the entry again (a failed attempt with attempts left)."""

    @property
    def final(self) -> bool:
        """Whether the job is finished (a failed attempt that the policy retries is not)."""
        return not self.retried


@dataclass(frozen=True, slots=True)
class DemoSigner:
    """What signs the demo's videos: the signer (``None``: nothing does), why in words, and the root
    certificate to verify its manifests against (a throwaway CA's; ``None`` for a given one)."""

    signer: C2paSigner | None
    how: str
    trust_anchor: Path | None = None


@dataclass(slots=True)
class DemoResult:
    jobs: int
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    existing: int = 0
    """Entries the ledger held before the demo started."""
    live: int = 0
    """Of those, entries with an attempt running (another pipeline, or another demo, is at work)."""
    policy: RetryPolicy = DEMO_POLICY
    """The retry policy the workers followed (the ledger's)."""
    policy_recorded: bool = False
    """Whether the demo recorded :data:`DEMO_POLICY` (the ledger had no policy)."""
    signed: DemoSigner = field(default_factory=lambda: DemoSigner(None, "not signed"))
    """What signed the videos (and what it is, in words)."""

    @property
    def policy_note(self) -> str:
        """The retry policy the workers followed, and whose it is."""
        whose = "the demo's, recorded: the ledger had none" if self.policy_recorded else "the ledger's"
        return f"{policy_text(self.policy)} ({whose})"

    @property
    def retried(self) -> int:
        """Attempts that failed and that the policy ran again."""
        return sum(1 for r in self.results if r.retried)

    @property
    def refused(self) -> int:
        """Jobs left alone because another worker's attempt on the entry was live."""
        return sum(1 for r in self.results if r.outcome == "refused")

    @property
    def finished(self) -> int:
        """Jobs finished so far (a failed attempt that is retried is not one)."""
        return sum(1 for r in self.results if r.final)


class DemoInterrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM stopped the demo: its workers were stopped, each recording its running
    attempt as failed. ``signum`` is the signal, ``stopped`` the attempts recorded as failed because of it
    (counted from the log), ``left`` those still ``generating`` (0 unless a worker had to be killed),
    ``result`` what finished before."""

    def __init__(self, signum: int, stopped: int, result: DemoResult, left: int = 0) -> None:
        name = signal.Signals(signum).name
        still = f"; {left} left generating (a worker was killed: reap them)" if left else ""
        super().__init__(
            f"interrupted by {name}: stopped the workers; {stopped} running attempt(s) recorded as failed"
            f"{still}, {result.finished} of {result.jobs} jobs finished"
        )
        self.signum, self.stopped, self.result, self.left = signum, stopped, result, left


def prompt_of(spot: str, era: str) -> str:
    """The demo's prompt for an entry."""
    return f"{spot.replace('-', ' ').title()} in its {era.replace('-', ' ')}, cinematic, eight seconds"


def demo_signer(
    directory: str | os.PathLike[str],
    *,
    chain: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    sign: bool = True,
) -> DemoSigner:
    """The demo's signer: the certificate ``chain`` and ``key`` files when given (the ``c2pa`` extra
    needed: :class:`~ledger.disclosure.C2paMissingError` without it); else, unless ``sign`` is false and
    when the extra is installed, a throwaway development CA in ``directory/dev-ca`` (made once, then
    reused, so every video of the directory verifies against one root); else none, saying why."""
    from ledger.disclosure import C2PA_EXTRA, C2paMissingError, C2paSigner, make_development_ca, require_c2pa

    if chain is not None and key is not None:
        require_c2pa()
        return DemoSigner(C2paSigner(Path(chain), Path(key)), f"signed with the certificate chain {chain}")
    if not sign:
        return DemoSigner(None, "not signed (--no-sign)")
    try:
        require_c2pa()
    except C2paMissingError:
        return DemoSigner(None, f"not signed: C2PA disclosure needs the c2pa extra: {C2PA_EXTRA}")
    folder = Path(directory) / "dev-ca"
    root, chain_file, key_file = folder / "root.pem", folder / "chain.pem", folder / "signer.key"
    if root.is_file() and chain_file.is_file() and key_file.is_file():
        made = C2paSigner(chain_file, key_file)
    else:
        try:
            made, root = make_development_ca(folder, days=3650)
        except OSError as exc:
            return DemoSigner(None, f"not signed: cannot make a development CA in {folder}: {exc.strerror}")
    how = f"signed (C2PA) by a throwaway development CA in {folder}: not for published videos"
    return DemoSigner(made, how, root)


# -- the worker ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setup:
    directory: str
    store: str | None
    fail_rate: float
    seed: int
    delay: tuple[float, float]
    signer: Signer | None


def _worker(
    setup: _Setup,
    number: int,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
    done: Event,
) -> None:
    """Claim, generate, record, until the parent says every job is done or a signal says stop.

    Ctrl-C reaches every process of the terminal's group: the parent alone decides, and stops the workers
    with SIGTERM. Outside a job's block SIGTERM is only noted (a claim's commit is never cut short); a job
    claimed meanwhile, or running when it came, records ``failed`` ("interrupted by SIGTERM") and the
    worker exits with 143."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    width, height, seconds = _FRAME
    parameters = canonical_json({"width": width, "height": height, "seconds": seconds})
    made = Provenance(model=MODEL, parameters=parameters)
    with Ledger(setup.directory, store=setup.store) as ledger:
        while not stop:
            job = ledger.claim(worker=f"demo-{number}", lease=_LEASE, provenance=made, signer=setup.signer)
            if job is None:
                done.wait(_POLL)
                if done.is_set():
                    break
                continue
            results.put(_generate(ledger, job, setup, stop))
    if stop:
        raise Terminated(stop[0])


def _generate(ledger: Ledger, job: Job, setup: _Setup, stop: list[int]) -> JobResult:
    """Run the stand-in generator in ``job``'s block; what happened, for the parent."""
    spot, era, attempt = job.spot_id, job.era_id, job.attempt
    rng = random.Random(f"{setup.seed}/{spot}/{era}/{attempt}")
    try:
        with job:
            if stop:  # the signal came while the claim was being recorded
                raise Terminated(stop[0])
            took = rng.uniform(*setup.delay)
            time.sleep(took)
            job.usage = Usage(gpu_seconds=round(took, 3), gpu_type="stand-in")  # what it cost, if it fails
            if rng.random() < setup.fail_rate:
                raise StandInFailure(f"stand-in generator failed (simulated, attempt {attempt})")
            seed = rng.getrandbits(32)
            path = Path(setup.directory) / "videos" / f"{spot}--{era}.mp4"
            width, height, seconds = _FRAME
            payload = random.Random(seed).randbytes(rng.randint(512, 4096))
            write_mp4(path, payload, width=width, height=height, seconds=seconds)
            done = Provenance(seed=seed, prompt_sha256=text_sha256(prompt_of(spot, era)))
            job.ready(path, local_path=f"videos/{path.name}", provenance=done, usage=job.usage)
        return JobResult(spot, era, attempt, "ready")
    except StandInFailure as exc:
        return JobResult(spot, era, attempt, "failed", str(exc), not ledger.claims.settled(spot, era))
    except LedgerError as exc:  # the ledger refused the ready (the attempt was reaped meanwhile, say)
        return JobResult(spot, era, attempt, "error", str(exc), not ledger.claims.settled(spot, era))


# -- the parent ----------------------------------------------------------------------------------------


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
    signer: DemoSigner | Callable[[], DemoSigner] | None = None,
) -> DemoResult:
    """Queue ``spots * eras`` entries in the ledger in ``directory`` (its events in ``store`` when given: a
    URL, as :class:`~ledger.store.Ledger` takes it) and work them off on ``workers`` processes, each
    looping ``claim()``; with ``signer`` (or a function that makes it, called once the ledger is open), each
    video is signed.

    An entry already ready is left as it is, one with a live attempt is left to it, a failed one is
    requeued. SIGINT or SIGTERM (in the main thread, once or twice) stops the workers at once, each
    recording its running attempt as failed, and raises :class:`DemoInterrupted` with their number as the
    log shows it. Bad numbers raise :class:`~ledger.errors.InvalidEntryError` naming the one at fault."""
    _check_numbers(spots, eras, workers, fail_rate)
    todo = [(s, e) for s in SPOTS[:spots] for e in ERAS[:eras]]
    result = DemoResult(jobs=len(todo))
    with Ledger(directory, store=store) as ledger:  # created before the workers race to
        start_seq = ledger.head().seq
        queued = _queue(ledger, todo, result)
    result.signed = signer() if callable(signer) else signer or result.signed
    for found in result.results:
        if progress is not None:
            progress(result, found)
    setup = _Setup(os.fspath(directory), store, fail_rate, seed, delay, result.signed.signer)
    procs, results, done = _workers(workers, setup)
    main = threading.current_thread() is threading.main_thread()
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    try:
        _start(procs, main)
        _collect(procs, results, queued, result, progress)
    except (KeyboardInterrupt, Terminated) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        with _signals_held(main):  # a second signal a few ms on must not cut the count short
            _stop(procs)
            stopped, left = _interrupted(directory, store, start_seq)
        raise DemoInterrupted(signum, stopped, result, left) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        done.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    result.seconds = time.perf_counter() - started
    return result


def _queue(ledger: Ledger, todo: Sequence[tuple[str, str]], result: DemoResult) -> set[tuple[str, str]]:
    """Record the demo's policy if the ledger has none, queue the jobs, and return those queued; an entry
    already ready or live is a result at once."""
    policy, seq = ledger.claims.policy()
    if seq == 0:
        ledger.set_retry_policy(DEMO_POLICY)
        policy, result.policy_recorded = DEMO_POLICY, True
    result.policy = policy
    before = {e.key: e for e in ledger.get_all_video_metadata()}
    result.existing = len(before)
    result.live = sum(1 for e in before.values() if e.status == "generating")
    new, queued = [], set()
    for key in todo:
        entry = before.get(key)
        if entry is None:
            new.append({"spotId": key[0], "eraId": key[1], "prompt": prompt_of(*key), "status": "pending"})
        elif entry.status in ("generating", "ready"):
            result.results.append(_found(entry))
            continue
        elif entry.status == "failed":
            ledger.requeue(*key)
        queued.add(key)
    if new:
        ledger.set_many(new)
    return queued


def _found(entry: VideoMetadata) -> JobResult:
    """An entry the demo leaves alone: ``ready`` already, or another attempt live on it."""
    attempt = entry.attempt or 0
    if entry.status == "ready":
        detail = f"already ready ({entry.local_path}): left as it is; `requeue` it to make it again"
        return JobResult(entry.spot_id, entry.era_id, attempt, "skipped", detail)
    detail = f"{entry.spot_id}/{entry.era_id}: attempt {attempt} is live: another worker's, left to it"
    return JobResult(entry.spot_id, entry.era_id, attempt, "refused", detail)


def _workers(count: int, setup: _Setup) -> tuple[list[BaseProcess], multiprocessing.Queue, Event]:  # type: ignore[type-arg]
    """``count`` worker processes (not started), the queue they report on, and the event that ends them.

    Forked where there is fork: the queue's semaphores are unlinked at once, so no resource-tracker
    process is started (with spawn, an interrupted demo could end with the tracker's "leaked semaphore"
    warning on stderr); the workers open their own ledger handles, and this process holds none open."""
    import multiprocessing

    get_context = multiprocessing.get_context
    context = get_context("fork") if sys.platform == "linux" else get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    done = context.Event()
    procs: list[BaseProcess] = [
        context.Process(target=_worker, args=(setup, n + 1, results, done), daemon=True) for n in range(count)
    ]
    return procs, results, done


def _check_numbers(spots: int, eras: int, workers: int, fail_rate: float) -> None:
    if not 1 <= spots <= len(SPOTS):
        raise InvalidEntryError(f"--spots must be between 1 and {len(SPOTS)}, not {spots}")
    if not 1 <= eras <= len(ERAS):
        raise InvalidEntryError(f"--eras must be between 1 and {len(ERAS)}, not {eras}")
    if workers < 1:
        raise InvalidEntryError(f"--workers must be at least 1, not {workers}")
    if not 0.0 <= fail_rate <= 1.0:  # also refuses nan
        raise InvalidEntryError(f"--fail-rate must be between 0 and 1, not {fail_rate}")


def _terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


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
    results: multiprocessing.Queue,  # type: ignore[type-arg]
    queued: set[tuple[str, str]],
    result: DemoResult,
    progress: Callable[[DemoResult, JobResult], None] | None,
) -> None:
    """Take the workers' results until every queued job has its last attempt."""
    open_jobs = set(queued)
    while open_jobs:
        try:
            done: JobResult = results.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("every demo worker exited with jobs left") from None
            continue
        result.results.append(done)
        if done.final:
            open_jobs.discard((done.spot_id, done.era_id))
        if progress is not None:
            progress(result, done)


@contextmanager
def _signals_held(main: bool) -> Iterator[None]:
    """SIGINT and SIGTERM noted and dropped inside the block (main thread only): the demo is stopping."""
    if not main:
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(procs: Sequence[BaseProcess]) -> None:
    """SIGTERM every worker (each records its running attempt as failed) and wait for them to exit; one
    that has not within 10 s is killed (its attempt is left to its lease and ``reap``)."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _interrupted(directory: str | os.PathLike[str], store: str | None, start_seq: int) -> tuple[int, int]:
    """The attempts recorded failed by an interruption since ``start_seq``, and the entries the demo's
    workers left ``generating`` (as the log shows them: the count the demo says is this one)."""
    with Ledger(directory, readonly=True, store=store) as ledger:
        stopped = sum(
            1
            for e in ledger.history(since_seq=start_seq, type="failed")
            if isinstance(e, Failed) and e.error.startswith("interrupted")
        )
        ours = {
            e.key
            for e in ledger.history(since_seq=start_seq, type="generating")
            if isinstance(e, Generating)
            and e.worker is not None
            and (e.worker.name or "").startswith("demo-")
        }
        left = sum(1 for e in ledger.get_all_video_metadata() if e.key in ours and e.status == "generating")
    return stopped, left


def outcome_counts(result: DemoResult) -> Counter[str]:
    """Final outcome per job (the last attempt's)."""
    last: dict[tuple[str, str], str] = {}
    for r in result.results:
        last[(r.spot_id, r.era_id)] = r.outcome
    return Counter(last.values())
