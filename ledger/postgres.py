"""The PostgreSQL event store: the same log, the same lines, in a database several hosts share.

An :class:`~ledger.backend.EventStore` on PostgreSQL (psycopg 3: ``pip install 'video-ledger[postgres]'``).
Each record is one row of ``ledger_events``: its ``seq``, its line exactly as the file format frames it
(``bytea``, byte for byte: one hash chain whichever store holds it) and the id of the request that appended
it. One row of ``ledger_head`` holds the last record's seq, hash and time (checked as each append commits);
it is the single lock every append takes, and no reader or writer takes the tip from it: the tip is the
last record.

An append is one transaction, and ``seq`` comes from the head row under its lock, never from a sequence (a
rolled-back sequence value leaves a hole): commit order is seq order, so a reader that saw seq N and reads
``seq > N`` later can never skip a record that committed late. When the caller's head is the tip (a single
writer, or any writer whose handle is current) it is one round trip: ``decide`` runs first, here, on that
head with nothing unseen, then one pipeline sends ``BEGIN``, one statement that moves the head row only if
it still is the caller's head (``UPDATE ledger_head … WHERE seq = … AND hash = … AND ts = …``, which takes
the lock; under READ COMMITTED an ``UPDATE`` that waited for another writer re-checks its ``WHERE`` on the
row that writer committed), inserts the new rows only if it did and NOTIFYs, and ``COMMIT``. If the head
had moved, nothing was written and the append takes the lock: ``SELECT … FROM ledger_head FOR UPDATE``
and the records after the caller's head (one round trip), ``decide`` on them, then the insert, the head's
update and the NOTIFY with ``COMMIT`` (another): three round trips in all. A handle that found its head
moved takes the lock at once on its next appends (two round trips), until one finds nothing unseen: while
other writers are appending, trying the one round trip first would mostly cost one more. ``decide``
returning nothing on the tip costs one read of the head row, no transaction.

Every append carries a request id (a fresh UUID) stored with its rows. When the connection breaks during an
append, the store reconnects (for up to ``retry_for`` seconds) and runs the transaction again, first looking
the request up under the head lock: if the lost attempt committed (the connection dropped after ``COMMIT``
was sent), its rows are found and returned, nothing is appended twice; if not, ``decide`` runs again on the
tip as it is then and its records are appended once. So ``decide`` may run more than once (and once more
when the head it was first run on had moved); only its last run's records land, and an error it raised on
a head that had moved is dropped, not raised. When the server stays away:
:class:`~ledger.errors.LedgerIOError` if ``COMMIT`` had not been sent (nothing recorded),
:class:`~ledger.errors.DurabilityError` if it had (the store cannot tell; the error carries the request
id; its message names the ``psql`` command that answers, :func:`settle_command`, and
:meth:`PostgresStore.find` on a new handle does from Python). The one round trip carries ``COMMIT`` with
the insert, so a cut there is in doubt whenever the server stays away. Once ``COMMIT`` may have been sent,
any failure but the server refusing a statement on a live connection is such a loss, settled the same
way (a session ended by ``pg_terminate_backend`` may have committed first).

:func:`init` creates the schema and later migrates it (``ledger_schema_version`` holds its version);
triggers refuse UPDATE, DELETE and TRUNCATE of ``ledger_events`` and check, as each transaction that
moved the head row commits, that it names the last record. The role the app connects as needs only
SELECT and INSERT on ``ledger_events``, SELECT and UPDATE on ``ledger_head`` (UPDATE is also what
``FOR UPDATE`` asks for) and SELECT on ``ledger_schema_version`` (``init(url, app_role=…)`` grants exactly
that). ``docs/scaling.md`` says when and how to use it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from ledger.backend import (
    GENESIS,
    Audit,
    Batch,
    Decide,
    EventStore,
    Head,
    Record,
    check_continues,
    checked_event,
    counted_down,
)
from ledger.errors import (
    CorruptLogError,
    DurabilityError,
    InvalidEntryError,
    LedgerClosedError,
    LedgerError,
    LedgerIOError,
    NoLedgerError,
    StaleHeadError,
)
from ledger.events import (
    GENESIS_HASH,
    EventType,
    check_lines,
    decode_event,
    decode_events,
    line_hash,
)

__all__ = (
    "CHANNEL",
    "SCHEMA_VERSION",
    "CommitInDoubtError",
    "PostgresStore",
    "SchemaVersionError",
    "init",
    "name_of",
    "schema_version",
    "settle_command",
)

# psycopg warns through its logger ("error ignored terminating <psycopg.Pipeline [BAD]>") when a
# pipeline ends on a lost connection; the append reports that loss itself, settled. Without a handler of
# the application's, Python would print such warnings raw on stderr; with one, they go where it says.
logging.getLogger("psycopg").addHandler(logging.NullHandler())

CHANNEL = "video_ledger"
"""The NOTIFY channel: a doorbell only (its payload is the new head's seq); readers read by seq."""

_BATCH = 4096
_BROKEN = "chain broken: prev does not match the line before"
_BY_REQUEST = "SELECT seq, line FROM ledger_events WHERE request_id = %s ORDER BY seq"
_LAST = b"SELECT seq, line FROM ledger_events ORDER BY seq DESC LIMIT 1"
_OF_ENTRY = (
    "SELECT seq, line FROM ledger_events WHERE ledger_line_json(line) ->> 'spotId' = %s"
    " AND ledger_line_json(line) ->> 'eraId' = %s ORDER BY seq"
)
_NEWEST = "SELECT seq, line FROM ledger_events WHERE seq < %s ORDER BY seq DESC LIMIT %s"
_OF_ENTRY_NEWEST = (
    "SELECT seq, line FROM ledger_events WHERE ledger_line_json(line) ->> 'spotId' = %s"
    " AND ledger_line_json(line) ->> 'eraId' = %s AND seq < %s ORDER BY seq DESC LIMIT %s"
)
_ABOVE_ALL = 2**63 - 1
"""Above every seq (a ``bigint``): where a read newest first starts."""
_IF_TIP = (  # the one round trip's statement: move the head row only if it is the caller's head, then insert
    b"WITH moved AS ("
    b" UPDATE ledger_head SET seq = %s, hash = %s, ts = %s"
    b" WHERE seq = %s AND hash = %s AND ts = %s"
    # the record after the caller's head must not exist: an equality, one probe of the primary key
    # (``seq > head`` is planned as a scan of the whole table: 0.3 ms at 3,000 records and growing)
    b" AND NOT EXISTS (SELECT FROM ledger_events WHERE seq = %s) RETURNING seq"
    b"), new AS ("
    b" INSERT INTO ledger_events (seq, line, request_id)"
    b" SELECT s, l, %s FROM unnest(%s::bigint[], %s::bytea[]) AS t(s, l)"
    b" WHERE EXISTS (SELECT FROM moved)"
    b") SELECT pg_notify(%s, seq::text) FROM moved"
)
_NOT_HELD = "the store does not hold the head appended after"
_HOLDERS = (
    b"SELECT a.pid, a.application_name, host(a.client_addr), a.xact_start, a.state"
    b" FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    b" WHERE l.locktype = 'relation' AND l.relation = 'ledger_head'::regclass AND l.granted"
    b" AND l.mode IN ('RowShareLock', 'RowExclusiveLock') AND a.pid <> pg_backend_pid()"
    b" AND a.wait_event_type IS DISTINCT FROM 'Lock' ORDER BY a.xact_start LIMIT 3"
)

# Each migration takes the schema from version i to i + 1, in one transaction with the version row.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE ledger_events (
        seq bigint PRIMARY KEY CHECK (seq > 0),
        line bytea NOT NULL,
        request_id uuid NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX ledger_events_request_id ON ledger_events (request_id);
    CREATE TABLE ledger_head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        seq bigint NOT NULL CHECK (seq >= 0),
        hash text NOT NULL,
        ts text NOT NULL
    );
    INSERT INTO ledger_head (seq, hash, ts) VALUES (0, '$genesis', '');
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP;
    END $$;
    CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE ON ledger_events
        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
    CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
    """.replace("$genesis", GENESIS_HASH),
    # The head row names the last record, checked as each transaction that wrote it commits (deferred:
    # an append inserts its rows and moves the head in one statement): a role that may update it (every
    # writer) cannot make it lie, and only the tables' owner or a superuser can switch the check off.
    """
    CREATE FUNCTION ledger_head_check() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        head ledger_head%ROWTYPE;
        last ledger_events%ROWTYPE;
    BEGIN
        SELECT * INTO head FROM ledger_head;
        SELECT * INTO last FROM ledger_events ORDER BY seq DESC LIMIT 1;
        IF last.seq IS NULL AND head.seq = 0 AND head.hash = '$genesis' AND head.ts = '' THEN
            RETURN NULL;
        END IF;
        IF head.seq = last.seq AND head.hash = encode(sha256(last.line), 'hex')
                AND head.ts = convert_from(last.line, 'UTF8')::json ->> 'ts' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'ledger_head must name the last record (%), its hash and its time: refused',
            coalesce(last.seq, 0);
    END $$;
    CREATE CONSTRAINT TRIGGER ledger_head_names_the_last_record AFTER INSERT OR UPDATE ON ledger_head
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_head_check();
    """.replace("$genesis", GENESIS_HASH),
    # For people and tools reading the table: each event as JSON with its type and entry (a view), and an
    # index by entry, so that one entry's history reads its own rows only. A line is UTF-8 by the format,
    # so its JSON is a function of its bytes alone (IMMUTABLE, as an index needs).
    """
    CREATE FUNCTION ledger_line_json(line bytea) RETURNS jsonb LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT convert_from(line, 'UTF8')::jsonb $$;
    CREATE INDEX ledger_events_entry ON ledger_events
        ((ledger_line_json(line) ->> 'spotId'), (ledger_line_json(line) ->> 'eraId'), seq);
    CREATE VIEW ledger_events_json AS
        SELECT seq, ledger_line_json(line) ->> 'type' AS type, ledger_line_json(line) ->> 'spotId' AS spot_id,
            ledger_line_json(line) ->> 'eraId' AS era_id, ledger_line_json(line) ->> 'ts' AS ts,
            ledger_line_json(line) AS event, request_id, recorded_at
        FROM ledger_events;
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this code reads and writes."""

_GRANTS = (
    "GRANT SELECT, INSERT ON ledger_events TO {role}",
    "GRANT SELECT, UPDATE ON ledger_head TO {role}",
    "GRANT SELECT ON ledger_schema_version TO {role}",
    "GRANT SELECT ON ledger_events_json TO {role}",
)


class SchemaVersionError(LedgerError):
    """The database's ledger schema is not the version this code uses: older (run :func:`init`, which
    migrates it) or newer (upgrade video-ledger). Nothing was written."""


def _where(url: str) -> Path:
    """How errors name the store: host, port and database, never the user or a password (a host or
    database name holding a query's marks is a mistyped URL's query, password and all: not shown)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return Path("postgresql:<invalid URL>")
    host, port, dbname = (_shown(str(info.get(key, default))) for key, default in _WHERE)
    return Path(f"postgresql:{host}:{port}/{dbname}")


