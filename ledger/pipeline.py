"""The pipeline's side: recording one generation attempt from start to end, whatever happens in between.

``with ledger.generation(spot_id, era_id, prompt) as job: ...; job.ready(path)`` records ``generating`` on
entry, ``ready`` (with the file's size and SHA-256) when the job says so, and ``failed`` when the block
raises, is interrupted (Ctrl-C, SIGTERM), or ends without ``job.ready()``. The job's ``ready`` and
``failed`` name its attempt, so they can never end another worker's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol, TypedDict, Unpack

import msgspec

from ledger.errors import IllegalTransitionError, InvalidEntryError, LedgerError
from ledger.events import Provenance, Usage, VideoMetadata, Worker
from ledger.heartbeat import Heartbeat
from ledger.media import app_path, file_digest
from ledger.provenance import check_provenance
from projections import provenance as provenance_view

__all__ = (
    "AttemptOptions",
    "EndRecords",
    "Generated",
    "Job",
    "Recorder",
    "Signer",
    "StartRecords",
    "StoreOptions",
    "Terminated",
    "app_path",
    "file_digest",
    "generation",
)

log = logging.getLogger("ledger")

NOT_READY = "the generation block ended without job.ready()"


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives inside a ``generation()`` block.

    The block records ``failed`` ("interrupted by SIGTERM") and the process then exits with status 143, as
    it would have without the block.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class StartRecords(TypedDict, total=False):
    """What an attempt's start may record: what it is given, and who runs it."""

    provenance: Provenance | None
    worker: Worker | None


class EndRecords(TypedDict, total=False):
    """What an attempt's ``ready`` may record: provenance fields known only then, and what it cost."""

    provenance: Provenance | None
    usage: Usage | None


class AttemptOptions(StartRecords, total=False):
    """``generation()``'s records, the signer that embeds the disclosure at ``ready``, and whether a ready
    entry's video is made again (else :class:`~ledger.errors.AlreadyReadyError`)."""

    signer: Signer | None
    regenerate: bool


class StoreOptions(AttemptOptions, total=False):
    """``generate_and_store_video()``'s options: ``reuse`` a current video of the same provenance."""

    reuse: bool


class Recorder(Protocol):
    """What a generation attempt needs of the ledger (:class:`ledger.Ledger` is one): the pipeline sits
    below the store API and imports nothing of it."""

    @property
    def directory(self) -> Path: ...

    def begin_attempt(
        self, spot_id: str, era_id: str, prompt: str, *, local_path: str | None = None,
        takeover: int | None = None, regenerate: bool = False, **records: Unpack[StartRecords],
    ) -> VideoMetadata: ...  # fmt: skip

    def mark_video_ready(
        self, spot_id: str, era_id: str, local_path: str, *, size: int | None = None,
        sha256: str | None = None, attempt: int | None = None, **records: Unpack[EndRecords],
    ) -> VideoMetadata: ...  # fmt: skip

    def mark_video_failed(
        self, spot_id: str, era_id: str, error: str, *, attempt: int | None = None, usage: Usage | None = None
    ) -> VideoMetadata: ...

    def get_video_metadata(self, spot_id: str, era_id: str) -> VideoMetadata | None: ...

    def heartbeat(self, spot_id: str, era_id: str, attempt: int, *, lease: float | None = None) -> object: ...

    def reuse(
        self, spot_id: str, era_id: str, prompt: str, *, provenance: Provenance, worker: Worker | None = None
    ) -> VideoMetadata | None: ...


class Signer(Protocol):
    """What embeds a disclosure in a finished video before its digest is taken
    (:class:`ledger.disclosure.C2paSigner` is one)."""

    def embed(
        self, path: str | os.PathLike[str], *, spot_id: str, era_id: str, attempt: int | None,
        provenance: Provenance | None = None,
    ) -> None: ...  # fmt: skip


