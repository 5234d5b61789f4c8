"""Several hosts on one PostgreSQL store: writer processes appending through the API,
``video-ledger --store URL --dir DIR watch`` on two directories converging to byte-identical snapshots (and
to a ``rebuild`` in a third), two processes racing one entry, a watcher stopped while events arrive, and a
watcher outliving a server restart. Real processes, a real server (``tests/pg.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

from ledger import Ledger, LedgerIOError
from ledger import watch as watch_view
from ledger.backend import Head
from ledger.memory import MemoryLog, MemoryStore
from ledger.watch import wait_for_seq

from .conftest import PYTHON, ROOT, entry
from .pg import CuttingProxy, PgServer, require_psycopg

require_psycopg()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VIDEO_LEDGER_STORE", None)
    return env


def watcher(url: str, directory: Path) -> subprocess.Popen[str]:
    """``video-ledger --store URL --dir DIR watch``, as every app host runs it; started once it watches."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "ledger", "--store", url, "--dir", str(directory), "watch", "--step", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert proc.stderr is not None and "watching" in proc.stderr.readline()
    deadline = time.monotonic() + 30
    while not directory.is_dir():  # made by the watcher just after it says so
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    return proc


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (the watcher finishes its snapshot and exits 0); what it said on stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


WRITER = textwrap.dedent(
    """
    import sys
    from ledger import Ledger, VideoMetadata
    url, directory, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Ledger(directory, store=url, projection="deferred") as ledger:
        for i in range(n):
            ledger.set_video_metadata(
                VideoMetadata(spot_id=f"{name}-{i}", era_id="era", prompt="p", status="pending")
            )
    """
)


def rebuild_in(url: str, directory: Path) -> bytes:
    with Ledger(directory, store=url) as ledger:
        ledger.rebuild()
    return (directory / "generated-videos.json").read_bytes()


def test_eight_writers_two_watchers_converge_to_a_rebuild(
    tmp_path: Path, pg_server: PgServer, long_run: bool
) -> None:
    url = pg_server.app_database()
    writers, per_writer = 8, 500 if long_run else 150
    total = writers * per_writer
    watchers = [watcher(url, tmp_path / name) for name in ("host-a", "host-b")]
    try:
        procs = [
            subprocess.Popen(
                [PYTHON, "-c", WRITER, url, str(tmp_path / f"w{k}"), f"w{k}", str(per_writer)], env=_env()
            )
            for k in range(writers)
        ]
        for proc in procs:
            assert proc.wait(timeout=300) == 0
        for name in ("host-a", "host-b"):
            assert wait_for_seq(tmp_path / name, total, timeout=60), name
    finally:
        for proc in watchers:
            stop(proc)
    with Ledger(tmp_path / "check", store=url, readonly=True) as ledger:
        assert [e.seq for e in ledger.history()] == list(range(1, total + 1))
        report = ledger.verify()
        assert report.ok and report.events == total, report
    a, b = ((tmp_path / name / "generated-videos.json").read_bytes() for name in ("host-a", "host-b"))
    assert a == b == rebuild_in(url, tmp_path / "host-c")
    assert a.count(b'"spotId"') == total


RACER = textwrap.dedent(
    """
    import os, sys, time
    from ledger import AttemptInProgressError, Ledger
    url, directory, go = sys.argv[1], sys.argv[2], sys.argv[3]
    with Ledger(directory, store=url) as ledger:
        while not os.path.exists(go):
            time.sleep(0.001)
        try:
            with ledger.generation("colosseum", "rome-80ad", "a prompt") as job:
                time.sleep(1.0)  # the other racer arrives while this attempt is live
                job.ready(os.path.join(directory, "videos", "colosseum.mp4"))
        except AttemptInProgressError as exc:
            print("refused", type(exc).__name__)
        else:
            print("won", job.attempt)
    """
)


def test_two_processes_racing_one_entry_give_one_legal_order(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.app_database()
    with Ledger(tmp_path / "setup", store=url) as ledger:
        ledger.set_video_metadata(entry("colosseum", "rome-80ad", "pending"))
    for k in range(2):  # a ready video's path is relative to the ledger directory: each host has the file
        (tmp_path / f"host-{k}" / "videos").mkdir(parents=True)
        (tmp_path / f"host-{k}" / "videos" / "colosseum.mp4").write_bytes(b"video")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", RACER, url, str(tmp_path / f"host-{k}"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for k in range(2)
    ]
    time.sleep(1.0)  # both opened and waiting
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    said = sorted(out.strip() for out, _ in outs)
    assert said[0] == "refused AttemptInProgressError" and said[1].startswith("won "), outs
    with Ledger(tmp_path / "check", store=url, readonly=True) as ledger:
        assert [e.type for e in ledger.history()] == ["pending", "generating", "ready"]
        assert ledger.verify().ok
        got = ledger.get_video_metadata("colosseum", "rome-80ad")
        assert got is not None and got.status == "ready"


