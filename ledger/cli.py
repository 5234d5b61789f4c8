"""``video-ledger``: the command line, a thin layer over :class:`ledger.Ledger`.

Exit codes: 0 ok; 1 when ``verify`` finds a problem, ``get`` finds no entry, or a command meets corrupt data
or a failing disk; 2 for bad usage or bad input. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import msgspec

from ledger.errors import (
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    LedgerError,
    ReadOnlyLedgerError,
    io_error,
)
from ledger.events import STATUSES, EventType, Failed, Generating, Imported, Pending, Ready, VideoMetadata
from ledger.fileops import FileOps, atomic_write
from ledger.layout import DIR_ENV, default_directory
from ledger.store import Ledger, parse_head
from projections import watch as watch_view
from projections.snapshot import encode_snapshot

EVENT_TAGS = ("pending", "generating", "ready", "failed", "imported")

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
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Record and audit which videos the generation pipeline made: an append-only, "
        "hash-chained event log (events.jsonl) projected into generated-videos.json.",
        epilog=f"The ledger directory is --dir, else ${DIR_ENV}, else ./data. "
        "Exit codes: 0 ok, 1 problem found (verify, missing entry, corrupt data, disk error), "
        "2 bad usage or input.",
    )
    parser.add_argument(
        "--dir", metavar="DIR", help=f"ledger directory (default: ${DIR_ENV}, else ./data)", default=None
    )
    parser.add_argument(
        "--snapshot",
        metavar="PATH",
        help="the snapshot the app reads (default: DIR/generated-videos.json)",
        default=None,
    )
    parser.add_argument(
        "--no-project",
        action="store_true",
        help="writers only append; the snapshot is brought up to date by `watch` (for fast pipelines)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=f"{summary}\n\nexample:\n  {PROG} {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

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
    p.set_defaults(run=_cmd_set)

    p = command(
        "fail",
        "Mark the running attempt of an entry as failed.",
        'fail colosseum rome-80ad "model timed out"',
    )
    _entry_args(p)
    p.add_argument("error", metavar="ERROR", help="what went wrong")
    p.set_defaults(run=_cmd_fail)

    p = command("get", "Show one entry (exit 1 if there is none).", "get colosseum rome-80ad --json")
    _entry_args(p)
    p.add_argument("--json", action="store_true", help="print the entry as one JSON object")
    p.set_defaults(run=_cmd_get)

    p = command("list", "List the entries, ordered by spot and era.", "list --status failed")
    p.add_argument("--status", choices=STATUSES, help="only entries with this status")
    p.add_argument("--json", action="store_true", help="print the JSON array exactly as in the snapshot")
    p.set_defaults(run=_cmd_list)

    p = command(
        "history",
        "Show the events, oldest first (all, or one entry's), filtered, or follow them as they come.",
        "history --follow --since-seq 120 --json",
    )
    p.add_argument("spot", metavar="SPOT", nargs="?", help="spotId")
    p.add_argument("era", metavar="ERA", nargs="?", help="eraId")
    p.add_argument("--json", action="store_true", help="print each event's line exactly as stored")
    p.add_argument("--status", choices=STATUSES, help="only events that leave an entry with this status")
    p.add_argument("--type", choices=EVENT_TAGS, help="only events of this type")
    p.add_argument(
        "--since", metavar="TIME", help="only events at or after TIME (RFC 3339; no zone means UTC)"
    )
    p.add_argument("--until", metavar="TIME", help="only events at or before TIME")
    p.add_argument("--since-seq", type=int, metavar="N", help="only events after event N")
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
    p.set_defaults(run=_cmd_timeline)

    p = command(
        "snapshot",
        "Print the snapshot as it stood at a time or event (time travel), as generated-videos.json.",
        "snapshot --as-of 2026-11-24T09:00:00Z -o then.json",
    )
    p.add_argument("--as-of", metavar="TIME", help="include events at or before TIME")
    p.add_argument("--seq", type=int, metavar="N", help="include events up to and including event N")
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
        "--dir data watch --verbose",
    )
    p.add_argument(
        "--step", type=int, default=20, metavar="MS", help="quiet time before projecting (default 20)"
    )
    p.add_argument(
        "--debounce", type=int, default=100, metavar="MS", help="longest burst gathered (default 100)"
    )
    p.add_argument("--verbose", action="store_true", help="print a line for each snapshot written")
    p.set_defaults(run=_cmd_watch)

    p = command(
        "wait", "Wait until the snapshot includes event N (exit 1 on timeout).", "wait --seq 42 --timeout 5"
    )
    p.add_argument("--seq", type=int, required=True, metavar="N", help="the event to wait for")
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="give up after this long (default: never)"
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
    p.set_defaults(run=_cmd_verify)

    p = command(
        "reap",
        "Mark failed every entry stuck in generating (no event) for longer than DURATION; safe beside "
        "live workers.",
        "reap --older-than 2h",
    )
    p.add_argument(
        "--older-than", metavar="DURATION", required=True, type=_duration, help="like 90s, 15m, 2h or 1d"
    )
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
        "demo",
        "Run a small real pipeline against the ledger: worker processes generate placeholder videos "
        "through generation(), some fail and are retried once.",
        "--dir demo-data demo --spots 6 --eras 4 --workers 3",
    )
    p.add_argument(
        "--spots", type=int, default=4, metavar="N", help="number of spots (default 4, at most 14)"
    )
    p.add_argument("--eras", type=int, default=3, metavar="M", help="number of eras (default 3, at most 6)")
    p.add_argument("--workers", type=int, default=2, metavar="K", help="worker processes (default 2)")
    p.add_argument(
        "--fail-rate", type=float, default=0.2, metavar="P", help="chance an attempt fails (default 0.2)"
    )
    p.add_argument("--seed", type=int, default=7, metavar="S", help="random seed (default 7)")
    p.set_defaults(run=_cmd_demo)
    return parser


def _duration(text: str) -> dt.timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return dt.timedelta(seconds=int(number) * units[unit])


def _entry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spot", metavar="SPOT", help="spotId")
    p.add_argument("era", metavar="ERA", help="eraId")


# -- commands ------------------------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, readonly: bool) -> Ledger:
    return Ledger(
        args.dir if args.dir is not None else default_directory(),
        snapshot=args.snapshot,
        readonly=readonly,
        projection="deferred" if args.no_project else "inline",
    )


def _cmd_set(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        prompt = args.prompt
        if prompt is None:
            current = ledger.get_video_metadata(args.spot, args.era)
            if current is None:
                raise UsageError(f"{args.spot}/{args.era} is a new entry: --prompt is required")
            prompt = current.prompt
        entry = ledger.set_video_metadata(
            {
                "spotId": args.spot,
                "eraId": args.era,
                "prompt": prompt,
                "localPath": args.local_path,
                "status": args.status,
                "error": args.error,
            }
        )
        _print_entries([entry], out)
    return EXIT_OK


def _cmd_fail(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        _print_entries([ledger.mark_video_failed(args.spot, args.era, args.error)], out)
    return EXIT_OK


def _cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        entry = ledger.get_video_metadata(args.spot, args.era)
    if entry is None:
        raise EntryNotFoundError(f"no entry for spotId={args.spot!r} eraId={args.era!r}")
    if args.json:
        out.write(_encoder.encode(entry).decode() + "\n")
    else:
        _print_entries([entry], out)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        entries = [e for e in ledger.get_all_video_metadata() if args.status in (None, e.status)]
    if args.json:
        out.write(encode_snapshot({e.key: e for e in entries}).decode())
    else:
        _print_entries(entries, out)
    return EXIT_OK


def _cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    if (args.spot is None) != (args.era is None):
        raise UsageError("history takes both SPOT and ERA, or neither")
    if args.follow and (args.since or args.until or args.status or args.type or args.spot):
        raise UsageError("--follow goes only with --since-seq and --json")
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
        else:
            _print_table(_HISTORY_HEADER, (_history_row(e) for _, e in records), out)
    return EXIT_OK


_HISTORY_HEADER = ["seq", "time", "event", "spotId", "eraId", "details"]


def _history_row(e: EventType) -> list[str]:
    return [str(e.seq), e.ts, e.type, e.spot_id, e.era_id, _details(e)]


def _follow(args: argparse.Namespace, out: TextIO) -> int:
    directory = args.dir if args.dir is not None else default_directory()
    stop = threading.Event()

    def caught_up(seq: int) -> None:
        sys.stderr.write(f"{PROG}: caught up at event {seq}; waiting for new events (Ctrl-C to stop)\n")
        sys.stderr.flush()

    with _stop_on_signals(stop):
        records = watch_view.follow(
            directory, since_seq=args.since_seq, stop_event=stop, on_caught_up=caught_up
        )
        for line, event in records:
            out.write(line.decode() + "\n" if args.json else "  ".join(_history_row(event)) + "\n")
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
    data = encode_snapshot({e.key: e for e in entries})
    if args.output:
        try:
            atomic_write(FileOps(), Path(args.output), data, label="output")
        except OSError as exc:
            raise io_error("write", Path(args.output), exc) from None
        out.write(f"wrote {len(entries)} entries to {args.output}\n")
    else:
        out.write(data.decode())
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
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    stop = threading.Event()

    def projected(seq: int) -> None:
        if args.verbose:
            out.write(f"snapshot at event {seq}\n")
            out.flush()

    with _stop_on_signals(stop):
        sys.stderr.write(f"{PROG}: watching {args.dir or default_directory()} (Ctrl-C to stop)\n")
        sys.stderr.flush()
        written = watch_view.watch(
            args.dir, snapshot=args.snapshot, stop_event=stop, step=args.step, debounce=args.debounce,
            on_project=projected,
        )  # fmt: skip
    sys.stderr.write(f"{PROG}: stopped after writing {written} snapshot(s)\n")
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace, out: TextIO) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop):
        done = watch_view.wait_for_seq(
            args.dir, args.seq, snapshot=args.snapshot, timeout=args.timeout, stop_event=stop
        )
    if not done:
        raise WaitTimeout(f"the snapshot does not include event {args.seq} yet")
    out.write(f"the snapshot includes event {args.seq}\n")
    return EXIT_OK


def _cmd_rebuild(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        report = ledger.rebuild()
        out.write(f"rebuilt {ledger.snapshot_path} from {report.events} events ({report.entries} entries)\n")
        if report.torn is not None:
            out.write(f"note: {_torn_note(report.torn.size, report.torn.line)}\n")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    if (args.media or args.root) and not args.files:
        raise UsageError("--media and --root go with --files")
    if args.expect_head is not None:
        parse_head(args.expect_head)  # bad usage (exit 2) before anything is opened
    with _open(args, readonly=True) as ledger:
        code = _print_verify(ledger, out, expect_head=args.expect_head)
        if args.files:
            files = ledger.verify_files(root=args.root, media=args.media)
            for problem in files.problems:
                out.write(f"FILE {problem}\n")
            out.write(f"files: {files.checked} checked, {len(files.problems)} problems\n")
            if not files.ok:
                code = EXIT_PROBLEM
    return code


def _print_verify(ledger: Ledger, out: TextIO, *, expect_head: str | None = None) -> int:
    report = ledger.verify(expect_head=expect_head)
    where = ledger.log_path
    if not report.ok:
        at = f" line {report.line}" if report.line is not None else ""
        out.write(f"FAILED {where}{at}: {report.problem}\n")
        out.write(f"{report.events} whole events before the problem\n")
        if report.head is not None:
            out.write(f"head: {report.head}\n")
        return EXIT_PROBLEM
    checkpoint = (
        "no checkpoint yet"
        if report.checkpoint_seq is None
        else (f"snapshot matches the log at event {report.checkpoint_seq}")
    )
    out.write(f"ok: {report.events} events, {report.entries} entries, chain intact, {checkpoint}\n")
    out.write(f"head: {report.head}\n")
    if report.torn is not None:
        out.write(f"note: {_torn_note(report.torn.size, report.torn.line)}\n")
    return EXIT_OK


def _cmd_reap(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        reaped = ledger.reap(args.older_than)
    if reaped:
        _print_entries(reaped, out)
    out.write(f"reaped {len(reaped)} entries stuck in generating\n")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        report = ledger.import_entries(args.path)
    out.write(
        f"imported {report.imported} entries; "
        f"{report.already_present} already in the ledger, left as they are\n"
    )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from ledger import demo

    directory = args.dir if args.dir is not None else default_directory()
    tty = out.isatty()
    total = args.spots * args.eras

    def progress(result: demo.DemoResult, last: demo.JobResult) -> None:
        counts = demo.outcome_counts(result)
        finished = counts["ready"] + sum(1 for r in result.results if r.outcome != "ready" and r.attempt == 2)
        if tty:
            width = 30
            filled = width * finished // total
            out.write(
                f"\r[{'#' * filled}{'-' * (width - filled)}] {finished}/{total} jobs  "
                f"ready {counts['ready']}  failed {counts['failed']}  retried {result.retried}"
            )
            out.flush()
        else:
            detail = f" ({last.detail})" if last.detail else ""
            out.write(
                f"[{finished:>3}/{total}] {last.spot_id}/{last.era_id} "
                f"attempt {last.attempt}: {last.outcome}{detail}\n"
            )

    try:
        result = demo.run_demo(
            directory, spots=args.spots, eras=args.eras, workers=args.workers,
            fail_rate=args.fail_rate, seed=args.seed, progress=progress,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if tty:
        out.write("\n")
    out.write(
        f"{result.jobs} jobs on {args.workers} workers in {result.seconds:.1f} s, "
        f"{result.retried} retried\n\n"
    )
    with Ledger(directory, readonly=True) as ledger:
        entries = ledger.get_all_video_metadata()
        _print_entries(entries, out)
        counts = Counter(e.status for e in entries)
        out.write("\n" + ", ".join(f"{status}: {counts[status]}" for status in STATUSES) + "\n")
        code = _print_verify(ledger, out)
        files = ledger.verify_files(media=Path(directory) / "videos")
        for problem in files.problems:
            out.write(f"FILE {problem}\n")
        out.write(f"files: {files.checked} checked, {len(files.problems)} problems\n")
    return code if files.ok else EXIT_PROBLEM


def _torn_note(size: int, line: int) -> str:
    return (
        f"{size} bytes at the end of the log (from line {line}) are not a whole event "
        "(a write cut short by a crash); the next write sets them aside"
    )


# -- output --------------------------------------------------------------------------------------------


def _details(event: EventType) -> str:
    match event:
        case Pending() | Generating():
            return f"prompt={event.prompt!r}" + (
                f" localPath={event.local_path!r}" if event.local_path else ""
            )
        case Ready():
            size = f" size={event.size}" if event.size is not None else ""
            return f"localPath={event.local_path!r}{size}"
        case Failed():
            return f"error={event.error!r}"
        case Imported():
            return f"imported as {event.status}, createdAt={event.created_at}"


def _print_entries(entries: Sequence[VideoMetadata], out: TextIO) -> None:
    if not entries:
        out.write("no entries\n")
        return
    _print_table(
        ["spotId", "eraId", "status", "createdAt", "completedAt", "localPath / error"],
        (
            [
                e.spot_id,
                e.era_id,
                e.status,
                e.created_at or "",
                e.completed_at or "",
                e.error or e.local_path or "",
            ]
            for e in entries
        ),
        out,
    )


def _cell(text: str, width: int = 48) -> str:
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(header: list[str], rows: Iterable[list[str]], out: TextIO) -> None:
    table = [header] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


# -- entry point ---------------------------------------------------------------------------------------


def _exit_code(exc: LedgerError) -> int:
    bad_input = (InvalidEntryError, IllegalTransitionError, ReadOnlyLedgerError)
    return EXIT_USAGE if isinstance(exc, bad_input) else EXIT_PROBLEM


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
            args = _build_parser().parse_args(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        run: Callable[[argparse.Namespace, TextIO], int] = args.run
        return run(args, out)
    except UsageError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except WaitTimeout as exc:
        err.write(f"{PROG}: {exc}\n")
        return EXIT_PROBLEM
    except LedgerError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return _exit_code(exc)
    except BrokenPipeError:
        return EXIT_OK  # the reader (head, less) went away
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    finally:
        logger.removeHandler(handler)
