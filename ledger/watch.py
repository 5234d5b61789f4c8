"""The live side: keep the snapshot current while other processes append, wait until an event is in the
snapshot, and follow the log as it grows.

``watch`` and ``follow`` are woken by the event store's :meth:`~ledger.backend.EventStore.wait` (the file
store's uses watchfiles: inotify on Linux) and read only the new durable events; ``wait_for_seq`` watches
the checkpoint with watchfiles. Each also looks again every ``idle_check_ms`` (at most every 0.2 s for
``follow``), which covers any notification the kernel drops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ledger import projector as projector_room
from ledger.backend import GENESIS, EventStore
from ledger.errors import CorruptLogError, InvalidEntryError, LedgerError, LedgerIOError, io_error
from ledger.events import EventType
from ledger.fileops import FileLock, FileOps
from ledger.layout import CHECKPOINT_NAME, Layout
from ledger.log import EventLog
from ledger.model import Model
from ledger.stores import make_directory, store_name

if TYPE_CHECKING:
    import watchfiles

__all__ = ("StopEvent", "follow", "open_projector", "wait_for_seq", "watch")

log = logging.getLogger("ledger")

RETRY_FIRST, RETRY_MAX = 0.5, 30.0
"""Seconds before ``watch`` tries again after a failed projection: doubled each time, up to the maximum."""


class StopEvent(Protocol):
    """Anything with ``is_set()``, such as ``threading.Event``."""

    def is_set(self) -> bool: ...


def _only(name: str) -> Callable[[watchfiles.Change, str], bool]:
    return lambda change, path: os.path.basename(path) == name


def open_projector(
    layout: Layout,
    *,
    ops: FileOps | None = None,
    follow_symlinks: bool = False,
    store: EventStore | None = None,
) -> projector_room.Projector:
    """The :class:`~ledger.projector.Projector` of the ledger at ``layout``, wired once for every user (the
    store API, ``watch``, ``follow``): its events in ``store`` (default: the directory's
    ``events.jsonl``), a fresh write model, the projection lock."""
    ops = ops or FileOps()
    if store is None:
        store = EventLog(layout.log, ops, follow_symlinks=follow_symlinks)
    return projector_room.Projector(
        store,
        Model(store),
        layout.snapshot,
        layout.checkpoint,
        FileLock(ops, layout.snapshot_lock),
        ops=ops,
        where=store_name(store),
        follow_symlinks=follow_symlinks,
    )


def _changes(
    directory: Path, name: str, stop_event: StopEvent | None, *, debounce: int, step: int, idle_check_ms: int
) -> Iterator[None]:
    """Yield whenever ``name`` in ``directory`` changed, and at least every ``idle_check_ms``."""
    import watchfiles  # only a watcher needs it (as in ledger.log): a command that opens a ledger does not

    for _ in watchfiles.watch(
        directory,
        watch_filter=_only(name),
        debounce=debounce,
        step=step,
        stop_event=stop_event,
        rust_timeout=idle_check_ms,
        yield_on_timeout=True,
        raise_interrupt=False,
        recursive=False,
    ):
        yield


def watch(
    directory: str | os.PathLike[str] | None = None,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    stop_event: StopEvent | None = None,
    debounce: int = 100,
    step: int = 20,
    idle_check_ms: int = 1000,
    on_project: Callable[[int], None] | None = None,
    follow_symlinks: bool = False,
    ops: FileOps | None = None,
    store: EventStore | None = None,
) -> int:
    """Keep the snapshot of the ledger in ``directory`` current until ``stop_event`` is set.

    ``store``: where the events are (default: the directory's ``events.jsonl``); the caller closes it. Over
    the PostgreSQL store every app host runs one watcher on its own directory: its
    :meth:`~ledger.postgres.PostgresStore.wait` takes LISTEN as a doorbell only and reads the head row on
    every notification and every poll, and each projection reads by ``seq`` after the snapshot's head, so
    a lost notification or a reconnect delays the snapshot, never loses an event. A lost connection is one
    more failed projection: retried with the back-off below, caught up from the snapshot's head.

    Each new durable event (:meth:`ledger.backend.EventStore.wait` wakes it) reads the new tail of the log
    (durable events only: a line still being written, or a torn tail left by a crashed writer, is not
    projected) and, if there are new events, writes one snapshot for all of them by atomic rename. Several
    watchers, and inline writers, may run at once: snapshots are written under the projection lock and
    only forward. ``step`` is how long (ms) the log must stay quiet before a burst is projected;
    ``debounce`` caps how long a burst is gathered. ``on_project(seq)`` is called after each snapshot.
    Returns the number of snapshots written. ``ops`` is the file operations seam (tests).

    A snapshot that cannot be written (a full disk, a failing write) is logged and tried again after a
    back-off (0.5 s, doubling up to 30 s); the log is untouched, so nothing is lost meanwhile. Only a
    corrupt log (:class:`~ledger.errors.CorruptLogError`) or ``stop_event`` ends the watch.
    """
    for name, value in (("step", step), ("debounce", debounce), ("idle_check_ms", idle_check_ms)):
        if not 1 <= value <= 3_600_000:
            raise InvalidEntryError(f"{name} must be between 1 and 3600000 ms, not {value}")
    view = _watched(directory, snapshot, ops=ops, follow_symlinks=follow_symlinks, store=store)
    projecting = _Projecting(view, on_project)
    store = view.store
    with _stoppable(store, stop_event), _present(view.ops, Layout.of(directory).watch_lock):
        projecting()
        idle = idle_check_ms / 1000
        looked = time.monotonic()
        while stop_event is None or not stop_event.is_set():
            woke = store.wait(view.head.seq, min(idle, 0.2))  # a new durable event (stop looked at meanwhile)
            if stop_event is not None and stop_event.is_set():
                break
            now = time.monotonic()
            if projecting.backing_off(now):
                continue
            if woke:  # a burst: let it go quiet for ``step`` ms, gathering at most ``debounce`` ms of it
                _quiet(store, step / 1000, debounce / 1000)
            elif now - looked < idle:
                continue
            looked = now
            projecting()
    return projecting.written


@contextlib.contextmanager
def _present(ops: FileOps, path: Path) -> Iterator[None]:
    """Hold ``watch.lock`` shared while the watch runs (several watchers may), so that ``status`` can tell
    that one does (:func:`ledger.fileops.lock_is_held`); the kernel lets go when the process dies."""
    with contextlib.suppress(OSError):
        ops.close(ops.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666))
    lock = FileLock(ops, path)
    lock.acquire(shared=True)
    try:
        yield
    finally:
        lock.release()
        lock.close()


@contextlib.contextmanager
def _stoppable(store: EventStore, stop_event: StopEvent | None) -> Iterator[None]:
    """While in the block, a store that reconnects within a call (a PostgreSQL handle, for up to its
    ``retry_for``) gives up at once when ``stop_event`` is set."""
    if stop_event is None or not hasattr(store, "give_up"):
        yield
        return
    setattr(store, "give_up", stop_event.is_set)  # noqa: B010
    try:
        yield
    finally:
        setattr(store, "give_up", None)  # noqa: B010


def _watched(
    directory: str | os.PathLike[str] | None,
    snapshot: str | os.PathLike[str] | None,
    *,
    ops: FileOps | None,
    follow_symlinks: bool,
    store: EventStore | None,
) -> projector_room.Projector:
    """The projector a watch keeps current, its directory made first (as a writer does)."""
    layout = Layout.of(directory, snapshot, follow_symlinks=follow_symlinks)
    if (problem := layout.snapshot_problem()) is not None:
        raise InvalidEntryError(problem)
    make_directory(ops or FileOps(), layout.directory, verb="watch")  # a file: retried forever otherwise
    return open_projector(layout, ops=ops, follow_symlinks=follow_symlinks, store=store)


class _Projecting:
    """One projection of a watch, retried with a back-off after a failure (0.5 s, doubling up to 30 s)."""

    def __init__(self, view: projector_room.Projector, on_project: Callable[[int], None] | None) -> None:
        self.view, self.on_project = view, on_project
        self.written = self.failures = 0
        self.retry_at = 0.0

    def backing_off(self, now: float) -> bool:
        """Whether a failed projection's back-off is still running at ``now``."""
        return bool(self.failures) and now < self.retry_at

    def __call__(self) -> None:
        try:
            wrote = self.view.project()
        except CorruptLogError:
            raise
        except OSError as exc:  # LedgerIOError and any other I/O failure: transient until proven otherwise
            self.failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** min(self.failures - 1, 16))
            self.retry_at = time.monotonic() + delay
            log.warning(
                "cannot bring the snapshot up to date (try %d): %s; nothing recorded is lost; "
                "next try in %.1f s",
                self.failures, exc, delay,
            )  # fmt: skip
            return
        if self.failures:
            log.warning("the snapshot is up to date again, after %d failed tries", self.failures)
            self.failures = 0
        if wrote:
            self.written += 1
            if self.on_project is not None:
                self.on_project(self.view.head.seq)


