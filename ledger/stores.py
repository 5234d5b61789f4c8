"""Which store holds a ledger's events: a directory's ``events.jsonl`` or a PostgreSQL database, by name.

A store is named by a *spec*: a ``postgresql://`` (or ``postgres://``) URL names the PostgreSQL store
(:class:`ledger.postgres.PostgresStore`, ``pip install 'video-ledger[postgres]'``); anything else is a
directory, whose ``events.jsonl`` is the file store (:class:`ledger.log.EventLog`). :func:`open_store` opens
either; :func:`store_spec` reads the spec from an explicit value or ``$VIDEO_LEDGER_STORE``;
:func:`store_name` names a store in every message, in one spelling; :func:`describe_store` shows a spec
as it was given, without its password (for a spec that names no store). psycopg is imported only when a
URL is opened, so the file store needs nothing beyond the core install. :func:`resolve_store` is the one
rule for which directory and which store a ledger uses. ``EventStore``, ``Head``, ``FileOps``,
``Progress`` and ``reported`` are re-exported for the store API.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from pathlib import Path
from typing import Final, NamedTuple

from ledger.backend import EventStore, Head, Progress, reported
from ledger.errors import (
    InvalidEntryError,
    LedgerError,
    LedgerIOError,
    MissingExtraError,
    NoLedgerError,
    io_error,
)
from ledger.fileops import FileOps
from ledger.layout import Layout
from ledger.log import EventLog

__all__ = (
    "POSTGRES_EXTRA",
    "RETRY_ENV",
    "STORE_ENV",
    "EventStore",
    "FileOps",
    "Head",
    "MissingExtraError",
    "Progress",
    "StoreChoice",
    "check_store_spec",
    "describe_store",
    "init_postgres",
    "is_url",
    "make_directory",
    "open_chosen",
    "open_store",
    "reported",
    "resolve_store",
    "same_directory",
    "store_name",
    "store_spec",
    "warn_if_beside",
)

STORE_ENV: Final = "VIDEO_LEDGER_STORE"
"""The environment variable naming the store when none is given (a directory or a URL)."""

RETRY_ENV: Final = "VIDEO_LEDGER_PG_RETRY"
"""Seconds a PostgreSQL handle keeps reconnecting when its connection breaks mid-call before it gives up
with a one-line error (default 30; 0 gives up at once): a one-shot command may want less, a watcher more."""

POSTGRES_EXTRA: Final = "pip install 'video-ledger[postgres]'"

_SCHEMES: Final = ("postgresql", "postgres")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` is written as a URL (``scheme://…``) rather than a directory."""
    return isinstance(spec, str) and _URL.match(spec) is not None


def store_spec(explicit: str | os.PathLike[str] | None = None) -> str | os.PathLike[str] | None:
    """The store to use: ``explicit`` if given, else ``$VIDEO_LEDGER_STORE`` if set and not empty, else
    ``None`` (the caller's default: the ledger directory's own ``events.jsonl``)."""
    if explicit is not None:
        return explicit
    return os.environ.get(STORE_ENV) or None


def describe_store(spec: str | os.PathLike[str]) -> str:
    """``spec`` as a message may show it: a URL with its password (in the user part or a ``password=``
    parameter) and its client key's passphrase (``sslpassword=``) replaced by ``***``; a directory as it
    is."""
    if not is_url(spec):
        return os.fspath(spec)
    text = str(spec)
    scheme, rest = text.split("://", 1)
    authority, sep, tail = _split_authority(rest)
    user, at, hosts = authority.rpartition("@")
    if at and ":" in user:
        user = user.split(":", 1)[0] + ":***"
    path, mark, query = re.split(r"([?#])", tail, maxsplit=1) if re.search(r"[?#]", tail) else (tail, "", "")
    if sep == "/" and _masked(path) != path:  # a query typed into the database name, %-escaped
        path = "***"
    shown = f"{scheme}://{user}{at}{hosts}{sep}{path}{mark}{query}"
    return _SECRET_PARAM.sub(lambda m: m.group(1) + _masked(m.group(2)), shown)


_SECRET_PARAM: Final = re.compile(r"([?&])([^&#]*)")


