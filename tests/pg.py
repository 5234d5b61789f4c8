"""A real PostgreSQL server for the tests, started from the installed binaries (never a mock).

One server per test session (:func:`pg_server`, started on first use), one fresh database per test
(:func:`pg_url`). The binaries are found through ``$VIDEO_LEDGER_PG_BIN`` (when set, the only place looked
at), else ``pg_config --bindir``, else the newest of Debian's ``/usr/lib/postgresql/*/bin``. The cluster is
made by ``initdb --no-sync`` in a temporary directory (owned by the ``postgres`` user when the tests run as
root: the server refuses root), listens on 127.0.0.1 and a free port only (its unix socket stays inside that
directory) and is stopped with ``pg_ctl -m fast`` at the end. Every role is trusted but one,
:data:`PASSWORD_ROLE`, which must give its password (:meth:`PgServer.password_database`). Where no
binaries exist the PostgreSQL tests skip, saying why; under ``CI=true`` they fail instead, so CI can never
pass by skipping them.

The test server runs with ``fsync=off``: its data does not have to survive a power loss, only a server crash
(``pg_ctl -m immediate``), which the committed WAL in the kernel's page cache does. It makes the tests faster
and says nothing about a production server's settings (``docs/scaling.md``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ledger.backend import EventStore

__all__ = (
    "PASSWORD",
    "PASSWORD_ROLE",
    "PgServer",
    "find_bindir",
    "pg_server",
    "pg_url",
    "require_psycopg",
    "superuser_url",
    "tamper",
)


APP_ROLE = "ledger_app"
"""The role the stores under test connect as: no superuser, only what the app needs."""


PASSWORD_ROLE = "ledger_pw"
PASSWORD = "pw-5f1d9c"
"""A role the server asks for its password (every other role is trusted), and that password."""


def find_bindir() -> Path | None:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are, or ``None``."""
    candidates: list[Path] = []
    if os.environ.get("VIDEO_LEDGER_PG_BIN"):  # set: the only place looked at
        candidates.append(Path(os.environ["VIDEO_LEDGER_PG_BIN"]))
    elif shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    if not os.environ.get("VIDEO_LEDGER_PG_BIN"):
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    """A throwaway cluster: :meth:`start`, :meth:`stop` (``mode`` as ``pg_ctl -m``), :meth:`database`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="video-ledger-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self._count = itertools.count(1)
        self._user: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root: hand the directory to its own user
            entry = pwd.getpwnam("postgres")
            self._user = "postgres"
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", str(self.data))
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
        }
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("".join(f"{k} = {v}\n" for k, v in conf.items()))
        hba = self.data / "pg_hba.conf"  # one role must give its password; every other is trusted
        hba.write_text(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command = [str(self.bindir / tool), *args]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def start(self, *, durable: bool = False) -> None:
        """Start the server: with fsync off (the tests), or ``durable`` (fsync and synchronous commit on,
        as the benchmarks measure it)."""
        log = str(self.root / "server.log")
        options = "-c fsync=on -c synchronous_commit=on" if durable else "-c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def url(self) -> str:
        """The superuser's URL of the maintenance database."""
        return self.database_url("postgres")

    def database_url(self, name: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{name}"

    def database(self) -> str:
        """A fresh, empty database: its superuser URL."""
        import psycopg

        name = f"ledger_{next(self._count)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.database_url(name)

    def app_database(self) -> str:
        """A fresh database holding an empty ledger (:func:`ledger.postgres.init` run by its owner): the URL
        of the app role, which holds only what ``init(app_role=...)`` grants it."""
        import psycopg

        from ledger.postgres import init

        url = self.database()
        with psycopg.connect(self.url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
                conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
        init(url, app_role=APP_ROLE)
        return self.database_url(url.rsplit("/", 1)[1], APP_ROLE)

    def password_database(self) -> str:
        """A fresh database holding an empty ledger whose app role (:data:`PASSWORD_ROLE`) must give its
        password (:data:`PASSWORD`, scram-sha-256): that role's URL, without the password."""
        import psycopg

        from ledger.postgres import init

        url = self.database()
        with psycopg.connect(self.url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PASSWORD_ROLE,)).fetchone():
                conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        init(url, app_role=PASSWORD_ROLE)
        return self.database_url(url.rsplit("/", 1)[1], PASSWORD_ROLE)

    def wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=5):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def superuser_url(url: str) -> str:
    """``url`` (``postgresql://user@host:port/db``) as the superuser."""
    return "postgresql://postgres@" + url.split("@", 1)[1]