def _quiet(store: EventStore, step: float, debounce: float) -> None:
    """Return once no event has been appended for ``step`` seconds, or ``debounce`` seconds have passed
    (or the store cannot be read: the projection that follows says why)."""
    deadline = time.monotonic() + debounce
    try:
        last = store.head().seq
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(step, left))
            now = store.head().seq
            if now == last:
                return
            last = now
    except OSError:  # LedgerIOError: a lost connection, looked at again by the projection
        return


def wait_for_seq(
    directory: str | os.PathLike[str] | None,
    seq: int,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    stop_event: StopEvent | None = None,
) -> bool:
    """Return ``True`` once the snapshot includes event ``seq`` (read-your-writes across processes when
    writers defer projection), ``False`` if ``timeout`` seconds pass first."""
    if timeout is not None and not 0 <= timeout <= 1e9:  # also refuses nan, which would never time out
        raise InvalidEntryError(f"timeout must be between 0 and 1000000000 seconds, not {timeout}")
    layout = Layout.of(directory, snapshot)
    try:
        return _wait_for_seq(layout, seq, timeout, stop_event)
    except LedgerError:
        raise
    except OSError as exc:  # permission denied on the directory or a file, and the like
        raise io_error("use", Path(exc.filename) if exc.filename else layout.directory, exc) from None