_WHERE = (("host", ""), ("port", 5432), ("dbname", ""))


def name_of(url: str) -> Path:
    """How every message names the store at ``url`` (:func:`ledger.stores.store_name`): its host, port and
    database, never the user, a password or a parameter."""
    return _where(url)


def _shown(value: str) -> str:
    """``value`` as an error may show it: ``***`` if it holds ``?``, ``&``, ``=`` or ``#`` (the query
    of a mistyped URL, read as a host or database name) or the word password."""
    return "***" if any(c in value for c in "?&=#") or "password" in value.lower() else value


def _unshown(url: str, reason: str) -> str:
    """``reason`` (libpq's words about ``url``) without the host and database names :func:`_shown`
    hides."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return reason
    for key, _ in _WHERE:
        value = str(info.get(key) or "")
        if value and _shown(value) != value:
            reason = reason.replace(value, "***")
    return reason


CONNECTION_DEFAULTS: dict[str, str] = {
    "connect_timeout": "10",
    "application_name": "video-ledger",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}
"""libpq parameters a connection gets unless its URL gives them. The TCP keepalives (idle 30 s, then 3
probes 10 s apart) and ``tcp_user_timeout`` (60 s for sent data to be acknowledged) end a connection whose
network path died silently within about a minute (it then counts as lost: reconnect, look the request
up), where the system's defaults (keepalives after 2 hours, retransmissions for about 15 minutes) would
leave a watcher, a command or an append waiting that long."""


SESSION_DEFAULTS: dict[str, str] = {
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "5s",
}
"""Server settings a store's sessions get (through libpq's ``options``) unless the URL's ``options`` set
them. The head row is the one lock every append takes, held for a round trip and a flush: an append that
waited ``lock_timeout`` for it ends, saying who holds it and that nothing was recorded, instead of waiting
for ever behind a session that took it and walked away; and a session of the ledger's own stopped while
it holds the lock (a writer SIGSTOPped, a paused VM) is ended by the server after
``idle_in_transaction_session_timeout``, which frees the lock for the others."""


def _connect(url: str, where: Path, *, session: bool = True) -> psycopg.Connection[Any]:
    """A connection to ``url`` with :data:`CONNECTION_DEFAULTS` and (``session``: a store's, not
    :func:`init`'s) :data:`SESSION_DEFAULTS` where the URL gives none of its own."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
        defaults = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in given}
        options = str(given.get("options") or "")
        extra = [f"-c {key}={value}" for key, value in SESSION_DEFAULTS.items() if key not in options]
        if session and extra:
            defaults["options"] = " ".join([options, *extra]).strip()
        return psycopg.connect(psycopg.conninfo.make_conninfo(url, **defaults), autocommit=True)
    except psycopg.Error as exc:
        raise LedgerIOError(f"cannot connect to {where}: {_unshown(url, _reason(exc))}") from None


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def init(url: str, *, app_role: str | None = None) -> int:
    """Create the ledger's schema in the database at ``url`` or migrate it to :data:`SCHEMA_VERSION`;
    with ``app_role``, grant that role what the app needs and nothing more. Safe to run again and from
    several hosts at once (an advisory lock serialises it). Connect as the role that is to own the tables
    (the one role, with superusers, that can switch their triggers off: best one nobody logs in as, which
    a superuser acts as through ``options=-c role=…`` in ``url``). Returns the version now in place."""
    where = _where(url)
    if app_role is not None and not app_role:
        raise InvalidEntryError("an empty app_role (--app-role) names no role")
    with _connect(url, where, session=False) as conn:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('video-ledger schema'))")
                if app_role is not None:
                    _check_app_role(conn, where, app_role)
                conn.execute("CREATE TABLE IF NOT EXISTS ledger_schema_version (version integer NOT NULL)")
                row = conn.execute("SELECT max(version) FROM ledger_schema_version").fetchone()
                version = (row[0] if row else None) or 0
                if version > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"{where}: the ledger schema is version {version}, newer than this code's "
                        f"{SCHEMA_VERSION}: upgrade video-ledger"
                    )
                for migration in _MIGRATIONS[version:]:
                    conn.execute(migration.encode())
                if version < SCHEMA_VERSION:
                    conn.execute("DELETE FROM ledger_schema_version")
                    conn.execute("INSERT INTO ledger_schema_version VALUES (%s)", (SCHEMA_VERSION,))
                if app_role is not None:
                    try:
                        for grant in _GRANTS:
                            conn.execute(sql.SQL(grant).format(role=sql.Identifier(app_role)))
                    except psycopg.errors.UndefinedObject:  # bad input: nothing is created (rolled back)
                        raise InvalidEntryError(
                            f"{where}: role {app_role!r} does not exist: create it first (CREATE ROLE … "
                            "LOGIN); nothing was created"
                        ) from None
        except psycopg.Error as exc:
            raise LedgerIOError(f"cannot create the ledger schema in {where}: {_reason(exc)}") from None
    return SCHEMA_VERSION


