"""The live side: keep the snapshot current while other processes append, wait until an event is in the
snapshot, and follow the log as it grows.

``watch`` and ``follow`` are woken by the event store's :meth:`~ledger.backend.EventStore.wait` (the file
store's uses watchfiles: inotify on Linux) and read only the new durable events; ``wait_for_seq`` watches
the checkpoint with watchfiles. Each also looks again every ``idle_check_ms`` (at most every 0.2 s for
``follow``), which covers any notification the kernel drops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import watchfiles

from ledger import projector as snapshot_view
from ledger.backend import GENESIS, EventStore
from ledger.errors import CorruptLogError, InvalidEntryError, LedgerError, LedgerIOError, io_error
from ledger.events import EventType
from ledger.fileops import FileLock, FileOps
from ledger.layout import CHECKPOINT_NAME, Layout
from ledger.log import EventLog
from ledger.model import Model

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
) -> snapshot_view.Projector:
    """A :class:`Projector` for the ledger at ``layout`` (its events in ``store``, default the directory's
    ``events.jsonl``), as the store builds it."""
    ops = ops or FileOps()
    if store is None:
        store = EventLog(layout.log, ops, follow_symlinks=follow_symlinks)
    lock = FileLock(ops, layout.snapshot_lock)
    return snapshot_view.Projector(
        store,
        Model(store),
        layout.snapshot,
        layout.checkpoint,
        lock,
        ops=ops,
        where=layout.log if isinstance(store, EventLog) else _where(store),
        follow_symlinks=follow_symlinks,
    )


def _where(store: EventStore) -> Path:
    """How errors name ``store``: its file, or what it calls itself (as the store API names it)."""
    where = getattr(store, "path", None) or getattr(store, "where", None)
    return where if isinstance(where, Path) else Path(f"<{type(store).__name__}>")


def _changes(
    directory: Path, name: str, stop_event: StopEvent | None, *, debounce: int, step: int, idle_check_ms: int
) -> Iterator[None]:
    """Yield whenever ``name`` in ``directory`` changed, and at least every ``idle_check_ms``."""
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
    layout = Layout.of(directory, snapshot, follow_symlinks=follow_symlinks)
    if (problem := layout.snapshot_problem()) is not None:
        raise InvalidEntryError(problem)
    try:
        (ops or FileOps()).make_dirs(layout.directory)  # each new directory's entry fsynced, as a writer does
    except OSError as exc:
        raise LedgerIOError(f"cannot watch {layout.directory}: {exc.strerror}") from None
    if not layout.directory.is_dir():  # a file: another store's watcher would retry it forever
        raise LedgerIOError(f"cannot watch {layout.directory}: it is not a directory")
    view = open_projector(layout, ops=ops, follow_symlinks=follow_symlinks, store=store)
    written = failures = 0
    retry_at = 0.0

    def project() -> None:
        nonlocal written, failures, retry_at
        try:
            wrote = view.project()
        except CorruptLogError:
            raise
        except OSError as exc:  # LedgerIOError and any other I/O failure: transient until proven otherwise
            failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** min(failures - 1, 16))
            retry_at = time.monotonic() + delay
            log.warning(
                "cannot bring the snapshot up to date (try %d): %s; nothing recorded is lost; "
                "next try in %.1f s",
                failures, exc, delay,
            )  # fmt: skip
            return
        if failures:
            log.warning("the snapshot is up to date again, after %d failed tries", failures)
            failures = 0
        if wrote:
            written += 1
            if on_project is not None:
                on_project(view.head.seq)

    store = view.store
    # A PostgreSQL handle reconnects for up to its retry_for within one call: stopping ends that at once.
    stoppable = stop_event is not None and hasattr(store, "give_up")
    if stop_event is not None and stoppable:
        setattr(store, "give_up", stop_event.is_set)  # noqa: B010
    try:
        project()
        idle = idle_check_ms / 1000
        looked = time.monotonic()
        while stop_event is None or not stop_event.is_set():
            woke = store.wait(view.head.seq, min(idle, 0.2))  # a new durable event (stop looked at meanwhile)
            if stop_event is not None and stop_event.is_set():
                break
            now = time.monotonic()
            if failures and now < retry_at:
                continue
            if woke:  # a burst: let it go quiet for ``step`` ms, gathering at most ``debounce`` ms of it
                _settle(store, step / 1000, debounce / 1000)
            elif now - looked < idle:
                continue
            looked = now
            project()
    finally:
        if stoppable:
            setattr(store, "give_up", None)  # noqa: B010
    return written


def _settle(store: EventStore, step: float, debounce: float) -> None:
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
    ref = snapshot_view.snapshot_ref(layout.snapshot, layout.checkpoint)

    def included() -> bool:
        checkpoint = snapshot_view.read_checkpoint(layout.checkpoint)
        return snapshot_view.snapshot_is_current(layout.snapshot, checkpoint, seq, ref)

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