def test_a_watcher_stopped_while_a_thousand_events_arrive_catches_up(
    tmp_path: Path, pg_server: PgServer
) -> None:
    url = pg_server.app_database()
    proc = watcher(url, tmp_path / "host")
    with Ledger(tmp_path / "writer", store=url, projection="deferred") as ledger:
        ledger.set_video_metadata(entry("first", "era", "pending"))
        assert wait_for_seq(tmp_path / "host", 1, timeout=30)
        stop(proc)
        for k in range(10):
            ledger.set_many(entry(f"spot-{k}-{i}", "era", "pending") for i in range(100))
        assert ledger.head().seq == 1001
    assert not wait_for_seq(tmp_path / "host", 2, timeout=0.5), "nobody projected while it was down"
    proc = watcher(url, tmp_path / "host")
    try:
        assert wait_for_seq(tmp_path / "host", 1001, timeout=60)
    finally:
        stop(proc)
    assert (tmp_path / "host" / "generated-videos.json").read_bytes() == rebuild_in(url, tmp_path / "rebuilt")


def test_a_watcher_survives_a_server_restart_and_catches_up(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.app_database()
    proc = watcher(url, tmp_path / "host")
    try:
        with Ledger(tmp_path / "writer", store=url, projection="deferred") as ledger:
            ledger.set_video_metadata(entry("before", "era", "pending"))
        assert wait_for_seq(tmp_path / "host", 1, timeout=30)
        pg_server.stop("immediate")  # a crash: the watcher's connections die without a goodbye
        time.sleep(1.5)  # the watcher polls a server that is not there
        pg_server.start()
        pg_server.wait_ready()
        with Ledger(tmp_path / "writer", store=url, projection="deferred") as ledger:
            ledger.set_many(entry(f"after-{i}", "era", "pending") for i in range(50))
        assert wait_for_seq(tmp_path / "host", 51, timeout=60), "caught up after the restart"
    finally:
        err = stop(proc)
    assert "Traceback" not in err
    assert (tmp_path / "host" / "generated-videos.json").read_bytes() == rebuild_in(url, tmp_path / "rebuilt")


class _LostConnection(MemoryStore):
    """A handle whose ``head`` fails while ``down`` is set, as a PostgreSQL handle's does once its
    reconnects run out (the only store method ``watch`` calls between a wake-up and its projection)."""

    down = False

    def head(self) -> Head:
        if self.down:
            raise LedgerIOError("lost the connection to <test>: server closed the connection")
        return super().head()


def test_a_watcher_that_cannot_read_the_head_while_a_burst_settles_retries_and_catches_up(
    tmp_path: Path,
) -> None:
    log = MemoryLog()
    flaky = _LostConnection(log)
    stop_event = threading.Event()
    projected: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            watch_view.watch(
                tmp_path / "host", store=flaky, stop_event=stop_event, on_project=projected.append
            )
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        with Ledger(tmp_path / "writer", store=MemoryStore(log), projection="deferred") as ledger:
            flaky.down = True  # the burst's settle (and the projection) cannot read the head
            ledger.set_video_metadata(entry("colosseum", "rome-80ad", "pending"))
            time.sleep(0.5)
            assert thread.is_alive() and not failed, failed
            flaky.down = False
            deadline = time.monotonic() + 30
            while not projected and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        stop_event.set()
        thread.join(30)
    assert not failed and projected[-1] == 1


def test_a_watcher_stops_at_once_on_sigterm_while_the_server_is_away(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """SIGTERM while a projection is reconnecting to a server that is gone ends the watcher at once, not
    when the handle's reconnect time ($VIDEO_LEDGER_PG_RETRY, 30 s by default) runs out."""
    url = pg_server.app_database()
    proxy = CuttingProxy(pg_server.host, pg_server.port)
    try:
        with Ledger(tmp_path / "writer", store=url) as ledger:
            ledger.set_video_metadata(entry("colosseum", "rome-80ad", "pending"))
        proc = watcher(proxy.url(url), tmp_path / "host")
        assert wait_for_seq(tmp_path / "host", 1, timeout=30)
        # The server seems gone: the watcher's two connections cut (each at its next look at the head),
        # new ones refused from the first cut on. Both looks read the last record.
        proxy.refuse_at = 1
        proxy.then = ("before", b"FROM ledger_events")
        proxy.arm("before", b"FROM ledger_events")
        deadline = time.monotonic() + 30
        while proxy.cuts < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(1)  # the projection that met the cut is reconnecting
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert proc.returncode == 0 and took < 5, f"exit {proc.returncode} after {took:.1f} s: {err}"
    assert "Traceback" not in err and err.splitlines()[-1].startswith("video-ledger: stopped after"), err


def test_a_watcher_whose_schema_is_dropped_ends_with_one_line_instead_of_retrying(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """Tables dropped behind the ledger's back (with every record in them) are no passing failure: the
    watcher ends with one line and exit 1 (it retried for ever, saying the log was intact), and so does any
    command on the store."""
    import psycopg

    from .pg import superuser_url

    url = pg_server.app_database()
    with Ledger(tmp_path / "writer", store=url) as ledger:
        ledger.set_video_metadata(entry("first", "era", "pending"))
    proc = watcher(url, tmp_path / "host")
    assert wait_for_seq(tmp_path / "host", 1, timeout=30)
    with psycopg.connect(superuser_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE ledger_events, ledger_head CASCADE")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("video-ledger: error: ") and "dropped or renamed" in last, err
    assert "Traceback" not in err
    listed = subprocess.run(
        [PYTHON, "-m", "ledger", "--store", url, "--dir", str(tmp_path / "host"), "list"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert listed.returncode == 1 and listed.stderr.count("\n") == 1, listed.stderr