def _wait_for_seq(layout: Layout, seq: int, timeout: float | None, stop_event: StopEvent | None) -> bool:
    if not layout.directory.is_dir():
        raise LedgerIOError(f"there is no ledger at {layout.directory}")
    deadline = None if timeout is None else time.monotonic() + timeout
    ref = projector_room.snapshot_ref(layout.snapshot, layout.checkpoint)

    def included() -> bool:
        checkpoint = projector_room.read_checkpoint(layout.checkpoint)
        return projector_room.snapshot_is_current(layout.snapshot, checkpoint, seq, ref)

    if included():
        return True
    stop = stop_event or threading.Event()
    for _ in _changes(layout.directory, CHECKPOINT_NAME, stop, debounce=50, step=5, idle_check_ms=100):
        if included():
            return True
        if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            break
    return included()


def follow(
    directory: str | os.PathLike[str] | None,
    *,
    since_seq: int | None = None,
    stop_event: StopEvent | None = None,
    on_caught_up: Callable[[int], None] | None = None,
    idle_check_ms: int = 1000,
    store: EventStore | None = None,
) -> Iterator[tuple[bytes, EventType]]:
    """Yield each event (with its stored line) as it is appended, like ``tail -f``.

    Starts after the events already in the log, or after event ``since_seq`` (so a consumer can resume
    where it stopped). ``on_caught_up(seq)`` is called once the existing events are behind it, before it
    starts waiting. Runs until ``stop_event`` is set (looked at least every 0.2 s). Reads through the
    event-store interface: only durable events (:meth:`ledger.backend.EventStore.read`), woken by
    :meth:`~ledger.backend.EventStore.wait`.
    """
    layout = Layout.of(directory)
    own = store is None  # ``store``: a ledger's own (not closed here), else the file store in ``directory``
    if own and not layout.directory.is_dir():  # another store's events need no directory here
        raise LedgerIOError(f"there is no ledger at {layout.directory}")
    if store is None:
        store = EventLog(layout.log, FileOps())
    try:
        if since_seq is None and not own:
            head = store.head()
        elif since_seq is None:
            view = open_projector(layout)
            view.refresh()  # from the checkpoint: no replay of the whole log
            head = view.head
            view.store.close()
        else:
            head = GENESIS
            for lines, events, end in store.read(GENESIS):
                for line, event in zip(lines, events, strict=True):
                    if event.seq > since_seq:
                        yield line, event
                head = end
        if on_caught_up is not None:
            on_caught_up(head.seq)
        slice_ = min(idle_check_ms, 200) / 1000
        while stop_event is None or not stop_event.is_set():
            if not store.wait(head.seq, slice_):
                continue
            for lines, events, end in store.read(head):
                yield from zip(lines, events, strict=True)
                head = end
    finally:
        if own:
            store.close()
