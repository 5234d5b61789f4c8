"""``video-ledger metrics``: the ledger in the Prometheus text format, kept current incrementally.

An :class:`Exporter` reads the log once when it starts, then only what was appended since, on every
render: a scrape never reads the whole log. The gauges (entries per status, the head, the app's file and
its lag, whether a watch runs) come from :func:`ledger.health.status`, cheap at any size; the counters
(events, attempts, outcomes, failures by reason class) from :class:`projections.metrics.Counters`.
:func:`serve` answers ``GET /metrics`` on an address the operator gives; :func:`keep_textfile` keeps a file
for node_exporter's textfile collector current.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from ledger import health
from ledger.backend import GENESIS, EventStore
from ledger.errors import StaleHeadError
from ledger.fileops import FileOps, atomic_write, temp_files
from projections.metrics import Counters

__all__ = ("Exporter", "keep_textfile", "serve")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exporter:
    """The metrics of one ledger (``directory``, its events in ``store``, as :class:`ledger.Ledger` takes
    them), opened read-only for as long as the exporter lives (:meth:`close`)."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        snapshot: str | os.PathLike[str] | None = None,
        store: EventStore | str | os.PathLike[str] | None = None,
    ) -> None:
        self._stack = contextlib.ExitStack()
        self.layout, self.store = self._stack.enter_context(health.open_readonly(directory, snapshot, store))
        self.head = GENESIS
        self.counters = Counters()

    def refresh(self) -> None:
        """Fold what was appended since the last refresh (the whole log the first time; again, from the
        start, if the log was replaced)."""
        try:
            self._fold()
        except StaleHeadError:  # what was folded is another log's: start again
            self.head, self.counters = GENESIS, Counters()
            self._fold()

    def _fold(self) -> None:
        for batch in self.store.read(self.head):  # a batch at a time: memory stays bounded
            self.counters.add(batch.events)
            self.head = batch.end

    def render(self) -> str:
        """The metrics now, in the Prometheus text exposition format."""
        self.refresh()
        found = health.status(self.layout.directory, snapshot=self.layout.snapshot, store=self.store)
        return "".join(_lines(found, self.counters))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lines(found: health.Status, counters: Counters) -> Iterator[str]:
    def metric(name: str, kind: str, text: str, samples: dict[str, float] | float) -> Iterator[str]:
        yield f"# HELP video_ledger_{name} {text}\n# TYPE video_ledger_{name} {kind}\n"
        if isinstance(samples, dict):
            label = LABELS.get(name, "reason")
            for value, n in sorted(samples.items()):
                yield f'video_ledger_{name}{{{label}="{_escape(value)}"}} {n!r}\n'
        else:
            yield f"video_ledger_{name} {samples!r}\n"

    yield from metric("entries", "gauge", "Entries by status.", dict(found.by_status))
    yield from metric("live_attempts", "gauge", "Entries generating now.", found.live_attempts)
    yield from metric("head_seq", "gauge", "The log's last durable event.", found.head_seq)
    if found.head_time is not None:
        stamp = health.timestamp(found.head_time)
        yield from metric("last_event_timestamp_seconds", "gauge", "When the last event was recorded.", stamp)
    if found.snapshot_seq is not None:
        yield from metric("snapshot_seq", "gauge", "The event the app's file reflects.", found.snapshot_seq)
    yield from metric("snapshot_lag_events", "gauge", "Events the app's file lacks.", found.lag_events)
    yield from metric(
        "snapshot_lag_seconds", "gauge", "How long the oldest event the app's file lacks has waited.",
        found.lag_seconds,
    )  # fmt: skip
    yield from metric("watch_running", "gauge", "1 when a video-ledger watch runs.", int(found.watcher))
    yield from metric("healthy", "gauge", "1 when status finds no problem.", int(found.healthy))
    yield from metric("events_total", "counter", "Events recorded, by type.", dict(counters.events))
    yield from metric("attempts_total", "counter", "Generation attempts started.", counters.attempts)
    yield from metric(
        "attempt_outcomes_total", "counter", "Attempts ended, by outcome.", dict(counters.outcomes)
    )
    yield from metric(
        "failures_total", "counter", "Failed attempts by reason class (the error's leading name).",
        dict(counters.failures),
    )  # fmt: skip
    yield from metric(
        "gpu_seconds_total", "counter", "GPU-seconds the workers reported, by the attempt's outcome.",
        {"ready": 0.0, "failed": 0.0, **counters.gpu_seconds},
    )  # fmt: skip


LABELS = {
    "entries": "status", "events_total": "type", "attempt_outcomes_total": "outcome",
    "gpu_seconds_total": "outcome",
}  # fmt: skip
"""Each labelled metric's label (``reason`` otherwise)."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def serve(exporter: Exporter, host: str, port: int, stop: threading.Event) -> None:
    """Answer ``GET /metrics`` (and ``/``) on ``host:port`` (IPv4 or IPv6) until ``stop`` is set. Each
    connection has its own thread and a 10-second read timeout, so an idle client holds up neither other
    scrapes nor the stop; renders take turns."""
    rendering = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 10.0

        def do_GET(self) -> None:
            if self.path not in ("/", "/metrics"):
                self.send_error(404)
                return
            with rendering:
                body = exporter.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds is not news

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    with Server((host, port), Handler) as server:
        running = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        running.start()
        stop.wait()
        server.shutdown()


def keep_textfile(exporter: Exporter, path: Path, stop: threading.Event, *, interval: float = 15.0) -> None:
    """Write the metrics to ``path`` (atomically: the collector reads a whole file) now and whenever the
    log moves or ``interval`` seconds pass, until ``stop`` is set."""
    ops = FileOps()
    for leftover in temp_files(path):  # a writer killed between its write and its rename
        leftover.unlink(missing_ok=True)
    while True:
        atomic_write(ops, path, exporter.render().encode(), label="metrics", durable=False)
        waited = 0.0
        while waited < interval and not stop.is_set() and not exporter.store.wait(exporter.head.seq, 0.2):
            waited += 0.2
        if stop.is_set():
            return