def tamper(url: str, seq: int) -> None:
    """Flip one byte inside record ``seq``'s stored line, as a superuser can (its session bypasses the
    append-only triggers)."""
    import psycopg

    with psycopg.connect(superuser_url(url), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        row = conn.execute("SELECT line FROM ledger_events WHERE seq = %s", (seq,)).fetchone()
        assert row is not None
        line = bytearray(row[0])
        line[10] ^= 1
        conn.execute("UPDATE ledger_events SET line = %s WHERE seq = %s", (bytes(line), seq))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL tests cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_psycopg() -> None:
    """At the top of a test module that imports psycopg: skip it (fail under ``CI=true``) without it."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[postgres]')")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's server, started on first use and stopped (``-m fast``) at the end."""
    require_psycopg()
    bindir = find_bindir()
    if bindir is None:
        _unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found "
            + (
                f"in VIDEO_LEDGER_PG_BIN={os.environ['VIDEO_LEDGER_PG_BIN']}"
                if os.environ.get("VIDEO_LEDGER_PG_BIN")
                else "(set VIDEO_LEDGER_PG_BIN, put pg_config on PATH or install postgresql)"
            )
        )
        raise AssertionError("unreachable")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server as")
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("fast")
        server.remove()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The superuser URL of a fresh, empty database on the session's server."""
    return pg_server.database()


class OnPostgres:
    """A test case whose stores are PostgreSQL stores on the session's server (:func:`pg_server`): each a
    fresh database, connected as the app role (:meth:`PgServer.app_database`)."""

    server: PgServer

    @pytest.fixture(autouse=True)
    def _server(self, pg_server: PgServer) -> None:
        self.server = pg_server

    def create_store(self) -> EventStore:
        from ledger.postgres import PostgresStore

        return PostgresStore(self.server.app_database())

    def reopen(self, store: EventStore) -> EventStore:
        from ledger.postgres import PostgresStore

        assert isinstance(store, PostgresStore)
        return PostgresStore(store.url)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server that can cut a connection at a chosen moment.

    ``arm("before")``: the next client message holding ``COMMIT`` (or another marker) is dropped and both
    sides closed (the server never sees it: it rolls back). ``arm("after")``: that message is passed on,
    and the connection closed as soon as the server answers, the answer dropped (the server committed; the
    client cannot know). ``refuse = True`` refuses new connections (the server seems gone). ``cuts``
    counts the cuts.
    """

    def __init__(self, host: str, port: int) -> None:
        import threading

        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.armed: str | None = None
        self.marker = b"COMMIT"
        self.refuse = False
        self.cuts = 0
        self.then: tuple[str, bytes] | None = None
        """Armed again with this (when, marker) after the next cut."""
        self.refuse_at: int | None = None
        """Refuse new connections once this many cuts were made."""
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (``postgresql://user@host:port/db``) through this proxy."""
        user, rest = url.removeprefix("postgresql://").split("@", 1)
        return f"postgresql://{user}@127.0.0.1:{self.port}/{rest.split('/', 1)[1]}"

    def arm(self, when: str, marker: bytes = b"COMMIT") -> None:
        """Cut the next client message holding ``marker`` (``COMMIT`` or another statement's text)."""
        assert when in ("before", "after")
        self.marker = marker
        self.armed = when

    def _cut(self) -> None:
        with self._lock:
            self.cuts += 1
            if self.then is not None:
                (self.armed, self.marker), self.then = self.then, None
            if self.refuse_at is not None and self.cuts >= self.refuse_at:
                self.refuse = True

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pending = {"answer_cuts": False}

            def shut(a: socket.socket = client, b: socket.socket = server) -> None:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()

            def upstream(
                a: socket.socket = client,
                b: socket.socket = server,
                p: dict[str, bool] = pending,
                shut: Callable[[], None] = shut,  # this connection's (the name is the newest one's)
            ) -> None:
                while True:
                    try:
                        data = a.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return shut()
                    with self._lock:
                        when = self.armed if self.marker in data else None
                        if when:
                            self.armed = None
                    if when == "before":
                        self._cut()  # first: a client reconnecting at once meets refuse_at already set
                        return shut()
                    if when == "after":
                        p["answer_cuts"] = True
                    try:
                        b.sendall(data)
                    except OSError:
                        return shut()

            def downstream(
                a: socket.socket = client,
                b: socket.socket = server,
                p: dict[str, bool] = pending,
                shut: Callable[[], None] = shut,  # this connection's (the name is the newest one's)
            ) -> None:
                while True:
                    try:
                        data = b.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return shut()
                    if p["answer_cuts"]:
                        self._cut()  # first: a client reconnecting at once meets refuse_at already set
                        return shut()
                    try:
                        a.sendall(data)
                    except OSError:
                        return shut()

            threading.Thread(target=upstream, daemon=True).start()
            threading.Thread(target=downstream, daemon=True).start()