class Job:
    """One attempt, and the block that records how it ends: ``with job: ...`` (``generation()`` enters it,
    ``claim()`` returns it to be entered). Leaving the block without :meth:`ready` records ``failed`` (an
    exception's type and message, an interruption, or that it ended without ``ready``). While the block
    runs, a job that holds a lease renews it every third of the lease (:class:`ledger.heartbeat.Heartbeat`),
    so a live attempt is never reaped; a second SIGTERM or Ctrl-C waits until the block's end is recorded."""

    def __init__(
        self,
        ledger: Recorder,
        spot_id: str,
        era_id: str,
        attempt: int,
        *,
        provenance: Provenance | None = None,
        signer: Signer | None = None,
        lease: float | None = None,
    ) -> None:
        self.ledger = ledger
        self.spot_id = spot_id
        self.era_id = era_id
        self.attempt = attempt
        """This attempt's number, counted from 1 per entry (``docs/lifecycle.md``)."""
        self.lease = lease
        """Seconds the attempt's lease runs from its start or last renewal (``None``: it holds none)."""
        self._stack: contextlib.ExitStack | None = None
        self._heartbeat: Heartbeat | None = None
        self.entry: VideoMetadata | None = None
        """The entry once ``ready`` was recorded."""
        self.provenance = provenance
        """The provenance given when the attempt started."""
        self.usage: Usage | None = None
        """What the attempt has cost so far, as the worker reports it (GPU-seconds, GPU type, cost): the
        ``failed`` recorded for an exception or a signal carries it, with the job's wall time."""
        self.signer = signer
        self._ended = False
        self._started = time.monotonic()

    @property
    def done(self) -> bool:
        """Whether the attempt's end was recorded (``ready``, or :meth:`failed`)."""
        return self._ended

    def __enter__(self) -> Job:
        if self._stack is not None:
            raise RuntimeError("a job's block is entered once")
        stack = self._stack = contextlib.ExitStack()
        try:
            if self.lease is not None:
                self._heartbeat = stack.enter_context(Heartbeat(self.ledger, self, self.lease))
            stack.enter_context(_sigterm_raises())
        except BaseException as exc:  # a SIGTERM before the block began: its end is recorded all the same
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._stack is not None
        try:
            # a second SIGTERM or Ctrl-C a few ms after the first (systemd, docker, a process group) waits
            # until the attempt's end is recorded, rather than cutting that commit short; one that is the
            # first (the block ended for another reason) is raised again once it is recorded
            with _signals_deferred(redeliver=not isinstance(exc, Terminated | KeyboardInterrupt)):
                if self._heartbeat is not None:  # nothing renews an attempt that is ending
                    self._heartbeat.__exit__(None, None, None)
                if not self.done:
                    _record_failure(self.ledger, self, NOT_READY if exc is None else _describe(exc))
        finally:
            self._stack.close()

    def measured(self, usage: Usage | None = None) -> Usage:
        """``usage`` (default: :attr:`usage`) with the wall time the job measured since it started, unless
        it gives its own."""
        given = self.usage if usage is None else usage
        wall = round(time.monotonic() - self._started, 6)
        if given is None:
            return Usage(wall_seconds=wall)
        return given if given.wall_seconds is not None else msgspec.structs.replace(given, wall_seconds=wall)

    def ready(
        self,
        path: str | os.PathLike[str],
        *,
        local_path: str | None = None,
        usage: Usage | None = None,
        provenance: Provenance | None = None,
    ) -> VideoMetadata:
        """Record ``ready`` for the file at ``path`` with its size and SHA-256, the attempt's ``usage``
        (its wall time measured by the job) and the ``provenance`` fields known only now.

        ``local_path`` is what the entry records as ``localPath``, the path the app gets: relative, and not
        leaving the ledger directory (default: ``path`` relative to the ledger directory, which ``path`` must
        then be under); see :func:`app_path`. The file must be complete before this call. With a signer
        (``generation(..., signer=...)``), the disclosure is embedded in the file first, and the size and
        digest recorded are those of the file as finally written.
        If this attempt is no longer the entry's current one (it was reaped or taken over), raises
        :class:`~ledger.errors.IllegalTransitionError` and records nothing.
        """
        recorded = app_path(self.ledger.directory, path, local_path)
        if provenance is not None:  # checked before it goes into a signed manifest
            provenance = check_provenance(provenance)
        if self.signer is not None:
            made = provenance_view.complete(self.provenance, provenance)
            self.signer.embed(
                path, spot_id=self.spot_id, era_id=self.era_id, attempt=self.attempt, provenance=made
            )
        size, sha256 = file_digest(path)
        self.entry = self.ledger.mark_video_ready(
            self.spot_id, self.era_id, recorded, size=size, sha256=sha256, attempt=self.attempt,
            provenance=provenance, usage=self.measured(usage),
        )  # fmt: skip
        self._ended = True
        return self.entry

    def failed(self, error: str, *, usage: Usage | None = None) -> VideoMetadata:
        """Record ``failed`` with ``error`` and the attempt's ``usage`` (its wall time measured by the job)
        now, without raising; the block then ends without recording anything more."""
        entry = self.ledger.mark_video_failed(
            self.spot_id, self.era_id, error, attempt=self.attempt, usage=self.measured(usage)
        )
        self._ended = True
        return entry


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return f"interrupted by {signal.Signals(exc.signum).name}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    raised: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> Any:
        if raised:  # a second SIGTERM a few ms on: the block is already ending for the first
            return
        raised.append(signum)
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred(*, redeliver: bool) -> Iterator[None]:
    """Inside the block, SIGTERM and SIGINT are held (main thread only): the first one that arrives is
    raised again after the block if ``redeliver`` (nothing else is stopping the process), else dropped
    (the process is already on its way out, for an earlier one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signum, handler)
        if held and redeliver:
            signal.raise_signal(held[0])


@contextlib.contextmanager
def generation(
    ledger: Recorder,
    spot_id: str,
    era_id: str,
    prompt: str,
    *,
    local_path: str | None = None,
    takeover: int | None = None,
    provenance: Provenance | None = None,
    worker: Worker | None = None,
    signer: Signer | None = None,
    regenerate: bool = False,
) -> Iterator[Job]:
    """Record one generation attempt; see :meth:`ledger.Ledger.generation`."""
    started = ledger.begin_attempt(
        spot_id, era_id, prompt, local_path=local_path, takeover=takeover, regenerate=regenerate,
        provenance=provenance, worker=worker,
    )  # fmt: skip
    assert started.attempt is not None  # begin_attempt records a generating event of this format
    with Job(ledger, spot_id, era_id, started.attempt, provenance=provenance, signer=signer) as job:
        yield job


def _record_failure(ledger: Recorder, job: Job, error: str) -> None:
    try:
        ledger.mark_video_failed(job.spot_id, job.era_id, error, attempt=job.attempt, usage=job.measured())
    except LedgerError as exc:
        if isinstance(exc, IllegalTransitionError) and _ended_ready(ledger, job):
            return  # the block was left (a signal) after this attempt's ready was recorded: nothing failed
        # the first error (the block's) is the one the caller sees; this one is logged
        log.error("could not record %s/%s as failed (%s): %s", job.spot_id, job.era_id, error, exc)


def _ended_ready(ledger: Recorder, job: Job) -> bool:
    """Whether the entry's current attempt is ``job``'s and it is ready (its ready was recorded)."""
    try:
        current = ledger.get_video_metadata(job.spot_id, job.era_id)
    except LedgerError:
        return False
    if current is None or current.attempt != job.attempt or current.status != "ready":
        return False
    job.entry = current
    return True


Generated = str | os.PathLike[str] | tuple[str | os.PathLike[str], Usage | None]
"""What a generator returns: the video's path, or the path and what generating it cost."""