def _check_app_role(conn: psycopg.Connection[Any], where: Path, role: str) -> None:
    """Refuse (:class:`InvalidEntryError`, before anything is created) a role whose grants would reach
    past the app: PUBLIC (every role in the cluster, however it is spelled or quoted), a predefined role
    (``pg_…``: ``pg_write_all_data``, ``pg_database_owner`` and the like) or a superuser."""
    why = None
    if role.strip().strip('"').strip().lower() == "public":
        why = "is PUBLIC, every role in the cluster"
    elif role.startswith("pg_"):
        why = "is a predefined role of the server (pg_…), held by roles the ledger knows nothing of"
    else:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if row is not None and row[0]:
            why = "is a superuser, who needs no grants and passes every check"
    if why is not None:
        raise InvalidEntryError(
            f"{where}: the app role {role!r} {why}: name the role the app hosts connect as (CREATE ROLE "
            "… LOGIN); nothing was created"
        )


def schema_version(url: str) -> int:
    """The ledger schema's version in the database at ``url`` (0: none)."""
    where = _where(url)
    with _connect(url, where) as conn:
        return _version(conn, where)


def _version(conn: psycopg.Connection[Any], where: Path) -> int:
    try:
        row = conn.execute("SELECT max(version) FROM ledger_schema_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    except psycopg.Error as exc:
        raise LedgerIOError(f"cannot read the ledger schema version in {where}: {_reason(exc)}") from None
    return int(row[0]) if row and row[0] is not None else 0


class CommitInDoubtError(DurabilityError):
    """The connection broke after an append's ``COMMIT`` was sent and the server could not be reached again
    within ``retry_for``: the append may or may not be recorded. The handle refuses further appends; the
    message names the command that tells (:func:`settle_command`), as :meth:`PostgresStore.find`
    (``request``) on a new handle does."""

    def __init__(self, message: str, *, request: uuid.UUID) -> None:
        super().__init__(message)
        self.request = request


class _Lost(Exception):
    """The connection broke mid-append (internal: :meth:`PostgresStore.append` reconnects)."""


class PostgresStore(EventStore):
    """A handle on the ledger in the PostgreSQL database at ``url`` (a ``postgresql://`` URL or a libpq
    conninfo string). The schema must be in place (:func:`init`), else :class:`NoLedgerError` or
    :class:`SchemaVersionError`. ``retry_for``: how long an append or a read keeps reconnecting when the
    connection breaks; ``poll``: how often :meth:`wait` reads the head even without a notification."""

    def __init__(self, url: str, *, retry_for: float = 30.0, poll: float = 1.0) -> None:
        self.url = url
        self.where = _where(url)
        self.retry_for = retry_for
        self.poll = poll
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._closed = False
        self._poisoned: str | None = None
        self.give_up: Callable[[], bool] | None = None
        """When set and it returns true, a broken connection is not reconnected any longer: the call fails at
        once with its usual error (:func:`ledger.watch.watch` sets it to its stop event, so a watcher stopped
        while the server is away ends at once, not after ``retry_for``)."""
        self._current = True
        """Whether this handle's last append found its caller's head at the tip: then the next one tries the
        one round trip first; else (other writers are appending) it takes the lock at once."""
        try:
            version = _version(self._connection(), self.where)
        except LedgerIOError:
            self.close()
            raise
        if version == 0:
            self.close()
            raise NoLedgerError(f"no ledger in {self.where}: create its schema first (ledger.postgres.init)")
        if version != SCHEMA_VERSION:
            self.close()
            newer = version > SCHEMA_VERSION
            raise SchemaVersionError(
                f"{self.where}: the ledger schema is version {version}, this code uses {SCHEMA_VERSION}: "
                + ("upgrade video-ledger" if newer else "run init to migrate it")
            )

    # -- connections -------------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise LedgerClosedError("this store handle was closed")
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self.url, self.where)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _reconnect(self, deadline: float) -> bool:
        """Drop the broken connection and connect again until ``deadline``; whether it worked."""
        self._drop()
        while True:
            try:
                self._connection()
                return True
            except LedgerIOError:
                if time.monotonic() >= deadline or (self.give_up is not None and self.give_up()):
                    return False
                time.sleep(0.2)

    def _query(self, sql_text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One read-only statement; a lost connection or session (a cut, a restart, a terminated backend)
        is replaced (for up to ``retry_for``) and the statement run again."""
        deadline = time.monotonic() + self.retry_for
        retried = False
        while True:
            conn = self._connection()
            try:
                return conn.execute(sql_text.encode(), params).fetchall()
            except psycopg.Error as exc:
                if _refused(conn, exc):
                    self._gone(exc)
                    raise LedgerIOError(f"cannot read {self.where}: {_reason(exc)}") from None
                if (retried and time.monotonic() >= deadline) or not self._reconnect(deadline):
                    raise LedgerIOError(f"lost the connection to {self.where}: {_reason(exc)}") from None
                retried = True

    # -- the verbs ---------------------------------------------------------------------------------------

    def head(self) -> Head:
        """The last record's place, read from that record (never from the head row, which is the
        appends' lock: a head row someone made lie cannot hide a record or lend a writer its hash or
        time)."""
        return self._tip(self._query(_LAST.decode()))

    def _tip(self, rows: list[tuple[Any, ...]]) -> Head:
        """The place after the last of ``rows`` (``(seq, line)``, in seq order; none: :data:`GENESIS`)."""
        if not rows:
            return GENESIS
        seq, line = rows[-1][0], bytes(rows[-1][1])
        return Head(seq, line_hash(line), _check_stored(self.where, seq, seq, line).ts, seq)

    def read(self, after: Head = GENESIS) -> Iterator[Batch]:
        end = self.head().seq  # as of the call
        if after.seq > end:
            raise StaleHeadError(
                f"{self.where} holds {end} records, not record {after.seq}: read from the start"
            )
        return self._batches(after, end)

    def at(self, head: Head) -> Head | None:
        if head.seq <= 0:
            return GENESIS
        rows = self._query("SELECT line FROM ledger_events WHERE seq = %s", (head.seq,))
        if not rows:
            return None
        line = bytes(rows[0][0])
        try:
            event = _check_stored(self.where, head.seq, head.seq, line)
        except CorruptLogError:
            return None  # not soundly held: a reader's replay names the damage
        return Head(head.seq, line_hash(line), event.ts, head.seq)

    def _batches(self, after: Head, end: int) -> Iterator[Batch]:
        low, prev = after.seq, after.hash if after.seq else GENESIS_HASH
        while low < end:
            rows = self._query(
                "SELECT seq, line FROM ledger_events WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
                (low, end, _BATCH),
            )
            lines, events = self._decode(rows, low)
            if events[0].prev != prev:
                raise CorruptLogError(
                    self.where, low + 1, "chain broken: prev does not match the line before"
                )
            last = events[-1]
            low, prev = last.seq, line_hash(lines[-1])
            yield Batch(lines, events, Head(low, prev, last.ts, low))

    def _decode(self, rows: list[tuple[Any, ...]], low: int) -> tuple[list[bytes], list[EventType]]:
        """The rows' lines and events, checked: seqs ``low + 1 …`` without a gap, each line framed with a
        valid crc and holding the event of its seq."""
        lines: list[bytes] = [bytes(row[1]) for row in rows]
        if not rows or rows[0][0] != low + 1 or rows[-1][0] != low + len(rows):
            self._damage(rows, lines, low)
        if not check_lines(lines):
            self._damage(rows, lines, low)
        try:
            events = decode_events(b"\n".join(lines) + b"\n")
        except (msgspec.MsgspecError, UnicodeDecodeError):
            self._damage(rows, lines, low)
        if len(events) != len(lines) or events[0].seq != low + 1 or events[-1].seq != low + len(lines):
            self._damage(rows, lines, low)
        return lines, events

    def _damage(self, rows: list[tuple[Any, ...]], lines: list[bytes], low: int) -> None:
        """Find the first bad row of a batch that failed a check and raise there."""
        n = low
        for (seq, _), line in zip(rows, lines, strict=True):
            n += 1
            _check_stored(self.where, n, seq, line)
        if n == low:
            raise CorruptLogError(self.where, n + 1, f"record {n + 1} is missing")
        raise CorruptLogError(self.where, low + 1, f"records {low + 1} to {n}: damaged (bad framing)")

    def append(self, after: Head, decide: Decide) -> Head:
        if self._poisoned is not None:
            raise LedgerClosedError(f"this store handle refuses appends: {self._poisoned}")
        request = uuid.uuid4()
        deadline = time.monotonic() + self.retry_for
        lookup = False
        optimistic = self._current  # one round trip if ``after`` is the tip; then (or after a cut) the lock
        state = {"committing": False}  # True from COMMIT sent until a lookup under the lock settles it
        while True:
            conn = self._connection()
            try:
                if optimistic:
                    optimistic = False
                    done = self._append_at(conn, after, decide, request, state)
                    if done is not None:
                        return done
                return self._append_once(conn, after, decide, request, lookup, state)
            except _Lost as lost:
                # one reconnect at least (an in-doubt COMMIT deserves one look), none past the deadline
                if (lookup and time.monotonic() >= deadline) or not self._reconnect(deadline):
                    raise self._unsettled(request, state["committing"], str(lost)) from None
                lookup = True

    def _unsettled(self, request: uuid.UUID, committing: bool, lost: str) -> LedgerIOError:
        """The error of an append whose connection broke and could not be replaced within ``retry_for``:
        nothing recorded if ``COMMIT`` was never sent, else in doubt (and the handle refuses appends)."""
        if not committing:
            return LedgerIOError(
                f"lost the connection to {self.where} before COMMIT; nothing was recorded: {lost}"
            )
        message = (
            f"lost the connection to {self.where} after COMMIT was sent and could not reconnect: whether "
            f"request {request} was recorded is unknown; to tell, run {settle_command(self.url, request)} "
            f"(it prints how many records the request appended: 0, none), or PostgresStore.find(request) "
            f"from Python: {lost}"
        )
        self._poisoned = message
        return CommitInDoubtError(message, request=request)

    def _append_at(
        self,
        conn: psycopg.Connection[Any],
        after: Head,
        decide: Decide,
        request: uuid.UUID,
        state: dict[str, bool],
    ) -> Head | None:
        """The append in one round trip if ``after`` is still the tip: ``decide`` runs first, here, on
        ``after`` with nothing unseen, then one pipeline sends ``BEGIN``, one statement that moves the head
        row only if it still is ``after`` and inserts the rows only if it did (and NOTIFYs), and ``COMMIT``.
        ``None`` when the head had moved (nothing was written): the caller takes the lock, and ``decide``
        runs again on what it did not see. Under READ COMMITTED the head row's ``UPDATE`` waits for a
        writer holding it and then checks its ``WHERE`` against the row that writer committed, so it matches
        only a head no one moved."""
        tip = GENESIS if not after.seq else Head(after.seq, after.hash, after.ts, after.seq)
        try:
            records = decide(tip, [])
        except Exception:
            if self._is_tip(conn, tip):  # raised on the true tip: that is the answer
                raise
            self._current = False
            return None  # raised on a head that is stale: let it decide again on what it did not see
        if not records:  # nothing to append: no transaction, only a look at the head
            self._current = self._is_tip(conn, tip)
            return tip if self._current else None
        seq, prev, ts, _ = check_continues(records, tip)
        state["committing"] = True  # from here on, COMMIT may be on its way
        with self._failures(conn):
            with conn.pipeline():  # one round trip: move the head if it is ``after``, insert, notify, commit
                conn.execute(b"BEGIN", prepare=False)
                rows = ([r.seq for r in records], [r.line for r in records])
                moved = conn.execute(_IF_TIP, (seq, prev, ts, *tip[:3], tip.seq + 1, request, *rows, CHANNEL))
                conn.execute(b"COMMIT", prepare=False)
            if not moved.fetchall():
                state["committing"] = False  # committed nothing: the head had moved
                self._current = False
                return None
        return Head(seq, prev, ts, seq)

    def _is_tip(self, conn: psycopg.Connection[Any], tip: Head) -> bool:
        """Whether the last record is ``tip`` (one statement, no transaction)."""
        try:
            rows = conn.execute(_LAST).fetchall()
        except psycopg.Error as exc:
            if not _refused(conn, exc):
                self._drop()
                raise _Lost(_reason(exc)) from None
            raise LedgerIOError(f"cannot append to {self.where}: {_reason(exc)}") from None
        return self._tip(rows)[:3] == tip[:3]

    def _append_once(
        self,
        conn: psycopg.Connection[Any],
        after: Head,
        decide: Decide,
        request: uuid.UUID,
        lookup: bool,
        state: dict[str, bool],
    ) -> Head:
        with self._failures(conn):
            locked, rows, found = self._lock(conn, after, request if lookup else None)
            if not locked:
                raise CorruptLogError(self.where, 0, "the head row (ledger_head) is missing")
            tip = self._tip(rows)  # the last record, whatever the head row says
            if lookup:
                if found:  # the lost attempt committed: it is what this append did
                    conn.execute(b"ROLLBACK", prepare=False)
                    seq, line = found[-1][0], bytes(found[-1][1])
                    return Head(seq, line_hash(line), decode_event(line).ts, seq)
                state["committing"] = False  # it did not commit, and never will: we hold the lock
            unseen = self._unseen(rows, after)
            self._current = not unseen
            records = decide(tip, unseen)
            if not records:
                conn.execute(b"ROLLBACK", prepare=False)
                return tip
            seq, prev, ts, _ = check_continues(records, tip)
            state["committing"] = True  # from here on, COMMIT may be on its way
            with conn.pipeline():  # one round trip: insert, move the head, ring the doorbell, commit
                conn.execute(
                    b"WITH new AS ("
                    b" INSERT INTO ledger_events (seq, line, request_id)"
                    b" SELECT s, l, %s FROM unnest(%s::bigint[], %s::bytea[]) AS t(s, l)"
                    b"), head AS (UPDATE ledger_head SET seq = %s, hash = %s, ts = %s)"
                    b" SELECT pg_notify(%s, %s)",
                    (
                        request,
                        [r.seq for r in records],
                        [r.line for r in records],
                        seq,
                        prev,
                        ts,
                        CHANNEL,
                        str(seq),
                    ),
                )
                conn.execute(b"COMMIT", prepare=False)
            return Head(seq, prev, ts, seq)

    def _lock(
        self, conn: psycopg.Connection[Any], after: Head, request: uuid.UUID | None
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """One round trip: ``BEGIN``, the head row's lock, ``after``'s own record and every one after it
        (the store must hold ``after``), and the rows ``request`` appended (if given). One simple-protocol
        message, not a pipeline: the server arms ``idle_in_transaction_session_timeout`` only when it
        goes idle after a query with nothing more from the client (psycopg's pipeline sends a flush after
        the sync), and a writer stopped while ``decide`` runs must not keep the lock for ever."""
        looked = sql.SQL("SELECT seq, line FROM ledger_events WHERE request_id = {} ORDER BY seq")
        query = sql.SQL(
            "BEGIN; SELECT seq FROM ledger_head FOR UPDATE;"
            " SELECT seq, line FROM ledger_events WHERE seq >= {} ORDER BY seq; {}"
        ).format(sql.Literal(after.seq), looked.format(sql.Literal(request)) if request else sql.SQL(""))
        cursor = conn.execute(query, prepare=False)
        results = []
        while True:
            if cursor.description is not None:
                results.append(cursor.fetchall())
            if not cursor.nextset():
                break
        return results[0], results[1], results[2] if request else []

    @contextlib.contextmanager
    def _failures(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Around an append's statements: a broken connection is :class:`_Lost` (the caller reconnects and
        looks the request up); any other failure rolls the transaction back, a database error as
        :class:`~ledger.errors.LedgerIOError`."""
        try:
            yield
        except psycopg.Error as exc:
            if not _refused(conn, exc):  # the session may be gone with COMMIT done: settle it
                self._drop()
                raise _Lost(_reason(exc)) from None
            self._rollback(conn)
            self._gone(exc)
            if isinstance(exc, psycopg.errors.LockNotAvailable):
                raise LedgerIOError(
                    f"cannot append to {self.where}: {exc.diag.message_primary or _reason(exc)} waiting "
                    f"for the head row (ledger_head, the "
                    f"lock every append takes), {self._holder()}; nothing was recorded"
                ) from None
            raise LedgerIOError(f"cannot append to {self.where}: {_reason(exc)}") from None
        except BaseException:
            self._rollback(conn)
            raise

    def _holder(self) -> str:
        """Who holds the head row's lock, as far as this role may see (pid, application_name, client
        address, since when): the sessions holding a row lock on ``ledger_head`` that wait for no lock."""
        try:
            rows = self._connection().execute(_HOLDERS).fetchall()
        except (psycopg.Error, LedgerIOError) as exc:
            return f"held by a session this role cannot name ({_reason(exc)})"
        if not rows:
            return "held by a session that has let go of it since"
        said = []
        for pid, name, client, since, state in rows:
            client = client or "a local socket, or not visible to this role"
            since = f"{since:%Y-%m-%d %H:%M:%S %Z}" if since else "a time not visible to this role"
            said.append(
                f"pid {pid} (application_name {name!r}, client {client}, {state or 'its state not visible'}, "
                f"in a transaction since {since})"
            )
        return "held by " + "; ".join(said)

    def _gone(self, exc: psycopg.Error) -> None:
        """A table of the ledger's schema missing once the store was open (the schema was checked then):
        dropped or renamed behind the ledger's back. Not a passing failure to retry:
        :class:`CorruptLogError`."""
        if isinstance(exc, psycopg.errors.UndefinedTable):
            raise CorruptLogError(
                self.where,
                0,
                f"a table of the ledger is missing ({exc.diag.message_primary or _reason(exc)}): it was "
                "dropped or renamed since the store was opened, and the records it held are out of this "
                "store's reach (a renamed table still holds them)",
            ) from None

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute(b"ROLLBACK", prepare=False)
        except psycopg.Error:
            self._drop()  # the server rolls back a transaction whose connection is gone

    def _unseen(self, rows: list[tuple[Any, ...]], after: Head) -> list[Record]:
        """The records after ``after`` from ``rows`` (read under the lock: ``after``'s own record and
        every one after it), checking the store holds ``after``: its record is there with its hash."""
        if after.seq:
            if not rows or rows[0][0] != after.seq or line_hash(bytes(rows[0][1])) != after.hash:
                raise CorruptLogError(self.where, after.seq, _NOT_HELD)
            rows = rows[1:]
        if not rows:
            return []
        lines, events = self._decode(rows, after.seq)
        if events[0].prev != after.hash:
            raise CorruptLogError(self.where, after.seq + 1, _BROKEN)
        return [Record(e.seq, line, e) for line, e in zip(lines, events, strict=True)]

    def lines_of(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        """One entry's records through the index by entry (every record when either id is not given),
        each line checked (framing, crc, its ``seq``)."""
        if spot_id is None or era_id is None:
            yield from super().lines_of(spot_id, era_id)
            return
        for seq, line in self._query(_OF_ENTRY, (spot_id, era_id)):
            stored = bytes(line)
            yield stored, _check_stored(self.where, seq, seq, stored)

    def newest_first(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        """``ORDER BY seq DESC`` a batch at a time, each row checked with its chain as :meth:`read` checks
        it; one entry's (both ids given) through the index by entry, each line checked as
        :meth:`lines_of` checks it."""
        if spot_id is not None and era_id is not None:
            return self._entry_newest_first(spot_id, era_id)
        rows = self._query(_NEWEST, (_ABOVE_ALL, _BATCH))  # as of the call: the newest row now is the top
        if not rows:
            return iter(())
        return counted_down(self.where, self._lines_down(rows), rows[0][0])

    def _lines_down(self, rows: list[tuple[Any, ...]]) -> Iterator[bytes]:
        """The lines of ``rows`` (newest first) and of the rows before them, a batch at a time, each row
        the seq before the one read before it (a gap: :class:`CorruptLogError` at the missing record)."""
        n = rows[0][0] + 1
        while rows:
            for seq, line in rows:
                n -= 1
                _check_row(self.where, n, seq)
                yield bytes(line)
            rows = self._query(_NEWEST, (n, _BATCH)) if n > 1 else []

    def _entry_newest_first(self, spot_id: str, era_id: str) -> Iterator[tuple[bytes, EventType]]:
        below = _ABOVE_ALL
        while True:
            rows = self._query(_OF_ENTRY_NEWEST, (spot_id, era_id, below, _BATCH))
            for seq, line in rows:
                stored = bytes(line)
                yield stored, _check_stored(self.where, seq, seq, stored)
            if len(rows) < _BATCH:
                return
            below = rows[-1][0]

    def find(self, request: uuid.UUID) -> Head | None:
        """The place after the records request ``request`` appended, or ``None`` if it appended nothing
        (for a request a :class:`DurabilityError` left in doubt)."""
        rows = self._query(
            "SELECT seq, line FROM ledger_events WHERE request_id = %s ORDER BY seq", (request,)
        )
        if not rows:
            return None
        seq, line = rows[-1][0], bytes(rows[-1][1])
        return Head(seq, line_hash(line), decode_event(line).ts, seq)

    def wait(self, after_seq: int, timeout: float) -> bool:
        """LISTEN is the doorbell; the head row is the truth, read at once, on every notification and
        every ``poll`` seconds, so a lost notification (or a reconnect) delays a wake-up, never loses one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = self._listening()
                row = conn.execute(b"SELECT coalesce(max(seq), 0) FROM ledger_events").fetchone()
                if row is not None and row[0] > after_seq:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for _ in conn.notifies(timeout=min(remaining, self.poll), stop_after=1):
                    pass
            except (psycopg.Error, LedgerIOError):
                self._drop_listener()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(remaining, self.poll))

    def _listening(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise LedgerClosedError("this store handle was closed")
        if self._listener is None or self._listener.closed:
            conn = _connect(self.url, self.where)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self._listener = conn
        return self._listener

    def _drop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            conn.close()

    def check(self) -> Audit:
        return _PostgresAudit(self)

    def close(self) -> None:
        self._drop()
        self._drop_listener()
        self._closed = True


def _refused(conn: psycopg.Connection[Any], exc: psycopg.Error) -> bool:
    """Whether ``exc`` is the server refusing a statement on a connection that is still there (nothing
    of the transaction commits), as opposed to the connection or the session going away (a cut, a
    terminated backend, a restart, or psycopg left unsure of the session's state), after which a sent
    ``COMMIT`` may or may not have been done."""
    state = exc.sqlstate
    if conn.broken or conn.closed or state is None:
        return False
    return not state.startswith(("08", "57P"))  # connection exception; operator intervention


def settle_command(url: str, request: uuid.UUID) -> str:
    """A shell command that prints how many records request ``request`` appended to the ledger at ``url``
    (``psql``, the PostgreSQL client; no password in it: libpq takes it from ``~/.pgpass``, ``PGPASSFILE``
    or ``PGPASSWORD``)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        info = {}
    part = {key: urllib.parse.quote(str(info.get(key) or ""), safe=",") for key in ("user", "host", "port")}
    at = f"{part['user']}@" if part["user"] else ""
    port = f":{part['port']}" if part["port"] else ""
    target = (
        f"postgresql://{at}{part['host']}{port}/{urllib.parse.quote(str(info.get('dbname') or ''), safe='')}"
    )
    query = f"SELECT count(*) FROM ledger_events WHERE request_id = '{request}'"  # noqa: S608 (a UUID)
    return f"psql '{target}' -Atc \"{query}\""


def _check_stored(where: Path, n: int, seq: int, line: bytes) -> EventType:
    """Record ``n`` as stored (row ``seq``, ``line``), or :class:`CorruptLogError` naming line ``n``."""
    _check_row(where, n, seq)
    return checked_event(where, n, line)


def _check_row(where: Path, n: int, seq: int) -> None:
    """Refuse row ``seq`` read where record ``n`` belongs (:class:`CorruptLogError`: ``n`` is missing)."""
    if seq != n:
        raise CorruptLogError(where, n, f"record {n} is missing (the next stored is {seq})")


class _PostgresAudit(Audit):
    """Every stored row checked: seq without gaps, framing, crc, the event's own seq, the chain; then the
    head row against the last record."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def __iter__(self) -> Iterator[Batch]:
        store, where = self._store, self._store.where
        seq, prev, ts = 0, GENESIS_HASH, ""
        while True:
            rows = store._query(
                "SELECT seq, line FROM ledger_events WHERE seq > %s ORDER BY seq LIMIT %s", (seq, _BATCH)
            )
            if not rows:
                break
            lines: list[bytes] = []
            events: list[EventType] = []
            damage: CorruptLogError | None = None
            for row in rows:
                line = bytes(row[1])
                try:
                    event = _check_stored(where, seq + 1, row[0], line)
                    if event.prev != prev:
                        raise CorruptLogError(where, seq + 1, _BROKEN)
                except CorruptLogError as exc:
                    damage = exc
                    break
                seq, prev, ts = seq + 1, line_hash(line), event.ts
                lines.append(line)
                events.append(event)
            self.end = Head(seq, prev, ts, seq)
            if lines:  # before damage too: the sound records before it are read and counted, as a file's
                yield Batch(lines, events, self.end)
            if damage is not None:
                raise damage
        head = store._query("SELECT seq, hash FROM ledger_head")[0]
        if tuple(head) != (seq, prev):
            raise CorruptLogError(
                where, seq + 1, f"the head row says record {head[0]}, the records end at {seq} (or differ)"
            )