def _masked(piece: str) -> str:
    """A query parameter as shown: its value as ``***`` when it names a password however it is written
    (``password=``, ``sslpassword=``, %-escaped, mistyped as ``password%3D…`` or without its ``=``);
    the whole piece when there is no ``=`` to keep its name by."""
    if "password" not in urllib.parse.unquote(piece).lower():
        return piece
    key, eq, _ = piece.partition("=")
    return f"{key}=***" if eq else "***"


def _split_authority(rest: str) -> tuple[str, str, str]:
    """``user:pw@host:port`` and what follows it (``/db?…``), the separator kept."""
    match = re.search(r"[/?#]", rest.rpartition("@")[2])
    if match is None:
        return rest, "", ""
    cut = len(rest) - len(rest.rpartition("@")[2]) + match.start()
    return rest[:cut], rest[cut], rest[cut + 1 :]


def same_directory(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one directory however they are spelled (relative or absolute, ``..``,
    a symbolic link): the same file when both exist, else the same path once absolute and normalised."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def check_store_spec(spec: str | os.PathLike[str]) -> None:
    """Refuse, with :class:`InvalidEntryError`, a spec that names no store whatever the machine holds: an
    empty one, or a URL of a scheme other than ``postgresql://`` and ``postgres://``."""
    if not os.fspath(spec):
        raise InvalidEntryError("an empty store names nothing (is a variable unset?)")
    if is_url(spec):
        scheme = str(spec).split("://", 1)[0]
        if scheme.lower() not in _SCHEMES:
            raise InvalidEntryError(
                f"{describe_store(spec)}: unknown store URL scheme {scheme!r} (a store is a directory or a "
                "postgresql:// URL)"
            )


def _check_url(url: str) -> None:
    """Refuse a URL that names no PostgreSQL database (:class:`InvalidEntryError`), without connecting."""
    shown = describe_store(url)
    check_store_spec(url)
    _require_psycopg()
    import psycopg

    secrets = _passwords(url)
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = _hidden(" ".join(str(exc).split()).replace(url, shown), secrets)
        raise InvalidEntryError(f"not a valid PostgreSQL URL: {shown}: {reason}") from None
    except UnicodeError:
        raise InvalidEntryError(
            f"not a valid PostgreSQL URL: {shown}: it holds bytes that are not UTF-8 (raw or %-escaped)"
        ) from None
    written = _written_password(url)
    if (
        written is not None
        and not re.search(r"(?i)[?&]password=", url)
        and not re.search(r"[?#]", written)  # a query's '@' (a@b), not the password's: shown hidden anyway
        and urllib.parse.unquote(written) != info.get("password", "")
    ):  # libpq ended the user part at an '@' or '/' inside it: the rest would be shown as a host or database
        raise InvalidEntryError(
            f"not a valid PostgreSQL URL: {shown}: its user and password are not read as written: "
            "write '@' in them as %40 and '/' as %2F"
        )
    for port in str(info.get("port", "")).split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            port = _hidden(repr(port), secrets)
            raise InvalidEntryError(f"not a valid PostgreSQL URL: {shown}: port {port} is not 1..65535")


def _written_password(url: str) -> str | None:
    """The password written in ``url``'s user part, as :func:`describe_store` hides it (``None``: none)."""
    authority = _split_authority(url.split("://", 1)[1])[0]
    user, at, _ = authority.rpartition("@")
    return user.split(":", 1)[1] if at and ":" in user else None


def _passwords(url: str) -> list[str]:
    """Every secret written in ``url`` (its password; each query parameter that names a password, as
    :func:`describe_store` hides it: its value, the whole piece, each as written and %-decoded)."""
    found = []
    path = re.split(r"[?#]", _split_authority(url.split("://", 1)[1])[2], maxsplit=1)[0]
    for piece in [*_SECRET_PARAM.findall(url), ("/", path)]:
        if _masked(piece[1]) != piece[1]:
            value = piece[1].partition("=")[2]
            found += [value, urllib.parse.unquote(value), piece[1], urllib.parse.unquote(piece[1])]
    written = _written_password(url)
    return sorted({s for s in (written, *found) if s}, key=len, reverse=True)  # a longer secret first


def _hidden(reason: str, secrets: list[str]) -> str:
    """``reason`` (libpq's words) with each password, and each quoted piece of one, as ``***``."""
    for secret in secrets:
        reason = reason.replace(secret, "***")

    def quoted(match: re.Match[str]) -> str:
        piece = match.group(2)
        return (
            match.group(0) if not any(piece in s for s in secrets) else f"{match.group(1)}***{match.group(1)}"
        )

    return re.sub(r"([\"'])([^\"']+)\1", quoted, reason)


def _retry_for() -> float | None:
    """``$VIDEO_LEDGER_PG_RETRY`` in seconds (``None``: not set, the store's default), checked."""
    text = os.environ.get(RETRY_ENV, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:  # also refuses nan
        raise InvalidEntryError(f"${RETRY_ENV} must be a number of seconds from 0 to 86400, not {text!r}")
    return seconds


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"the PostgreSQL store needs: {POSTGRES_EXTRA}") from None


def open_store(
    where: str | os.PathLike[str],
    *,
    readonly: bool = False,
    ops: FileOps | None = None,
    follow_symlinks: bool = False,
) -> EventStore:
    """Open the store ``where`` names (see the module's docstring); close it when done.

    A URL: the PostgreSQL store, whose schema must be in place (``video-ledger --store URL init``), else
    :class:`~ledger.errors.NoLedgerError`; a bad URL raises :class:`~ledger.errors.InvalidEntryError`, a
    missing psycopg :class:`MissingExtraError`, an unreachable server :class:`~ledger.errors.LedgerIOError`.
    The handle reconnects for ``$VIDEO_LEDGER_PG_RETRY`` seconds (:data:`RETRY_ENV`) when its connection
    breaks mid-call.
    ``readonly`` changes nothing there (opening a database creates nothing).

    A directory: its ``events.jsonl``. Unless ``readonly``, the directory and an empty log are created if
    missing and the log is made ready for writing (a torn tail set aside, staged lines moved in), as a
    writing :class:`~ledger.Ledger` does; ``readonly`` creates nothing and raises
    :class:`~ledger.errors.NoLedgerError` when there is no log. ``ops`` and ``follow_symlinks`` are the
    file store's (:class:`~ledger.Ledger` takes the same).
    """
    if is_url(where):
        url = str(where)
        _check_url(url)
        from ledger.postgres import PostgresStore

        retry_for = _retry_for()
        try:
            return PostgresStore(url) if retry_for is None else PostgresStore(url, retry_for=retry_for)
        except NoLedgerError:
            raise NoLedgerError(
                f"no ledger in {store_name(url)}: create its schema first "
                "(video-ledger --store URL init, or ledger.postgres.init)"
            ) from None
    check_store_spec(where)
    layout = Layout.of(where, follow_symlinks=follow_symlinks)
    ops = ops or FileOps()
    log = EventLog(layout.log, ops, follow_symlinks=follow_symlinks)
    if readonly:
        if not layout.holds_log():
            raise NoLedgerError(f"no ledger at {layout.directory} (it holds no {layout.log.name})")
        return log
    make_directory(ops, layout.directory)
    try:
        log.recover()
    except OSError as exc:  # LedgerIOError is one: raised as it is
        if isinstance(exc, LedgerError):
            raise
        raise io_error("use", Path(exc.filename) if exc.filename else layout.log, exc) from None
    return log


def make_directory(ops: FileOps, directory: Path, *, verb: str = "use") -> None:
    """Create ``directory`` and its missing parents (each new directory's entry fsynced in its parent), as
    every writer and watcher does first; raise :class:`~ledger.errors.LedgerIOError` ("cannot ``verb``
    DIR: ...") if that fails or the path is not a directory."""
    try:
        ops.make_dirs(directory)
    except OSError as exc:
        raise io_error("create the ledger directory" if verb == "use" else verb, directory, exc) from None
    if not directory.is_dir():
        raise LedgerIOError(f"cannot {verb} {directory}: it is not a directory")


class StoreChoice(NamedTuple):
    """Where a ledger's parts are, as :func:`resolve_store` decides: nothing opened yet."""

    directory: str | os.PathLike[str] | None
    """The ledger directory (the snapshot, checkpoint and locks; ``None``: :func:`default_directory
    <ledger.layout.default_directory>`)."""
    spec: str | os.PathLike[str] | None
    """The store to open for its events: a URL, or a directory other than the ledger directory; ``None``:
    the ledger directory's own ``events.jsonl``."""


def resolve_store(
    directory: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None = None,
    *,
    named_by: str | None = None,
) -> StoreChoice:
    """Which ledger directory and which store a ledger given ``directory`` and ``store`` uses: the one rule
    for the library and the command line.

    ``store`` ``None`` means ``$VIDEO_LEDGER_STORE`` (:func:`store_spec`); neither: the file store in the
    directory. A URL is the store and ``directory`` this host's directory. A directory store is the ledger
    directory: with ``directory`` ``None`` or the same directory, it becomes the directory. A different
    directory is refused (:class:`~ledger.errors.InvalidEntryError`) when the store was named by the user
    (``named_by``, such as ``"--store"``; the environment variable always is), and otherwise (a program's
    explicit ``store=``) kept as a store apart. Nothing is opened or created."""
    if store is None and named_by is None and store_spec(None) is not None:
        named_by = f"${STORE_ENV}"
    spec = store_spec(store)
    if spec is None:
        return StoreChoice(directory, None)
    check_store_spec(spec)
    if is_url(spec):
        return StoreChoice(directory, spec)
    if directory is None or same_directory(directory, spec):
        return StoreChoice(spec, None)
    if named_by is not None:
        raise InvalidEntryError(
            f"{named_by} names the directory {os.fspath(spec)} and the ledger directory is "
            f"{os.fspath(directory)}: a file store's events live in the ledger directory, give one of them"
        )
    return StoreChoice(directory, spec)


def open_chosen(
    directory: str | os.PathLike[str] | None,
    store: EventStore | str | os.PathLike[str] | None,
    *,
    readonly: bool = False,
    ops: FileOps | None = None,
    follow_symlinks: bool = False,
) -> tuple[str | os.PathLike[str] | None, EventStore | None, bool]:
    """The ledger directory and the store a ledger (or a watcher) is given, a spec resolved
    (:func:`resolve_store`) and opened (:func:`open_store`); ``None``: the file store in the directory. The
    third value: whether the store was opened here (the caller closes it, also if it fails)."""
    if isinstance(store, EventStore):
        return directory, store, False
    directory, spec = resolve_store(directory, store)
    if spec is None:
        return directory, None, False
    return directory, open_store(spec, readonly=readonly, ops=ops, follow_symlinks=follow_symlinks), True


def store_name(store: EventStore | str | os.PathLike[str]) -> Path:
    """How every message names a store, in one spelling: the file store by its log file
    (``DIR/events.jsonl``), a PostgreSQL store as ``postgresql:HOST:PORT/DATABASE`` (never its user, a
    password or a parameter), another by what it calls itself. Given a spec (a URL, a directory), the
    store it names, without opening it."""
    if not isinstance(store, EventStore):
        if is_url(store):
            _require_psycopg()
            from ledger.postgres import name_of

            return name_of(str(store))
        return Layout.of(store).log
    where = getattr(store, "path", None) or getattr(store, "where", None)
    return where if isinstance(where, Path) else Path(f"<{type(store).__name__}>")


def warn_if_beside(log_path: Path, where: Path) -> None:
    """Warn when a ledger whose events are in another store (named ``where``) has a file store's log at
    ``log_path`` in its directory: that file is neither read nor written."""
    if where != log_path and log_path.exists():
        logging.getLogger("ledger").warning(
            "%s holds a file store's %s, but this ledger's events are in %s: that file is neither read "
            "nor written here (move it away once a copy of it is verified)",
            log_path.parent, log_path.name, where,
        )  # fmt: skip


def init_postgres(url: str, *, app_role: str | None = None) -> int:
    """Create or migrate the ledger schema in the database at ``url`` (:func:`ledger.postgres.init`, with
    the checks :func:`open_store` makes first: a typed error for a bad URL or a missing psycopg). Returns
    the schema version now in place."""
    if not is_url(url):
        raise InvalidEntryError(f"{url}: not a postgresql:// URL")
    _check_url(url)
    from ledger.postgres import init

    return init(url, app_role=app_role)
