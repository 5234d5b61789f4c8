"""``video-ledger``: the command line, a thin layer over :class:`ledger.Ledger`.

Exit codes: 0 ok; 1 when ``verify`` finds a problem, ``get`` finds no entry, or a command meets corrupt data
or a failing disk; 2 for bad usage or bad input. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import csv
import datetime as dt
import difflib
import errno
import logging
import math
import re
import shutil
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import msgspec

from ledger import demo as demo_names
from ledger.copy import copy_ledger
from ledger.errors import (
    SYMLINK_REFUSED,
    IllegalTransitionError,
    InvalidEntryError,
    LedgerError,
    ReadOnlyLedgerError,
)
from ledger.events import (
    EVENT_TAGS,
    STATUSES,
    EventType,
    Failed,
    Generating,
    Imported,
    Pending,
    Ready,
    VideoMetadata,
    parse_time,
    schema_documents,
)
from ledger.layout import CHECKPOINT_NAME, DIR_ENV, LOG_NAME, SNAPSHOT_LOCK_NAME, default_directory
from ledger.requests import no_entry
from ledger.store import Ledger, Timeline, encode_entries, parse_head, read_import, save_entries, watch
from ledger.stores import (
    STORE_ENV,
    check_store_spec,
    describe_store,
    init_postgres,
    is_url,
    same_directory,
    store_spec,
)

__all__ = ("main",)

PROG = "video-ledger"
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

_encoder = msgspec.json.Encoder()


class UsageError(Exception):
    """Bad usage found after parsing (exit 2)."""


class WaitTimeout(Exception):
    """``wait`` gave up (exit 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not usage + error; --help has the rest.
        message += _suggestion(self, message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """ "; did you mean ..." for a mistyped command, choice or option (as git does)."""
    choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)$", message)
    if choice:
        word, options = choice.group(1), re.findall(r"'(.*?)'", choice.group(2))
    else:
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if not unknown:
            return ""
        word = unknown.group(1).split("=", 1)[0]
        options = [o for action in parser._actions for o in action.option_strings]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("video-ledger")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options that may come before or after COMMAND (``video-ledger list --dir X`` works too).

    On the subcommands they default to SUPPRESS, so a value given after COMMAND wins and one given before
    it is kept when none is given after."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("ledger options (before or after COMMAND)")
    group.add_argument(
        "--dir",
        metavar="DIR",
        type=_path,
        help=f"ledger directory (default: ${DIR_ENV}, else ./data)",
        default=default(None),
    )
    group.add_argument(
        "--store",
        metavar="STORE",
        type=_path,
        help=f"where the events are: a ledger directory or a postgresql:// URL (default: ${STORE_ENV}, else "
        "DIR's events.jsonl); with a URL, DIR holds this host's snapshot and checkpoint",
        default=default(None),
    )
    group.add_argument(
        "--snapshot",
        metavar="PATH",
        type=_path,
        help="the snapshot the app reads (default: DIR/generated-videos.json)",
        default=default(None),
    )
    group.add_argument(
        "--no-project",
        action="store_true",
        default=default(False),
        help="writers only append; the snapshot is brought up to date by `watch` (for fast pipelines)",
    )
    group.add_argument(
        "--wide",
        action="store_true",
        default=default(False),
        help="print table cells in full even on a terminal (they are never cut when piped)",
    )
    group.add_argument(
        "--force-clock",
        action="store_true",
        default=default(False),
        help="record at this host's clock even if it reads more than 30 days after the last event "
        "(the ledger was idle that long; see docs/lifecycle.md, Time)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Record and audit which videos the generation pipeline made: an append-only, "
        "hash-chained event log (events.jsonl) projected into generated-videos.json.",
        epilog=f"The ledger directory is --dir, else ${DIR_ENV}, else ./data. "
        "Exit codes: 0 ok, 1 problem found (verify, missing entry, corrupt data, disk error), "
        "2 bad usage or input. Shell completion: see `video-ledger completion --help`.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=summary,
            description=f"{summary}\n\nexample:\n  {PROG} {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(p, top=False)
        return p

    p = command(
        "set",
        "Add or update an entry (one event, checked against the lifecycle).",
        "set colosseum rome-80ad --status ready --local-path videos/colosseum-rome-80ad.mp4",
    )
    _entry_args(p)
    p.add_argument("--status", required=True, choices=STATUSES, help="the entry's new status")
    p.add_argument(
        "--prompt", help="prompt used (default: the entry's current prompt; required for a new entry)"
    )
    p.add_argument("--local-path", metavar="PATH", help="the video file (required for ready)")
    p.add_argument("--error", help="error message (only with --status failed)")
    _write_output_args(p)
    p.set_defaults(run=_cmd_set)

    p = command(
        "fail",
        "Mark the running attempt of an entry as failed.",
        'fail colosseum rome-80ad "model timed out"',
    )
    _entry_args(p)
    p.add_argument("error", metavar="ERROR", help="what went wrong")
    _write_output_args(p)
    p.set_defaults(run=_cmd_fail)

    p = command("get", "Show one entry (exit 1 if there is none).", "get colosseum rome-80ad --json")
    _entry_args(p)
    p.add_argument("--json", action="store_true", help="print the entry as one JSON object")
    p.set_defaults(run=_cmd_get)

    p = command("list", "List the entries, ordered by spot and era.", "list --status failed")
    p.add_argument("--status", choices=STATUSES, help="only entries with this status")
    p.add_argument("--json", action="store_true", help="print the JSON array exactly as in the snapshot")
    p.add_argument("--csv", action="store_true", help="print CSV with a header row (for spreadsheets)")
    p.set_defaults(run=_cmd_list)

    p = command(
        "history",
        "Show the events, oldest first (all, or one entry's), filtered, or follow them as they come.",
        "history colosseum rome-80ad --follow --type failed",
    )
    p.add_argument("spot", metavar="SPOT", nargs="?", help="spotId")
    p.add_argument("era", metavar="ERA", nargs="?", help="eraId")
    p.add_argument("--json", action="store_true", help="print each event's line exactly as stored")
    p.add_argument("--csv", action="store_true", help="print CSV with a header row (for spreadsheets)")
    p.add_argument("--status", choices=STATUSES, help="only events that leave an entry with this status")
    p.add_argument("--type", choices=EVENT_TAGS, help="only events of this type")
    p.add_argument(
        "--since", metavar="TIME", help="only events at or after TIME (RFC 3339; no zone means UTC)"
    )
    p.add_argument("--until", metavar="TIME", help="only events at or before TIME")
    p.add_argument("--since-seq", type=_int_at_least(0), metavar="N", help="only events after event N")
    p.add_argument(
        "--follow", action="store_true", help="then print events as they are appended, like tail -f"
    )
    p.set_defaults(run=_cmd_history)

    p = command(
        "timeline",
        "Tell one entry's story: queued, each attempt, how it ended, time to ready.",
        "timeline colosseum rome-80ad",
    )
    _entry_args(p)
    p.add_argument("--json", action="store_true", help="print the story as one JSON object")
    p.set_defaults(run=_cmd_timeline)

    p = command(
        "snapshot",
        "Print the snapshot as it stood at a time or event (time travel), as generated-videos.json.",
        "snapshot --as-of 2026-11-24T09:00:00Z -o then.json",
    )
    p.add_argument("--as-of", metavar="TIME", help="include events at or before TIME")
    p.add_argument(
        "--seq", type=_int_at_least(0), metavar="N", help="include events up to and including event N"
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write it to FILE (atomically) instead of printing it"
    )
    p.set_defaults(run=_cmd_snapshot)

    p = command(
        "stats",
        "Entries per status and era, attempts, success rate, generation times, top failures.",
        "stats --json",
    )
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(run=_cmd_stats)

    p = command(
        "watch",
        "Keep generated-videos.json current while other processes append (stop with Ctrl-C or SIGTERM).",
        "watch --dir data --verbose",
    )
    p.add_argument(
        "--step",
        type=_int_at_least(1, at_most=60_000),
        default=20,
        metavar="MS",
        help="quiet time before projecting, 1..60000 (default 20)",
    )
    p.add_argument(
        "--debounce",
        type=_int_at_least(1, at_most=3_600_000),
        default=100,
        metavar="MS",
        help="longest burst gathered, 1..3600000 (default 100)",
    )
    p.add_argument("--verbose", action="store_true", help="print a line for each snapshot written")
    p.set_defaults(run=_cmd_watch)

    p = command(
        "wait", "Wait until the snapshot includes event N (exit 1 on timeout).", "wait --seq 42 --timeout 5"
    )
    p.add_argument(
        "--seq", type=_int_at_least(1), required=True, metavar="N", help="the event to wait for (1 or more)"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up after this long, 0 or more (default: never)",
    )
    p.set_defaults(run=_cmd_wait)

    p = command("rebuild", "Replay the whole log into a fresh generated-videos.json.", "rebuild")
    p.set_defaults(run=_cmd_rebuild)

    p = command(
        "verify",
        "Check every line's checksum, sequence and hash chain, the lifecycle, and the snapshot "
        "against the log (exit 1 on any problem).",
        "verify --files --media data/videos",
    )
    p.add_argument(
        "--files",
        action="store_true",
        help="also check each ready entry's file: exists, same size and SHA-256",
    )
    p.add_argument(
        "--media", metavar="DIR", help="with --files: also list video files in DIR no entry refers to"
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="with --files: where localPaths start; nothing outside is read (default: the ledger directory)",
    )
    p.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="a head an earlier verify printed, kept elsewhere: fail unless the log's event SEQ still has "
        "that hash (the log may have grown since)",
    )
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    p.set_defaults(run=_cmd_verify)

    p = command(
        "reap",
        "Mark failed every entry stuck in generating (no event) for longer than DURATION; safe beside "
        "live workers.",
        "reap --older-than 2h",
    )
    p.add_argument(
        "--older-than",
        metavar="DURATION",
        required=True,
        type=_duration,
        help="like 90s, 15m, 2h or 1d (more than 0, at most 36500d; negative values are refused)",
    )
    p.add_argument("--json", action="store_true", help="print the reaped entries as a JSON array")
    p.set_defaults(run=_cmd_reap)

    p = command(
        "import",
        "Bring an existing generated-videos.json into the ledger, keeping its timestamps "
        "(entries already in the ledger are left alone).",
        "import ../app/src/lib/data/generated-videos.json",
    )
    p.add_argument("path", metavar="PATH", help="the generated-videos.json to import")
    p.set_defaults(run=_cmd_import)

    p = command(
        "init",
        "Create the store: a PostgreSQL database's ledger schema (or migrate it to this version), or a "
        "ledger directory with an empty events.jsonl.",
        "--store postgresql://ledger_owner@db-host/ledger init --app-role ledger_app",
    )
    p.add_argument(
        "--app-role",
        metavar="ROLE",
        help="PostgreSQL only: grant ROLE what the app needs and no more (SELECT, INSERT on ledger_events; "
        "SELECT, UPDATE on ledger_head; SELECT on ledger_schema_version)",
    )
    p.set_defaults(run=_cmd_init)

    p = command(
        "copy",
        "Copy a whole ledger from one store to another (each a directory or a postgresql:// URL): the "
        "source checked first, its lines copied byte for byte; a target that holds the start of the "
        "source is resumed, any other non-empty target refused.",
        "copy --from data --to postgresql://ledger_app@db-host/ledger",
    )
    p.add_argument("--from", dest="source", metavar="SRC", required=True, type=_path, help="the source store")
    p.add_argument("--to", dest="target", metavar="DST", required=True, type=_path, help="the target store")
    p.set_defaults(run=_cmd_copy)

    p = command(
        "demo",
        "Run a small real pipeline against the ledger: worker processes generate placeholder videos "
        "through generation(), some fail and are retried once.",
        "demo --dir demo-data --spots 6 --eras 4 --workers 3",
    )
    p.add_argument(
        "--spots",
        type=_int_at_least(1, at_most=len(demo_names.SPOTS)),
        default=4,
        metavar="N",
        help=f"number of spots, 1..{len(demo_names.SPOTS)} (default 4)",
    )
    p.add_argument(
        "--eras",
        type=_int_at_least(1, at_most=len(demo_names.ERAS)),
        default=3,
        metavar="M",
        help=f"number of eras, 1..{len(demo_names.ERAS)} (default 3)",
    )
    p.add_argument(
        "--workers",
        type=_int_at_least(1, at_most=64),
        default=2,
        metavar="K",
        help="worker processes, 1..64 (default 2)",
    )
    p.add_argument(
        "--fail-rate",
        type=_fraction,
        default=0.2,
        metavar="P",
        help="chance an attempt fails, 0..1 (default 0.2)",
    )
    p.add_argument("--seed", type=int, default=7, metavar="S", help="random seed (default 7)")
    p.set_defaults(run=_cmd_demo)

    p = command(
        "schema",
        "Print the JSON Schema of a log line (event) or of generated-videos.json (snapshot).",
        "schema snapshot > generated-videos.schema.json",
    )
    p.add_argument("kind", choices=("event", "snapshot"), metavar="KIND", help="event or snapshot")
    p.set_defaults(run=_cmd_schema)

    p = command(
        "completion",
        "Print a shell completion script for bash or zsh.",
        "completion bash > ~/.local/share/bash-completion/completions/video-ledger",
    )
    p.add_argument("shell", choices=("bash", "zsh"), metavar="SHELL", help="bash or zsh")
    p.set_defaults(run=_cmd_completion)
    return parser


def _write_output_args(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help='print {"seq": N, "entry": {...}} (seq null if nothing was recorded)',
    )
    out.add_argument("--quiet", "-q", action="store_true", help="print nothing (the exit code tells)")


def _path(text: str) -> str:
    """An argparse type: a path that is not empty (``--dir "$UNSET"`` would otherwise mean the current
    directory, and a writer would create a ledger there)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no ledger (is a variable unset?)")
    return text


def _int_at_least(low: int, *, at_most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``low..at_most``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (at_most is not None and value > at_most):
            span = f"at least {low}" if at_most is None else f"between {low} and {at_most}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {span}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be between 0 and 1000000000")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be between 0 and 1")
    return value


_MAX_DURATION = dt.timedelta(days=36500)


def _duration(text: str) -> dt.timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit in units and number[:1] == "-" and number[1:].isascii() and number[1:].isdigit():
        raise argparse.ArgumentTypeError(
            f"{text} is out of range: it must be more than 0 (negative durations are refused)"
        )
    if unit not in units or not number.isascii() or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    if int(number) * units[unit] > _MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be at most 36500d (100 years)")
    return dt.timedelta(seconds=int(number) * units[unit])


def _entry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spot", metavar="SPOT", help="spotId")
    p.add_argument("era", metavar="ERA", help="eraId")


# -- commands ------------------------------------------------------------------------------------------


def _url(args: argparse.Namespace) -> str | None:
    """The PostgreSQL store ``--store`` (or ``$VIDEO_LEDGER_STORE``) names, else ``None`` (a directory's)."""
    store: str | None = getattr(args, "store", None)
    return store if store is not None and is_url(store) else None


def _open(args: argparse.Namespace, *, readonly: bool) -> Ledger:
    return Ledger(
        args.dir if args.dir is not None else default_directory(),
        snapshot=args.snapshot,
        readonly=readonly,
        projection="deferred" if args.no_project else "inline",
        force_clock=args.force_clock,
        store=_url(args),
    )


def _cmd_set(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger, _flag_names():
        entry = ledger.update_entry(
            args.spot, args.era, args.status, prompt=args.prompt, local_path=args.local_path, error=args.error
        )
        _print_written(entry, ledger.last_seq, args, out)
    return EXIT_OK


def _cmd_fail(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger, _flag_names():
        entry = ledger.mark_video_failed(args.spot, args.era, args.error)
        _print_written(entry, ledger.last_seq, args, out)
    return EXIT_OK


def _print_written(entry: VideoMetadata, seq: int | None, args: argparse.Namespace, out: TextIO) -> None:
    """The entry as stored and the event that recorded it (what ``wait --seq`` takes)."""
    if args.quiet:
        return
    if args.json:
        out.write(_encoder.encode({"seq": seq, "entry": entry}).decode() + "\n")
        return
    _print_entries([entry], out)
    if seq is None:
        out.write(f"nothing recorded: {entry.spot_id}/{entry.era_id} already is {entry.status}\n")
    else:
        out.write(f"recorded event {seq}\n")


# The stored fields' names in the ledger's messages, as the flags and arguments a user of `set` types.
_FLAG_OF = {
    "spotId": "SPOT",
    "eraId": "ERA",
    "prompt": "--prompt",
    "localPath": "--local-path",
    "error": "--error",
    "status": "--status",
}
_AT_FIELD = re.compile(r"^invalid entry: (.*) - at `\$\.(\w+)`$", re.S)
_FLAGS = (
    (re.compile(r"\blocalPath\b"), "--local-path"),
    (re.compile(r"(?:^|(?<=: ))error is\b"), "--error is"),
    (re.compile(r"\bneeds an error message\b"), "needs --error"),
    (re.compile(r"\ba prompt is required\b"), "--prompt is required"),
)


@contextlib.contextmanager
def _flag_names() -> Iterator[None]:
    """Reword a refusal of ``set``/``fail`` in the flags' names (``--local-path``, not ``localPath``)."""
    try:
        yield
    except (InvalidEntryError, IllegalTransitionError) as exc:
        text = str(exc)
        at = _AT_FIELD.match(text)
        if at and at.group(2) in _FLAG_OF:
            text = f"invalid {_FLAG_OF[at.group(2)]}: {at.group(1)}"
        for pattern, flag in _FLAGS:
            text = pattern.sub(flag, text)
        exc.args = (text,)
        raise


def _cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        entry = ledger.get_video_metadata(args.spot, args.era)
    if entry is None:
        raise no_entry(args.spot, args.era)
    if args.json:
        out.write(_encoder.encode(entry).decode() + "\n")
    else:
        _print_entries([entry], out)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        entries = [e for e in ledger.get_all_video_metadata() if args.status in (None, e.status)]
    if args.json:
        out.write(encode_entries(entries).decode())
    elif args.csv:
        _write_csv(_ENTRY_HEADER, (_entry_row(e) for e in entries), out)
    else:
        _print_entries(entries, out)
    return EXIT_OK


def _cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    if (args.spot is None) != (args.era is None):
        raise UsageError("history takes both SPOT and ERA, or neither")
    if args.json and args.csv:
        raise UsageError("choose one of --json and --csv")
    if args.follow:
        return _follow(args, out)
    with _open(args, readonly=True) as ledger:
        records = ledger.history_lines(
            args.spot, args.era, since_seq=args.since_seq, since=args.since, until=args.until,
            status=args.status, type=args.type,
        )  # fmt: skip
        if args.json:
            for line, _ in records:
                out.write(line.decode() + "\n")
        elif args.csv:
            _write_csv(_HISTORY_HEADER, (_history_row(e, escape=False) for _, e in records), out)
        else:
            _print_table(_HISTORY_HEADER, (_history_row(e) for _, e in records), out)
    return EXIT_OK


_HISTORY_HEADER = ["seq", "time", "event", "spotId", "eraId", "details"]


def _history_row(e: EventType, *, escape: bool = True) -> list[str]:
    return [str(e.seq), e.ts, e.type, e.spot_id, e.era_id, _details(e, escape=escape)]


def _follow(args: argparse.Namespace, out: TextIO) -> int:
    low = None if args.since is None else parse_time(args.since)
    high = None if args.until is None else parse_time(args.until)

    def wanted(e: EventType) -> bool:  # the filters of Ledger.history_lines, applied as events come
        return (
            (args.spot is None or (e.spot_id, e.era_id) == (args.spot, args.era))
            and (low is None or e.ts >= low)
            and (high is None or e.ts <= high)
            and (args.status is None or e.new_status == args.status)
            and (args.type is None or e.type == args.type)
        )

    stop = threading.Event()

    def caught_up(seq: int) -> None:
        sys.stderr.write(f"{PROG}: caught up at event {seq}; waiting for new events (Ctrl-C to stop)\n")
        sys.stderr.flush()

    if args.csv:
        _write_csv(_HISTORY_HEADER, [], out)
    with _stop_on_signals(stop), _open(args, readonly=True) as ledger:
        for line, event in ledger.follow(since_seq=args.since_seq, stop_event=stop, on_caught_up=caught_up):
            if not wanted(event):
                continue
            if args.json:
                out.write(line.decode() + "\n")
            elif args.csv:
                _write_csv(None, [_history_row(event, escape=False)], out)
            else:
                out.write("  ".join(_history_row(event)) + "\n")
            out.flush()
    return EXIT_OK


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (so the work in progress finishes cleanly) instead of killing us."""

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cmd_timeline(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        story = ledger.timeline(args.spot, args.era)
    if args.json:
        out.write(_encoder.encode(_timeline_json(story)).decode() + "\n")
        return EXIT_OK
    out.write(f"{story.spot_id}/{story.era_id}\n")
    rows: list[tuple[str, str]] = []
    if story.imported is not None:
        imported = story.imported
        rows.append((imported.created_at, f"created (imported at {imported.ts} as {imported.status})"))
    rows += [(ts, f"queued: {_cell(prompt, 60)}") for ts, prompt in story.queued]
    for a in story.attempts:
        rows.append((a.started, f"attempt {a.number} started: {_cell(a.prompt, 60)}"))
        if a.ended is not None and a.seconds is not None:
            how = f"attempt {a.number} {a.outcome} after {_duration_text(a.seconds)}"
            rows.append((a.ended, f"{how}: {_cell(a.detail or '', 60)}"))
    for ts, text in sorted(rows, key=lambda row: row[0]):
        out.write(f"  {ts}  {text}\n")
    summary = f"{len(story.attempts)} attempt(s)"
    if story.seconds_to_ready is not None:
        summary += f"; ready {_duration_text(story.seconds_to_ready)} after its first event"
    running = [a for a in story.attempts if a.outcome is None]
    if running:
        summary += f"; attempt {running[-1].number} still generating"
    out.write(f"  {summary}\n")
    return EXIT_OK


def _timeline_json(story: Timeline) -> dict[str, object]:
    return {
        "spotId": story.spot_id,
        "eraId": story.era_id,
        "firstEvent": story.first,
        "imported": None if story.imported is None else msgspec.to_builtins(story.imported),
        "queued": [{"time": ts, "prompt": prompt} for ts, prompt in story.queued],
        "attempts": [
            {
                "number": a.number,
                "started": a.started,
                "prompt": a.prompt,
                "ended": a.ended,
                "outcome": a.outcome,
                "detail": a.detail,
                "seconds": a.seconds,
            }
            for a in story.attempts
        ],
        "secondsToReady": story.seconds_to_ready,
    }


def _duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _cmd_snapshot(args: argparse.Namespace, out: TextIO) -> int:
    if args.as_of is None and args.seq is None:
        raise UsageError("snapshot needs --as-of TIME or --seq N")
    with _open(args, readonly=True) as ledger:
        entries = ledger.entries_as_of(seq=args.seq, time=args.as_of)
    if args.output:
        save_entries(args.output, entries)
        out.write(f"wrote {len(entries)} entries to {args.output}\n")
    else:
        out.write(encode_entries(entries).decode())
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        figures = ledger.stats()
    if args.json:
        out.write(msgspec.json.encode(figures).decode() + "\n")
        return EXIT_OK
    out.write(f"{figures.events} events, {figures.entries} entries\n")
    if figures.entries:
        out.write("by status: " + ", ".join(f"{k} {v}" for k, v in figures.by_status.items()) + "\n")
        out.write("by era:    " + ", ".join(f"{k} {v}" for k, v in figures.by_era.items()) + "\n")
    spread = ", ".join(f"{count} with {n}" for n, count in figures.attempts_per_entry.items())
    out.write(f"attempts:  {figures.attempts}" + (f" (entries: {spread})" if spread else "") + "\n")
    rate = "n/a" if figures.success_rate is None else f"{figures.success_rate:.1%}"
    out.write(
        f"success:   {rate} ({figures.ready_attempts} ready, {figures.failed_attempts} failed attempts)\n"
    )
    if figures.generation_seconds_median is not None and figures.generation_seconds_p95 is not None:
        out.write(
            f"generating -> ready: median {_duration_text(figures.generation_seconds_median)}, "
            f"95th percentile {_duration_text(figures.generation_seconds_p95)}\n"
        )
    if figures.top_failures:
        out.write("most frequent failures:\n")
    for message, count in figures.top_failures:
        out.write(f"  {count:>5} x {_cell(message, 90)}\n")
    if figures.clock_skew is not None:
        out.write(f"clock skew: {figures.clock_skew.describe()}\n")
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    stop = threading.Event()

    def projected(seq: int) -> None:
        if args.verbose:
            out.write(f"snapshot at event {seq}\n")
            out.flush()

    with _stop_on_signals(stop):
        url = _url(args)
        over = f" over {describe_store(url)}" if url is not None else ""
        sys.stderr.write(f"{PROG}: watching {args.dir or default_directory()}{over} (Ctrl-C to stop)\n")
        sys.stderr.flush()
        written = watch(
            args.dir if args.dir is not None or url is None else default_directory(), snapshot=args.snapshot,
            stop_event=stop, step=args.step, debounce=args.debounce, on_project=projected, store=url,
        )  # fmt: skip
    sys.stderr.write(f"{PROG}: stopped after writing {written} snapshot(s)\n")
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace, out: TextIO) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop), _open(args, readonly=True) as ledger:
        done = ledger.wait_for(args.seq, timeout=args.timeout, stop_event=stop)
    if not done:
        raise WaitTimeout(f"the snapshot does not include event {args.seq} yet")
    out.write(f"the snapshot includes event {args.seq}\n")
    return EXIT_OK


def _cmd_rebuild(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        report = ledger.rebuild()
        out.write(f"rebuilt {ledger.snapshot_path} from {report.events} events ({report.entries} entries)\n")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    if (args.media or args.root) and not args.files:
        raise UsageError("--media and --root go with --files")
    if args.expect_head is not None:
        parse_head(args.expect_head)  # bad usage (exit 2) before anything is opened
    if args.json:
        return _verify_json(args, out)
    with _open(args, readonly=True) as ledger:
        code = _print_verify(ledger, out, expect_head=args.expect_head, where=_log_name(args, ledger))
        if args.files:
            files = ledger.verify_files(root=args.root, media=args.media)
            for problem in files.problems:
                out.write(f"FILE {_cell(problem)}\n")
            out.write(f"files: {files.checked} checked, {len(files.problems)} problems\n")
            if not files.ok:
                code = EXIT_PROBLEM
    return code


def _verify_json(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        report = ledger.verify(expect_head=args.expect_head)
        found: dict[str, object] = {
            "ok": report.ok,
            "log": _log_name(args, ledger),
            "events": report.events,
            "entries": report.entries,
            "problem": report.problem,
            "line": report.line,
            "checkpointSeq": report.checkpoint_seq,
            "head": report.head,
            "torn": None if report.torn is None else {"bytes": report.torn.size, "line": report.torn.line},
            "note": report.note,  # the text output's note and warning lines, each null when it has none
            "clockSkew": report.skew,  # as stats --json has it
            "nonNfc": report.non_nfc,
        }
        if args.files:
            files = ledger.verify_files(root=args.root, media=args.media)
            found["files"] = {"ok": files.ok, "checked": files.checked, "problems": files.problems}
            found["ok"] = report.ok and files.ok
    out.write(_encoder.encode(found).decode() + "\n")
    return EXIT_OK if found["ok"] else EXIT_PROBLEM


def _log_name(args: argparse.Namespace, ledger: Ledger) -> str:
    """Where the events are, as verify names it: the log file, or the store's URL without its password."""
    url = _url(args)
    return describe_store(url) if url is not None else str(ledger.log_path)


def _print_verify(ledger: Ledger, out: TextIO, *, expect_head: str | None = None, where: str = "") -> int:
    report = ledger.verify(expect_head=expect_head)
    where = where or str(ledger.log_path)
    if not report.ok:
        at = f" line {report.line}" if report.line is not None else ""
        out.write(f"FAILED {where}{at}: {report.problem}\n")
        out.write(f"{report.events} whole events before the problem\n")
        if report.head is not None:
            out.write(f"head: {report.head}\n")
        return EXIT_PROBLEM
    snapshot = (
        "no snapshot yet"
        if report.snapshot_seq is None
        else f"snapshot matches the log at event {report.snapshot_seq}"
    )
    out.write(f"ok: {report.events} events, {report.entries} entries, chain intact, {snapshot}\n")
    out.write(f"head: {report.head}\n")
    if report.note is not None:
        out.write(f"note: {report.note}\n")
    if report.torn is not None:
        out.write(f"note: {_torn_note(report.torn.size, report.torn.line)}\n")
    if report.skew is not None:
        out.write(f"warning: clock skew: {report.skew.describe()}\n")
    if report.non_nfc is not None:
        out.write(f"warning: ids: {report.non_nfc}\n")
    return EXIT_OK


def _cmd_reap(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        reaped = ledger.reap(args.older_than)
    if args.json:
        out.write(encode_entries(reaped).decode())
        return EXIT_OK
    if reaped:
        _print_entries(reaped, out)
    out.write(f"reaped {len(reaped)} entries stuck in generating\n")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    checked = read_import(args.path)  # before the ledger is opened: a refused file leaves DIR as it was
    with _open(args, readonly=False) as ledger:
        report = ledger.import_entries(checked)
    if report.dropped:
        fields = ", ".join(f"{name} ({n} entries)" for name, n in report.dropped.items())
        sys.stderr.write(f"{PROG}: warning: dropped fields the ledger does not keep: {fields}\n")
    out.write(
        f"imported {report.imported} entries; "
        f"{report.already_present} already in the ledger, left as they are\n"
    )
    return EXIT_OK


def _cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    if args.store is not None and is_url(args.store):
        version = init_postgres(args.store, app_role=args.app_role)
        granted = f"; role {args.app_role} granted what the app needs" if args.app_role else ""
        out.write(f"ledger schema version {version} in {describe_store(args.store)}{granted}\n")
        return EXIT_OK
    directory = args.dir if args.dir is not None else default_directory()
    if args.app_role is not None:
        raise UsageError(f"--app-role is for a PostgreSQL store; {directory} is a ledger directory")
    with _open(args, readonly=False) as ledger:
        events = ledger.head().seq
    out.write(
        f"ledger directory {directory} ready: {LOG_NAME} holds {events} events (a file store has no schema)\n"
    )
    return EXIT_OK


def _cmd_copy(args: argparse.Namespace, out: TextIO) -> int:
    err = sys.stderr
    shown = False  # the progress line, once written, is ended before anything else is

    def progress(copied: int, total: int) -> None:
        nonlocal shown
        shown = True
        err.write(f"\rcopying: {copied}/{total} records")
        err.flush()

    try:
        report = copy_ledger(args.source, args.target, progress=progress if err.isatty() else None)
    finally:
        if shown:
            err.write("\n")
    head = report.head
    resumed = f", resumed after the {report.resumed} already there" if report.resumed else ""
    out.write(
        f"copied {report.copied} records from {describe_store(args.source)} to {describe_store(args.target)}"
        f"{resumed}; head {head.seq}:{head.hash}\n"
    )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    demo = demo_names
    directory = args.dir if args.dir is not None else default_directory()
    tty = out.isatty()
    total = args.spots * args.eras

    def progress(result: demo.DemoResult, last: demo.JobResult) -> None:
        counts = demo.outcome_counts(result)
        finished = result.finished
        if tty:
            width = 30
            filled = width * finished // total
            out.write(
                f"\r[{'#' * filled}{'-' * (width - filled)}] {finished}/{total} jobs  "
                f"ready {counts['ready']}  failed {counts['failed']}  retried {result.retried}"
            )
            out.flush()
        else:
            out.write(_demo_line(last, finished, total) + "\n")

    try:
        result = demo.run_demo(
            directory, spots=args.spots, eras=args.eras, workers=args.workers,
            fail_rate=args.fail_rate, seed=args.seed, progress=progress, store=_url(args),
        )  # fmt: skip
    except demo.DemoInterrupted as exc:
        if tty:
            out.write("\n")
        out.flush()
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 128 + exc.signum
    if tty:
        out.write("\n")
    refused = f", {result.refused} refused (another attempt on the entry was live)" if result.refused else ""
    out.write(
        f"{result.jobs} jobs on {args.workers} workers in {result.seconds:.1f} s, "
        f"{result.retried} retried{refused}\n"
    )
    if result.existing:
        busy = f", {result.live} of them generating" if result.live else ""
        out.write(
            f"note: {directory} already held {result.existing} entries{busy}; this run added its attempts "
            "to theirs (see `history`)\n"
        )
    out.write("\n")
    with Ledger(directory, readonly=True, store=_url(args)) as ledger:
        entries = ledger.get_all_video_metadata()
        _print_entries(entries, out)
        counts = Counter(e.status for e in entries)
        out.write("\n" + ", ".join(f"{status}: {counts[status]}" for status in STATUSES) + "\n")
        code = _print_verify(ledger, out, where=_log_name(args, ledger))
        files = ledger.verify_files(media=Path(directory) / "videos")
        for problem in files.problems:
            out.write(f"FILE {_cell(problem)}\n")
        out.write(f"files: {files.checked} checked, {len(files.problems)} problems\n")
    return code if files.ok else EXIT_PROBLEM


def _demo_line(last: demo_names.JobResult, finished: int, total: int) -> str:
    """``[  3/12] petra/decline attempt 1: ready``; a failed first attempt is not a finished job: it shows
    ``[ retry]`` in place of the counter (the job runs again)."""
    counter = f"{finished:>3}/{total}" if last.final else "retry".rjust(len(f"{0:>3}/{total}"))
    detail = f" ({last.detail})" if last.detail else ""
    return f"[{counter}] {last.spot_id}/{last.era_id} attempt {last.attempt}: {last.outcome}{detail}"


def _torn_note(size: int, line: int) -> str:
    return (
        f"{size} bytes at the end of the log (from line {line}) are not a whole event "
        "(a write cut short by a crash); the next write sets them aside"
    )


# -- output --------------------------------------------------------------------------------------------


def _details(event: EventType, *, escape: bool = True) -> str:
    show = repr if escape else str
    match event:
        case Pending() | Generating():
            return f"prompt={show(event.prompt)}" + (
                f" localPath={show(event.local_path)}" if event.local_path else ""
            )
        case Ready():
            size = f" size={event.size}" if event.size is not None else ""
            return f"localPath={show(event.local_path)}{size}"
        case Failed():
            return f"error={show(event.error)}"
        case Imported():
            return f"imported as {event.status}, createdAt={event.created_at}"


_ENTRY_HEADER = ["spotId", "eraId", "status", "createdAt", "completedAt", "localPath / error"]


def _entry_row(e: VideoMetadata) -> list[str]:
    return [
        e.spot_id,
        e.era_id,
        e.status,
        e.created_at or "",
        e.completed_at or "",
        e.error or e.local_path or "",
    ]


def _print_entries(entries: Sequence[VideoMetadata], out: TextIO) -> None:
    if not entries:
        out.write("no entries\n")
        return
    _print_table(_ENTRY_HEADER, (_entry_row(e) for e in entries), out)


_WIDTH: contextvars.ContextVar[int | None] = contextvars.ContextVar("table_width", default=None)
"""The terminal's width when tables are to fit it; ``None`` (piped, or ``--wide``) prints cells in full."""


def _cell(text: str, width: int | None = None) -> str:
    """``text`` with control characters escaped, cut to ``width`` only when printing to a terminal."""
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    if width is None or _WIDTH.get() is None:
        return text
    return text if len(text) <= width else text[: width - 1] + "…"


def _fit(widths: list[int], total: int) -> list[int]:
    """Column widths that fit ``total`` characters (two spaces between columns): the widest columns give
    way first, none below 12 characters (or its natural width)."""
    widths = list(widths)
    floor = [min(w, 12) for w in widths]
    while sum(widths) + 2 * (len(widths) - 1) > total:
        i = max(range(len(widths)), key=lambda k: widths[k] - floor[k])
        if widths[i] <= floor[i]:
            break
        widths[i] -= 1
    return widths


def _print_table(header: list[str], rows: Iterable[list[str]], out: TextIO) -> None:
    table = [header] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    terminal = _WIDTH.get()
    if terminal is not None:
        widths = _fit(widths, terminal - 1)
        table = [
            [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, widths, strict=True)]
            for row in table
        ]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _write_csv(header: list[str] | None, rows: Iterable[list[str]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)


# -- schema and completion -----------------------------------------------------------------------------


def _cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    out.write(schema_documents()[f"{args.kind}.schema.json"].decode())
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace, out: TextIO) -> int:
    out.write(completion_script(args.shell))
    return EXIT_OK


def completion_script(shell: str) -> str:
    """A bash (or zsh, through bashcompinit) completion script generated from the parser: commands, each
    command's options, and the choices of options that have them; anything else completes file names."""
    parser = _build_parser()
    commands = _subparsers(parser)
    top = [o for a in parser._actions for o in a.option_strings]
    cases: list[str] = []
    choices: dict[str, list[str]] = {}
    for name, sub in commands.items():
        options = [o for a in sub._actions for o in a.option_strings if o != "-h"]
        arguments: list[str] = []
        for action in sub._actions:
            if action.choices and action.option_strings:
                for o in action.option_strings:
                    choices[o] = [str(c) for c in action.choices]
            elif action.choices:
                arguments += [str(c) for c in action.choices]
        cases.append(f'        {name}) opts="{" ".join(options)}"; args="{" ".join(arguments)}" ;;')
    choice_cases = [
        f'        {o}) COMPREPLY=($(compgen -W "{" ".join(c)}" -- "$cur")); return ;;'
        for o, c in sorted(choices.items())
    ]
    body = f"""# {PROG} completion for bash (generated by `{PROG} completion {shell}`)
_video_ledger() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="" opts="" args="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {"|".join(commands)}) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    case "$prev" in
{chr(10).join(choice_cases)}
        --dir|--snapshot|--media|--root|--output|-o) COMPREPLY=(); return ;;
    esac
    case "$cmd" in
        "") opts="{" ".join(top)}"; args="{" ".join(commands)}" ;;
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$args" -- "$cur"))  # none: file names (complete -o default)
    fi
}}
complete -o default -F _video_ledger {PROG}
"""
    if shell == "zsh":
        return (
            f"# {PROG} completion for zsh: bash's, through bashcompinit\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + body
        )
    return body


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# -- entry point ---------------------------------------------------------------------------------------


def _message(exc: LedgerError) -> str:
    """The library's message in a command-line user's words where they differ: a symbolic link refused
    (``errno.ELOOP``) is allowed in Python with ``follow_symlinks=True``, which the command line has not."""
    text = str(exc)
    filename = getattr(exc, "filename", None)
    if getattr(exc, "errno", None) != errno.ELOOP or SYMLINK_REFUSED not in text or filename is None:
        return text
    hint = "replace the link with the file it points to"
    name = Path(filename).name
    if not (name.startswith(LOG_NAME) or name in (CHECKPOINT_NAME, SNAPSHOT_LOCK_NAME)):
        hint += ", or name that file with --snapshot"  # the snapshot: the one ledger file --snapshot places
    return text.replace(SYMLINK_REFUSED, f"it is a symbolic link (refused; {hint})")


def _exit_code(exc: LedgerError) -> int:
    bad_input = (InvalidEntryError, IllegalTransitionError, ReadOnlyLedgerError)
    return EXIT_USAGE if isinstance(exc, bad_input) else EXIT_PROBLEM


_GLUED = ("--older-than", "--expect-head")
"""Options whose value may be written negative (and is then refused with the option's own error)."""


def _glue_negative_durations(argv: Sequence[str]) -> list[str]:
    """``--older-than -1h`` as ``--older-than=-1h`` (and ``--expect-head -1:HASH``): argparse takes a word
    that starts with ``-`` (and is not a plain number) for an option, and would say "expected one argument"
    instead of the value's own error."""
    argv, glued = list(argv), list[str]()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return glued + argv[i:]
        if word in _GLUED and i + 1 < len(argv) and re.match(r"-[0-9]", argv[i + 1]):
            glued.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        glued.append(word)
        i += 1
    return glued


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported by the command it was given to, with a suggestion."""
    parser = _build_parser()
    args, extras = parser.parse_known_args(_glue_negative_durations(sys.argv[1:] if argv is None else argv))
    if extras:
        _subparsers(parser)[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    return args


_NO_STORE = ("copy", "schema", "completion")
"""The commands that open no ledger: --store and $VIDEO_LEDGER_STORE do not concern them."""


def _resolve_store(args: argparse.Namespace) -> None:
    """``args.store`` from ``--store`` or ``$VIDEO_LEDGER_STORE``. A directory is the ledger directory (the
    file store is its ``events.jsonl``); a URL is the PostgreSQL store, ``--dir`` this host's directory."""
    if args.command in _NO_STORE:
        return
    given = "--store" if args.store is not None else f"${STORE_ENV}"
    args.store = store_spec(args.store)
    if args.store is None:
        return
    check_store_spec(args.store)
    if is_url(args.store):
        return
    if args.dir is not None and not same_directory(args.dir, args.store):
        raise UsageError(
            f"{given} names the directory {args.store} and --dir {args.dir}: a file store's events live in "
            "the ledger directory, give one of them"
        )
    args.dir = args.store


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger = logging.getLogger("ledger")
    logger.addHandler(handler)
    try:
        try:
            args = _parse(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        _resolve_store(args)
        run: Callable[[argparse.Namespace, TextIO], int] = args.run
        terminal = not args.wide and out.isatty()
        _WIDTH.set(shutil.get_terminal_size().columns if terminal else None)
        return run(args, out)
    except UsageError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except WaitTimeout as exc:
        err.write(f"{PROG}: {exc}\n")
        return EXIT_PROBLEM
    except LedgerError as exc:
        err.write(f"{PROG}: error: {_message(exc)}\n")
        return _exit_code(exc)
    except BrokenPipeError:
        return EXIT_OK  # the reader (head, less) went away
    except OSError as exc:  # the library's own I/O errors are LedgerIOError; this is the net under them
        where = f" {exc.filename}" if exc.filename else ""
        err.write(f"{PROG}: error: cannot use{where}: {exc.strerror or exc}\n")
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    finally:
        logger.removeHandler(handler)
