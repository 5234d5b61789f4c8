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
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from ledger.errors import IllegalTransitionError, LedgerError
from ledger.events import VideoMetadata
from ledger.media import app_path, file_digest

__all__ = ("Job", "Recorder", "Terminated", "app_path", "file_digest", "generation")

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


class Recorder(Protocol):
    """What a generation attempt needs of the ledger (:class:`ledger.Ledger` is one): the pipeline sits
    below the store API and imports nothing of it."""

    @property
    def directory(self) -> Path: ...

    def begin_attempt(
        self, spot_id: str, era_id: str, prompt: str, *, local_path: str | None = None,
        takeover: int | None = None,
    ) -> VideoMetadata: ...  # fmt: skip

    def mark_video_ready(
        self, spot_id: str, era_id: str, local_path: str, *, size: int | None = None,
        sha256: str | None = None, attempt: int | None = None,
    ) -> VideoMetadata: ...  # fmt: skip

    def mark_video_failed(
        self, spot_id: str, era_id: str, error: str, *, attempt: int | None = None
    ) -> VideoMetadata: ...

    def get_video_metadata(self, spot_id: str, era_id: str) -> VideoMetadata | None: ...


class Job:
    """One attempt inside a ``generation()`` block."""

    def __init__(self, ledger: Recorder, spot_id: str, era_id: str, attempt: int) -> None:
        self.ledger = ledger
        self.spot_id = spot_id
        self.era_id = era_id
        self.attempt = attempt
        """This attempt's number: the ``seq`` of its ``generating`` event."""
        self.entry: VideoMetadata | None = None
        """The entry once ``ready`` was recorded."""

    @property
    def done(self) -> bool:
        return self.entry is not None

    def ready(self, path: str | os.PathLike[str], *, local_path: str | None = None) -> VideoMetadata:
        """Record ``ready`` for the file at ``path`` with its size and SHA-256.

        ``local_path`` is what the entry records as ``localPath``, the path the app gets: relative, and not
        leaving the ledger directory (default: ``path`` relative to the ledger directory, which ``path`` must
        then be under); see :func:`app_path`. The file must be complete before this call.
        If this attempt is no longer the entry's current one (it was reaped or taken over), raises
        :class:`~ledger.errors.IllegalTransitionError` and records nothing.
        """
        recorded = app_path(self.ledger.directory, path, local_path)
        size, sha256 = file_digest(path)
        self.entry = self.ledger.mark_video_ready(
            self.spot_id, self.era_id, recorded, size=size, sha256=sha256, attempt=self.attempt
        )
        return self.entry


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

    def handler(signum: int, frame: FrameType | None) -> Any:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def generation(
    ledger: Recorder,
    spot_id: str,
    era_id: str,
    prompt: str,
    *,
    local_path: str | None = None,
    takeover: int | None = None,
) -> Iterator[Job]:
    """Record one generation attempt; see :meth:`ledger.Ledger.generation`."""
    started = ledger.begin_attempt(spot_id, era_id, prompt, local_path=local_path, takeover=takeover)
    assert started.attempt is not None  # begin_attempt records a generating event of this format
    job = Job(ledger, spot_id, era_id, started.attempt)
    with _sigterm_raises():
        try:
            yield job
        except BaseException as exc:
            if not job.done:
                _record_failure(ledger, job, _describe(exc))
            raise
        if not job.done:
            _record_failure(ledger, job, NOT_READY)


def _record_failure(ledger: Recorder, job: Job, error: str) -> None:
    try:
        ledger.mark_video_failed(job.spot_id, job.era_id, error, attempt=job.attempt)
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


def generate_and_store_video(
    ledger: Recorder,
    spot_id: str,
    era_id: str,
    prompt: str,
    generate: Callable[[], str | os.PathLike[str]],
    *,
    local_path: str | Callable[[Path], str] | None = None,
) -> VideoMetadata:
    """Run ``generate()`` (which writes the video and returns its path) inside :func:`generation`;
    ``local_path`` (a string, or a function of the path) is what the app gets, as :meth:`Job.ready` takes
    it."""
    with generation(ledger, spot_id, era_id, prompt) as job:
        path = Path(generate())
        return job.ready(path, local_path=local_path(path) if callable(local_path) else local_path)