def generate_and_store_video(
    ledger: Recorder,
    spot_id: str,
    era_id: str,
    prompt: str,
    generate: Callable[[], Generated],
    *,
    local_path: str | Callable[[Path], str] | None = None,
    provenance: Provenance | None = None,
    worker: Worker | None = None,
    signer: Signer | None = None,
    reuse: bool = False,
    regenerate: bool = False,
) -> VideoMetadata:
    """Run ``generate()`` (which writes the video and returns its path, or its path and its
    :class:`~ledger.events.Usage`) inside :func:`generation`; ``local_path`` (a string, or a function of
    the path) is what the app gets, as :meth:`Job.ready` takes it. With ``reuse``, first take a current
    video made with the same ``provenance`` if there is one (``Ledger.reuse``), without calling
    ``generate()``."""
    if reuse:
        if provenance is None:
            raise InvalidEntryError("reuse=True needs the provenance to match")
        reused = ledger.reuse(spot_id, era_id, prompt, provenance=provenance, worker=worker)
        if reused is not None:
            return reused
    with generation(
        ledger, spot_id, era_id, prompt, provenance=provenance, worker=worker, signer=signer,
        regenerate=regenerate,
    ) as job:  # fmt: skip
        result = generate()
        given, usage = result if isinstance(result, tuple) else (result, None)
        path = Path(given)
        return job.ready(
            path, local_path=local_path(path) if callable(local_path) else local_path, usage=usage
        )
