"""``video-ledger``: the command line, a thin layer over :class:`ledger.Ledger`.

Exit codes: 0 ok; 1 when ``verify`` finds a problem, ``get`` finds no entry, or a command meets corrupt data
or a failing disk; 2 for bad usage or bad input. Errors are one line on stderr, never a traceback.

Each command below is one block: its name, one-line summary and example (the head of its ``--help``),
its options top to bottom as ``--help`` lists them, and a body over one library call. To add a command,
write a block in the place ``video-ledger --help`` is to list it::

    @commands.command("stats", "Entries per status and era, ...", "stats --json")
    @option("--json", action="store_true", help="print the figures as one JSON object")
    def _stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        with _open(args, readonly=True) as ledger:
            figures = ledger.stats()
        ...print it with a printer from ledger/output.py...
        return EXIT_OK

The body opens the ledger with :func:`_open`, calls the library, and prints the result with a printer
from :mod:`ledger.output` (add one there: no formatting here); anything meant for a person beside the
output goes to ``err``. Errors are raised, not printed: a :class:`~ledger.errors.LedgerError` (the
library's), :class:`UsageError` (exit 2) or :class:`WaitTimeout` (exit 1); :func:`main` says each in one
line. Option types (:func:`~ledger.cliparse.path`, :func:`~ledger.cliparse.int_at_least`, ...) are in
:mod:`ledger.cliparse`. Add the command to ``COMMANDS`` in ``tests/test_cli.py`` (its help is checked).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from ledger import health, places
from ledger.cliparse import (
    PROG,
    BadUsage,
    Commands,
    Parser,
    address,
    completion_script,
    duration,
    exclusive,
    fraction,
    int_at_least,
    mapping,
    option,
    parse,
    path,
    seconds,
    seconds_at_least,
    span,
    together,
)
from ledger.errors import (
    IllegalTransitionError,
    InvalidEntryError,
    LedgerError,
    ReadOnlyLedgerError,
)
from ledger.events import EVENT_TAGS, STATUSES, InputRef, ModelRef, Provenance, Usage, Worker
from ledger.importing import read_import_stream
from ledger.layout import DIR_ENV, LOG_NAME, default_directory
from ledger.output import (
    HISTORY_HEADER,
    CopyProgress,
    DemoProgress,
    TerminalProgress,
    fit_to,
    flag_names,
    json_line,
    message,
    print_bundle,
    print_claimed,
    print_consistency,
    print_copied,
    print_demo_run,
    print_entries,
    print_entry_list,
    print_extension,
    print_files,
    print_followed,
    print_history,
    print_imported,
    print_policy,
    print_proven,
    print_provenance,
    print_reaped,
    print_rebuilt,
    print_recalled,
    print_report_written,
    print_stats,
    print_stats_by,
    print_status,
    print_status_counts,
    print_timeline,
    print_verify,
    print_written,
    timeline_json,
    verify_json,
    write_csv,
)
from ledger.provenance import this_worker
from ledger.requests import no_entry
from ledger.store import (
    GROUP_BY,
    HistoryFilters,
    Ledger,
    encode_entries,
    parse_head,
    read_import,
    save_entries,
    watch,
)
from ledger.stores import (
    init_postgres,
    is_url,
    resolve_store,
    store_name,
    store_spec,
)

# a command that alone uses a room (copy, metrics, proofs, report, schema) imports it in its body, so that
# a short command (get, set, claim) pays for the store and the printers only (tests/test_start.py)

__all__ = ("main",)

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
EXIT_NOTHING = 3
"""``claim``'s exit status when there is nothing to claim (now): a shell loop stops there, and tells it
from an error (1, 2)."""


class UsageError(Exception):
    """Bad usage found after parsing (exit 2)."""


class WaitTimeout(Exception):
    """``wait`` gave up (exit 1)."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("video-ledger")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


commands = Commands(
    description="Record and audit which videos the generation pipeline made: an append-only, "
    "hash-chained event log (events.jsonl) projected into generated-videos.json.",
    epilog=f"The ledger directory is --dir, else ${DIR_ENV}, else ./data. "
    "Exit codes: 0 ok, 1 problem found (verify, missing entry, corrupt data, disk error), "
    "2 bad usage or input. Shell completion: see `video-ledger completion --help`.",
    version=_version,
)

_ENTRY = together(
    option("spot", metavar="SPOT", help="spotId"),
    option("era", metavar="ERA", help="eraId"),
)
_WRITTEN = exclusive(
    option(
        "--json",
        action="store_true",
        help='print {"seq": N, "entry": {...}} (seq null if nothing was recorded)',
    ),
    option("--quiet", "-q", action="store_true", help="print nothing (the exit code tells)"),
)


def _url(args: argparse.Namespace) -> str | None:
    """The PostgreSQL store ``--store`` (or ``$VIDEO_LEDGER_STORE``) names, else ``None`` (a directory's)."""
    store: str | None = getattr(args, "store", None)
    return store if store is not None and is_url(store) else None


def _directory(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir is not None else default_directory()


def _open(args: argparse.Namespace, *, readonly: bool, create: bool = False) -> Ledger:
    """The ledger the options name. Only a command that records what it is given (``set``, ``import``,
    ``init``, a new ``policy``) makes one that is not there: the others, writers too, say "no ledger at
    DIR" and create nothing, so a mistyped ``--dir`` is an error, not a new empty ledger."""
    return Ledger(
        _directory(args),
        snapshot=args.snapshot,
        readonly=readonly,
        create=create,
        projection="deferred" if args.no_project else "inline",
        force_clock=args.force_clock,
        store=_url(args),
    )


def _read(name: str) -> bytes:
    """A note or bundle the user names, read whole (at most :data:`~ledger.proofs.MAX_BUNDLE_BYTES`)."""
    from ledger.proofs import MAX_BUNDLE_BYTES, read_file

    return read_file(name, MAX_BUNDLE_BYTES)


def _log_name(args: argparse.Namespace, ledger: Ledger) -> str:
    """Where the events are, as every message names the store (:func:`~ledger.stores.store_name`)."""
    url = _url(args)
    return str(store_name(url)) if url is not None else str(ledger.log_path)


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


# -- the commands, in the order --help lists them ------------------------------------------------------


def _input(text: str) -> InputRef:
    role, equals, digest = text.partition("=")
    if not (role and equals and digest):
        raise argparse.ArgumentTypeError(f"{text!r} is not ROLE=SHA256, like reference-image=<64 hex digits>")
    return InputRef(role=role, sha256=digest)


_PROVENANCE_FLAGS = (
    "model",
    "model_version",
    "weights_digest",
    "seed",
    "parameters",
    "prompt_template",
    "input",
)
_USAGE_FLAGS = ("gpu_seconds", "gpu_type", "cost", "currency", "wall_seconds")
# Where each record goes: the events the API records it on (generation()/begin_attempt, ready, failed).
_RECORDS_AT = {"provenance": ("generating", "ready"), "usage": ("ready", "failed"), "worker": ("generating",)}


def _attempt_records(args: argparse.Namespace) -> tuple[Provenance | None, Usage | None, Worker | None]:
    """``set``'s provenance, usage and worker options as records (checked when recorded), refusing each on
    a status whose event does not carry it."""
    given = {
        "provenance": [f for f in _PROVENANCE_FLAGS if getattr(args, f) is not None],
        "usage": [f for f in _USAGE_FLAGS if getattr(args, f) is not None],
        "worker": ["worker"] if args.worker is not None else [],
    }
    for record, flags in given.items():
        if flags and args.status not in _RECORDS_AT[record]:
            names = ", ".join("--" + f.replace("_", "-") for f in flags)
            raise UsageError(f"{names} go with --status {' or '.join(_RECORDS_AT[record])}")
    if args.model is None and (args.model_version or args.weights_digest):
        raise UsageError("--model-version and --weights-digest go with --model")
    if (given["provenance"] or given["usage"]) and args.status == "ready" and args.local_path is None:
        raise UsageError("--status ready needs --local-path")
    if given["usage"] and args.status == "failed" and args.error is None:
        raise UsageError("--status failed needs --error")
    provenance = usage = worker = None
    if given["provenance"]:
        model = args.model and ModelRef(
            name=args.model, version=args.model_version, weights_digest=args.weights_digest
        )
        provenance = Provenance(
            model=model, seed=args.seed, parameters=args.parameters, prompt_template=args.prompt_template,
            inputs=tuple(args.input or ()),
        )  # fmt: skip
    if given["usage"]:
        usage = Usage(
            wall_seconds=args.wall_seconds, gpu_seconds=args.gpu_seconds, gpu_type=args.gpu_type,
            cost=args.cost, currency=args.currency,
        )  # fmt: skip
    if args.worker is not None:
        worker = this_worker(args.worker)
    return provenance, usage, worker


def _current_prompt(ledger: Ledger, spot: str, era: str) -> str:
    current = ledger.get_video_metadata(spot, era)
    if current is None:
        raise InvalidEntryError(f"{spot}/{era} is a new entry: a prompt is required")
    return current.prompt


@commands.command(
    "set",
    "Add or update an entry (one event, checked against the lifecycle).",
    "set colosseum rome-80ad --status ready --local-path videos/colosseum-rome-80ad.mp4",
)
@_ENTRY
@option("--status", required=True, choices=STATUSES, help="the entry's new status")
@option("--prompt", help="prompt used (default: the entry's current prompt; required for a new entry)")
@option("--local-path", metavar="PATH", help="the video file (required for ready)")
@option("--error", help="error message (only with --status failed)")
@option("--attempt", metavar="N", type=int_at_least(1), help="with ready or failed: the attempt it ends")
@option("--model", metavar="NAME", help="provenance (generating, ready): the model that makes the video")
@option("--model-version", metavar="V", help="provenance: the model's version")
@option("--weights-digest", metavar="ALG:HEX", help="provenance: the digest of its weights (sha256:...)")
@option("--seed", metavar="N", type=int, help="provenance: the seed")
@option("--parameters", metavar="JSON", help="provenance: the settings, one JSON object")
@option("--prompt-template", metavar="TEXT", help="provenance: the template the prompt was made from")
@option("--input", metavar="ROLE=SHA256", action="append", type=_input, help="provenance: an input file")
@option("--worker", metavar="NAME", help="with generating: who runs the attempt (host and pid: this one)")
@option("--gpu-seconds", metavar="S", type=seconds, help="usage (ready, failed): GPU time it took")
@option("--gpu-type", metavar="TYPE", help="usage: the GPU, such as L4")
@option("--cost", metavar="C", type=seconds, help="usage: what it cost, in --currency")
@option("--currency", metavar="CODE", help="usage: ISO 4217, such as EUR")
@option("--wall-seconds", metavar="S", type=seconds, help="usage: the attempt's wall time")
@_WRITTEN
def _set(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    provenance, usage, worker = _attempt_records(args)
    with _open(args, readonly=False, create=True) as ledger, flag_names():
        if provenance is None and usage is None and worker is None:
            entry = ledger.update_entry(
                args.spot, args.era, args.status,
                prompt=args.prompt, local_path=args.local_path, error=args.error, attempt=args.attempt,
            )  # fmt: skip
        elif args.status == "generating":  # a new attempt, its records on its generating event
            prompt = args.prompt if args.prompt is not None else _current_prompt(ledger, args.spot, args.era)
            entry = ledger.begin_attempt(
                args.spot, args.era, prompt, local_path=args.local_path, provenance=provenance, worker=worker
            )
        elif args.status == "ready":
            entry = ledger.mark_video_ready(
                args.spot, args.era, args.local_path, attempt=args.attempt, provenance=provenance, usage=usage
            )
        else:
            entry = ledger.mark_video_failed(
                args.spot, args.era, args.error, attempt=args.attempt, usage=usage
            )
        print_written(entry, ledger.last_seq, out, json=args.json, quiet=args.quiet)
    return EXIT_OK


@commands.command(
    "fail", "Mark the running attempt of an entry as failed.", 'fail colosseum rome-80ad "model timed out"'
)
@_ENTRY
@option("error", metavar="ERROR", help="what went wrong")
@_WRITTEN
def _fail(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=False) as ledger, flag_names():
        entry = ledger.mark_video_failed(args.spot, args.era, args.error)
        print_written(entry, ledger.last_seq, out, json=args.json, quiet=args.quiet)
    return EXIT_OK


@commands.command("get", "Show one entry (exit 1 if there is none).", "get colosseum rome-80ad --json")
@_ENTRY
@option("--json", action="store_true", help="print the entry as one JSON object")
def _get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        entry = ledger.get_video_metadata(args.spot, args.era)
    if entry is None:
        raise no_entry(args.spot, args.era)
    if args.json:
        out.write(json_line(entry))
    else:
        print_entries([entry], out)
    return EXIT_OK


@commands.command("list", "List the entries, ordered by spot and era.", "list --status failed")
@option("--status", choices=STATUSES, help="only entries with this status")
@exclusive(
    option("--json", action="store_true", help="print the JSON array exactly as in the snapshot"),
    option(
        "--csv", dest="delimiter", action="store_const", const=",",
        help="print CSV: a header row, then a column per member of the snapshot (for spreadsheets)",
    ),
    option("--tsv", dest="delimiter", action="store_const", const="\t", help="the same, tab-separated"),
)  # fmt: skip
def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        entries = [e for e in ledger.get_all_video_metadata() if args.status in (None, e.status)]
    print_entry_list(entries, out, json=args.json, delimiter=args.delimiter)
    return EXIT_OK


@commands.command(
    "history",
    "Show the events, oldest first (all, or one entry's), filtered, or follow them as they come.",
    "history --last 5 --type failed",
)
@option("spot", metavar="SPOT", nargs="?", help="spotId")
@option("era", metavar="ERA", nargs="?", help="eraId")
@option("--json", action="store_true", help="print each event's line exactly as stored")
@option("--csv", action="store_true", help="print CSV with a header row (for spreadsheets)")
@option("--status", choices=STATUSES, help="only events that leave an entry with this status")
@option("--type", choices=EVENT_TAGS, help="only events of this type")
@option("--since", metavar="TIME", help="only events at or after TIME (RFC 3339; no zone means UTC)")
@option("--until", metavar="TIME", help="only events at or before TIME")
@option("--since-seq", type=int_at_least(0), metavar="N", help="only events after event N")
@option("--last", type=int_at_least(1), metavar="N", help="only the last N of those (read from the end)")
@option("--reverse", action="store_true", help="newest first")
@option("--follow", action="store_true", help="then print events as they are appended, like tail -f")
def _history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if (args.spot is None) != (args.era is None):
        raise UsageError("history takes both SPOT and ERA, or neither")
    if args.json and args.csv:
        raise UsageError("choose one of --json and --csv")
    if args.follow:
        if args.last is not None or args.reverse:
            raise UsageError("--follow prints events as they come: not with --last or --reverse")
        return _follow(args, out, err)
    with _open(args, readonly=True) as ledger:
        records = ledger.history_lines(
            args.spot, args.era, last=args.last, reverse=args.reverse, **_history_filters(args)
        )
        print_history(records, out, json=args.json, csv=args.csv)
    return EXIT_OK


def _history_filters(args: argparse.Namespace) -> HistoryFilters:
    """``history``'s options as the filters :meth:`Ledger.history` and :meth:`Ledger.follow` both take."""
    return HistoryFilters(
        since_seq=args.since_seq, since=args.since, until=args.until, status=args.status, type=args.type
    )


def _follow(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    def caught_up(seq: int) -> None:
        err.write(f"{PROG}: caught up at event {seq}; waiting for new events (Ctrl-C to stop)\n")
        err.flush()

    stop = threading.Event()
    if args.csv:
        write_csv(HISTORY_HEADER, [], out)
    with _stop_on_signals(stop), _open(args, readonly=True) as ledger:
        followed = ledger.follow(
            args.spot, args.era, stop_event=stop, on_caught_up=caught_up, **_history_filters(args)
        )
        for line, event in followed:
            print_followed(line, event, out, json=args.json, csv=args.csv)
    return EXIT_OK


@commands.command(
    "timeline",
    "Tell one entry's story: queued, each attempt, how it ended, time to ready.",
    "timeline colosseum rome-80ad",
)
@_ENTRY
@option("--json", action="store_true", help="print the story as one JSON object")
def _timeline(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        story = ledger.timeline(args.spot, args.era)
    if args.json:
        out.write(json_line(timeline_json(story)))
    else:
        print_timeline(story, out)
    return EXIT_OK


@commands.command(
    "snapshot",
    "Print the snapshot as it stood at a time or event (time travel), as generated-videos.json.",
    "snapshot --as-of 2026-11-24T09:00:00Z -o then.json",
)
@option("--as-of", metavar="TIME", help="include events at or before TIME")
@option("--seq", type=int_at_least(0), metavar="N", help="include events up to and including event N")
@option("-o", "--output", metavar="FILE", help="write it to FILE (atomically) instead of printing it")
def _snapshot(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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


@commands.command(
    "stats",
    "Entries per status and era, attempts, success rate, generation times, top failures; with --by, "
    "attempts and GPU time per model, era or spot.",
    "stats --by model",
)
@option(
    "--by", choices=GROUP_BY,
    help="attempts, success rate, GPU-seconds and the share spent on failed attempts, per model "
    "(name@version), era or spot",
)  # fmt: skip
@option("--json", action="store_true", help="print the figures as one JSON object (with --by, an array)")
def _stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with (
        _open(args, readonly=True) as ledger,
        TerminalProgress(err, "stats", shown=not args.json) as progress,
    ):
        figures = ledger.stats(progress=progress) if args.by is None else ledger.stats_by(args.by)
    if args.json:
        out.write(json_line(figures))
    elif isinstance(figures, list):
        print_stats_by(figures, args.by, out)
    else:
        print_stats(figures, out)
    return EXIT_OK


@commands.command(
    "requeue",
    "Queue an entry again (pending: a failed one that used up its attempts, or a ready one to remake), or "
    "recall a model: put back every entry whose current video it made (the reason in its history).",
    "requeue colosseum rome-80ad",
)
@option("spot", metavar="SPOT", nargs="?", help="spotId (with ERA: this entry)")
@option("era", metavar="ERA", nargs="?", help="eraId")
@option("--model", metavar="NAME", help="the model's name, as its provenance records it")
@option("--version", metavar="V", help="only videos of this version of the model")
@option("--dry-run", action="store_true", help="list the entries, record nothing")
@option("--json", action="store_true", help="print the attempts whose videos are withdrawn as a JSON array")
def _requeue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if (args.spot is None) != (args.era is None) or (args.spot is None) == (args.model is None):
        raise UsageError("requeue takes SPOT ERA, or --model NAME")
    if args.spot is not None:
        if args.version or args.dry_run:
            raise UsageError("--version and --dry-run go with --model")
        with _open(args, readonly=False) as ledger:
            before = ledger.last_seq
            entry = ledger.requeue(args.spot, args.era)
            seq = ledger.last_seq if ledger.last_seq != before else None
        print_written(entry, seq, out, json=args.json, quiet=False)
        return EXIT_OK
    with _open(args, readonly=args.dry_run) as ledger:
        recalled = ledger.requeue_model(args.model, version=args.version, dry_run=args.dry_run)
    if args.json:
        out.write(json_line(recalled))
    else:
        print_recalled(recalled, out, dry_run=args.dry_run)
    return EXIT_OK


@commands.command(
    "provenance",
    "What made each attempt's video (model, seed, parameters, prompt, inputs), who ran it, what it "
    "cost: every attempt of one entry, the current one first.",
    "provenance colosseum rome-80ad --json",
)
@_ENTRY
@option("--json", action="store_true", help="print the attempts as a JSON array")
def _provenance(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=True) as ledger:
        records = ledger.provenance(args.spot, args.era)
    if args.json:
        out.write(json_line(records))
    else:
        print_provenance(records, out)
    return EXIT_OK


@commands.command(
    "watch",
    "Keep generated-videos.json current while other processes append (stop with Ctrl-C or SIGTERM).",
    "watch --dir data --verbose",
)
@option(
    "--step", type=int_at_least(1, at_most=60_000), default=20, metavar="MS",
    help="quiet time before projecting, 1..60000 (default 20)",
)  # fmt: skip
@option(
    "--debounce", type=int_at_least(1, at_most=3_600_000), default=100, metavar="MS",
    help="longest burst gathered, 1..3600000 (default 100)",
)  # fmt: skip
@option("--verbose", action="store_true", help="print a line for each snapshot written")
def _watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    def projected(seq: int) -> None:
        if args.verbose:
            out.write(f"snapshot at event {seq}\n")
            out.flush()

    stop, url = threading.Event(), _url(args)
    with _stop_on_signals(stop):
        over = f" over {store_name(url)}" if url is not None else ""
        err.write(f"{PROG}: watching {args.dir or default_directory()}{over} (Ctrl-C to stop)\n")
        err.flush()
        written = watch(
            args.dir if args.dir is not None or url is None else default_directory(), snapshot=args.snapshot,
            stop_event=stop, step=args.step, debounce=args.debounce, on_project=projected, store=url,
        )  # fmt: skip
    err.write(f"{PROG}: stopped after writing {written} snapshot(s)\n")
    return EXIT_OK


@commands.command(
    "wait", "Wait until the snapshot includes event N (exit 1 on timeout).", "wait --seq 42 --timeout 5"
)
@option("--seq", type=int_at_least(1), required=True, metavar="N", help="the event to wait for (1 or more)")
@option(
    "--timeout", type=seconds, metavar="SECONDS", help="give up after this long, 0 or more (default: never)"
)
def _wait(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop), _open(args, readonly=True) as ledger:
        done = ledger.wait_for(args.seq, timeout=args.timeout, stop_event=stop)
    if not done:
        raise WaitTimeout(f"the snapshot does not include event {args.seq} yet")
    out.write(f"the snapshot includes event {args.seq}\n")
    return EXIT_OK


@commands.command("rebuild", "Replay the whole log into a fresh generated-videos.json.", "rebuild")
def _rebuild(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        with TerminalProgress(err, "rebuild") as progress:
            report = ledger.rebuild(progress=progress)
        print_rebuilt(report, ledger.snapshot_path, out)
    return EXIT_OK


@commands.command(
    "verify",
    "Check every line's checksum, sequence and hash chain, the lifecycle, and the snapshot "
    "against the log (exit 1 on any problem).",
    "verify --files --media data/videos",
)
@option(
    "--files", action="store_true", help="also check each ready entry's file: exists, same size and SHA-256"
)
@option("--media", metavar="DIR", help="with --files: also list video files in DIR no entry refers to")
@option(
    "--c2pa",
    action="store_true",
    help="with --files: also check each file's C2PA manifest: valid, AI-generated, naming its entry and "
    "attempt (needs: pip install 'video-ledger[c2pa]')",
)
@option(
    "--c2pa-trust", metavar="PEM", type=path,
    help="with --c2pa: the trusted root certificates; a manifest whose chain leads to none of them fails",
)  # fmt: skip
@option(
    "--root", metavar="DIR",
    help="with --files: the media root, where relative localPaths start (default: the ledger directory)",
)  # fmt: skip
@option(
    "--map", metavar="PREFIX=DIR", action="append", type=mapping,
    help="with --files: localPaths starting with PREFIX (a URL path like /videos/) are files in DIR; "
    "repeat for more; a localPath neither maps is reported unchecked, and nothing outside is read",
)  # fmt: skip
@option(
    "--expect-head", metavar="SEQ:HASH",
    help="a head an earlier verify printed, kept elsewhere: fail unless the log's event SEQ still has "
    "that hash (the log may have grown since)",
)  # fmt: skip
@option(
    "--previous", metavar="NOTE",
    help="a checkpoint signed earlier (checkpoint --key): check by a consistency proof, without a replay, "
    "that the log extends its tree (a rollback or a fork fails); needs --key",
)  # fmt: skip
@option(
    "--key", metavar="VERIFIER", action="append",
    help="with --previous: the log's verifier key (keygen printed it), or a file holding it; repeat it "
    "for each witness whose cosignature the note must carry",
)  # fmt: skip
@option(
    "--full", action="store_true",
    help="with --previous: rebuild the Merkle tree from the log first (a replay), so the tree is checked too",
)  # fmt: skip
@option("--json", action="store_true", help="print the findings as one JSON object")
def _verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger.proofs import load_verifier

    if (args.media or args.root or args.map or args.c2pa) and not args.files:
        raise UsageError("--media, --root, --map and --c2pa go with --files")
    if args.c2pa_trust and not args.c2pa:
        raise UsageError("--c2pa-trust goes with --c2pa")
    if (args.previous is None) != (args.key is None) or (args.full and args.previous is None):
        raise UsageError("--previous and --key go together; --full goes with them")
    if args.expect_head is not None:
        parse_head(args.expect_head)  # bad usage (exit 2) before anything is opened
    if args.previous is not None:
        verifiers, note = [load_verifier(k) for k in args.key], _read(args.previous)
        if not (args.files or args.expect_head):  # the consistency check alone: no replay
            with _open(args, readonly=False) as ledger:
                extension = ledger.proofs().extends(note, verifiers, full=args.full)
                print_extension(extension, out, json=args.json)
            return EXIT_OK
        with _open(args, readonly=False) as ledger:
            extension = ledger.proofs().extends(note, verifiers, full=args.full)
            print_extension(extension, err if args.json else out, json=False)
    with _open(args, readonly=True) as ledger:
        with TerminalProgress(err, "verify", shown=not args.json) as progress:
            report = ledger.verify(expect_head=args.expect_head, progress=progress)
        where = _log_name(args, ledger)
        if not args.json:
            print_verify(report, where, out)
        files = (
            ledger.verify_files(
                root=args.root,
                media=args.media,
                c2pa=args.c2pa,
                trust_anchors=args.c2pa_trust,
                prefixes=dict(args.map or ()),
            )
            if args.files
            else None
        )
        if files is not None and not args.json:
            print_files(files, out)
    ok = report.ok and (files is None or files.ok)
    if args.json:
        out.write(json_line(verify_json(report, where, files)))
    return EXIT_OK if ok else EXIT_PROBLEM


@commands.command(
    "keygen",
    "Make an Ed25519 key pair for signing checkpoints: the private key into KEYFILE (never overwritten), "
    "the verifier key printed (give it to whoever checks).",
    "keygen videos.example.com/ledger --out ledger.key",
)
@option("name", metavar="NAME", help="the key's name, like a host and path without scheme (no spaces or '+')")
@option("--out", metavar="KEYFILE", required=True, type=path, help="the new file for the private key")
@option("--witness", action="store_true", help="a witness's key, for checkpoint --cosign (tlog-cosignature)")
def _keygen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger.note import COSIGNATURE, ED25519, generate_key
    from ledger.proofs import save_signer

    signer = generate_key(args.name, COSIGNATURE if args.witness else ED25519)
    save_signer(args.out, signer)
    out.write(f"{signer.verifier}\n")
    return EXIT_OK


@commands.command(
    "checkpoint",
    "Print a signed checkpoint of the log's Merkle tree (origin, size, root, the snapshot's SHA-256); "
    "with --cosign, a witness's cosignature of the last one signed.",
    "checkpoint --key ledger.key --out checkpoint.note",
)
@option("--key", metavar="KEYFILE", required=True, type=path, help="the private key (keygen --out)")
@option("--origin", metavar="NAME", help="the log's name on the first line (default: the key's name)")
@option("--out", metavar="FILE", type=path, help="also write the signed note to FILE")
@option("--no-snapshot", action="store_true", help="do not bind generated-videos.json's SHA-256")
@option(
    "--cosign", action="store_true",
    help="KEYFILE is a witness's key: cosign the last checkpoint signed in the directory (or --note) "
    "once a consistency proof shows it extends the last one this witness cosigned; needs --log-key",
)  # fmt: skip
@option("--log-key", metavar="VERIFIER", help="with --cosign: the log's verifier key, or a file holding it")
@option("--note", metavar="NOTE", help="with --cosign: the signed checkpoint to cosign")
@option(
    "--state", metavar="FILE", type=path,
    help="with --cosign: the witness's last cosigned checkpoint (default: KEYFILE.witnessed)",
)  # fmt: skip
def _checkpoint(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger.proofs import load_signer, load_verifier, write_file

    if not args.cosign and (args.log_key or args.note or args.state):
        raise UsageError("--log-key, --note and --state go with --cosign")
    if args.cosign and (args.log_key is None or args.origin or args.no_snapshot):
        raise UsageError(
            "--cosign needs --log-key; --origin and --no-snapshot are the log's, not a witness's"
        )
    signer = load_signer(args.key)
    with _open(args, readonly=False) as ledger:
        if args.cosign:
            state = Path(args.state or f"{args.key}.witnessed")
            note = None if args.note is None else _read(args.note)
            signed = ledger.proofs().cosign(signer, load_verifier(args.log_key), state, note)
        else:
            signed = ledger.proofs().sign(signer, args.origin, bind_snapshot=not args.no_snapshot)
    if args.out is not None:
        write_file(args.out, signed)
    out.write(signed.decode())
    return EXIT_OK


@commands.command(
    "consistency",
    "Print the consistency proof that the log's tree of NEW records extends its tree of OLD records "
    "(both roots, then the proof's hashes, base64).",
    "consistency 1000 1250 --json",
)
@option("old", metavar="OLD", type=int_at_least(0), help="the older tree size (0 or more)")
@option("new", metavar="NEW", type=int_at_least(0), help="the newer tree size (OLD or more)")
@option("--json", action="store_true", help='print {"old": …, "new": …, "oldRoot", "newRoot", "proof": […]}')
def _consistency(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.old > args.new:
        raise UsageError(f"OLD ({args.old}) is more than NEW ({args.new})")
    with _open(args, readonly=False) as ledger:
        old_root, new_root, proof = ledger.proofs().consistency(args.old, args.new)
    print_consistency(args.old, args.new, old_root, new_root, proof, out, json=args.json)
    return EXIT_OK


@commands.command(
    "prove",
    "Write a proof bundle of an entry: its records' lines, leaf indexes and inclusion proofs, and the "
    "signed checkpoint they are proven against (checked offline by verify-proof).",
    "prove colosseum rome-80ad --key ledger.key --out colosseum.proof.json",
)
@_ENTRY
@option(
    "--key", metavar="KEYFILE", type=path,
    help="sign a new checkpoint of the tree now (default: prove against the last one signed here)",
)  # fmt: skip
@option("--out", metavar="FILE", type=path, help="write the bundle to FILE and print a summary")
@option("--json", action="store_true", help="print the bundle (one JSON object) on stdout")
def _prove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger.proofs import encode_bundle, load_signer, write_file

    if (args.out is None) == (not args.json):
        raise UsageError("give --out FILE (the bundle to a file) or --json (the bundle on stdout)")
    signer = None if args.key is None else load_signer(args.key)
    with _open(args, readonly=False) as ledger:
        bundle = ledger.proofs().prove(args.spot, args.era, signer=signer)
    data = encode_bundle(bundle)
    if args.json:
        out.write(data.decode())
        return EXIT_OK
    write_file(args.out, data)
    print_bundle(bundle, args.out, len(data), out)
    return EXIT_OK


@commands.command(
    "verify-proof",
    "Check a proof bundle offline, with nothing but the bundle and the verifier key, and print the entry "
    "as proven (exit 1 if any check fails).",
    "verify-proof colosseum.proof.json --key 'videos.example.com/ledger+1a2b3c4d+AXg…'",
)
@option("bundle", metavar="BUNDLE", type=path, help="the bundle prove wrote")
@option(
    "--key", metavar="VERIFIER", action="append", required=True,
    help="the log's verifier key (or a file holding it); repeat it for each witness that must have cosigned",
)  # fmt: skip
@option("--json", action="store_true", help="print the proven entry and checkpoint as one JSON object")
def _verify_proof(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger.proofs import load_verifier, verify_bundle

    proven = verify_bundle(_read(args.bundle), [load_verifier(k) for k in args.key])
    print_proven(proven, out, json=args.json)
    return EXIT_OK


@commands.command(
    "reap",
    "Mark failed every running attempt whose lease ran out, and with --older-than every other entry "
    "stuck in generating (no event) that long; never one whose lease is current.",
    "reap --older-than 2h",
)
@option(
    "--older-than", metavar="DURATION", type=duration,
    help="like 90s, 15m, 2h or 1d (more than 0, at most 36500d; negative values are refused)",
)  # fmt: skip
@option("--json", action="store_true", help="print the reaped entries as a JSON array")
def _reap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        reaped = ledger.reap(args.older_than)
    print_reaped(reaped, out, json=args.json)
    return EXIT_OK


@commands.command(
    "claim",
    "Start an attempt on the next queued entry (pending, or failed with attempts left) and print it; "
    f"exit {EXIT_NOTHING} when there is none. Keep it with heartbeat, end it with set --attempt.",
    "claim --worker gpu-1 --lease 10m --json",
)
@option("--worker", metavar="NAME", help="this worker's name, recorded with the attempt")
@option("--lease", metavar="DURATION", type=span, help="like 90s, 10m or 250ms (default 60s)")
@option("--spot", metavar="SPOT", help="only this spot's entries")
@option("--era", metavar="ERA", help="only this era's entries")
@option("--json", action="store_true", help="print the job as one JSON object")
def _claim(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        job = ledger.claim(worker=args.worker, lease=args.lease, spot=args.spot, era=args.era)
        entry = None if job is None else ledger.get_video_metadata(job.spot_id, job.era_id)
        print_claimed(job, entry, ledger.last_seq, out, json=args.json)
    return EXIT_NOTHING if job is None else EXIT_OK


@commands.command(
    "heartbeat",
    "Renew the lease of a running attempt (a shell worker's, while it renders).",
    "heartbeat colosseum rome-80ad --attempt 2",
)
@_ENTRY
@option("--attempt", metavar="N", required=True, type=int_at_least(1), help="the attempt claim started")
@option("--lease", metavar="DURATION", type=span, help="the new lease (default: the one it holds)")
@option("--quiet", "-q", action="store_true", help="print nothing (the exit code tells)")
def _heartbeat(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _open(args, readonly=False) as ledger:
        ledger.heartbeat(args.spot, args.era, args.attempt, lease=args.lease)
        if not args.quiet:
            out.write(f"renewed attempt {args.attempt}: recorded event {ledger.last_seq}\n")
    return EXIT_OK


@commands.command(
    "policy",
    "Show the retry policy every worker of this ledger follows, or set it (a policy event in the log).",
    "policy --max-attempts 4 --backoff 1m --not-retried BadPrompt",
)
@option("--max-attempts", metavar="N", type=int_at_least(1), help="attempts an entry gets once queued")
@option("--backoff", metavar="DURATION", type=span, help="the wait before the first retry")
@option("--backoff-factor", metavar="F", type=seconds, help="each next wait is F times the one before")
@option("--backoff-max", metavar="DURATION", type=span, help="no wait is longer than this")
@option("--not-retried", metavar="PREFIX", action="append", help="an error so starting is not retried")
@option("--json", action="store_true", help="print the policy as one JSON object")
def _policy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    given = {
        "max_attempts": args.max_attempts, "backoff": args.backoff, "backoff_factor": args.backoff_factor,
        "backoff_max": args.backoff_max, "not_retried": args.not_retried and tuple(args.not_retried),
    }  # fmt: skip
    changes = {name: value for name, value in given.items() if value is not None}
    with _open(args, readonly=False, create=bool(changes)) as ledger:
        policy, seq = ledger.claims.policy()
        if changes:
            policy = dataclasses.replace(policy, **changes)
            seq = ledger.set_retry_policy(policy)
    print_policy(policy, seq, out, json=args.json)
    return EXIT_OK


@commands.command(
    "import",
    "Bring an existing generated-videos.json into the ledger, keeping its timestamps "
    "(entries already in the ledger are left alone).",
    "import ../app/src/lib/data/generated-videos.json",
)
@option("path", metavar="PATH", help="the generated-videos.json to import ('-': read it from standard input)")
def _import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with TerminalProgress(err, "import") as progress:
        checking, recording = progress.step("checking", "entries"), progress.step("recording", "entries")
        # before the ledger is opened: a refused file leaves DIR as it was
        if args.path == "-":
            checked = read_import_stream(sys.stdin.buffer, progress=checking)
        else:
            checked = read_import(args.path, progress=checking)
        with _open(args, readonly=False, create=True) as ledger:
            report = ledger.import_entries(checked, progress=recording)
    print_imported(report, out, err, PROG)
    return EXIT_OK


@commands.command(
    "init",
    "Create the store: a PostgreSQL database's ledger schema (or migrate it to this version), or a "
    "ledger directory with an empty events.jsonl.",
    "--store postgresql://ledger_owner@db-host/ledger init --app-role ledger_app",
)
@option(
    "--app-role", metavar="ROLE",
    help="PostgreSQL only: grant ROLE what the app needs and no more (SELECT, INSERT on ledger_events; "
    "SELECT, UPDATE on ledger_head; SELECT on ledger_schema_version; SELECT on ledger_events_json)",
)  # fmt: skip
def _init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.store is not None and is_url(args.store):
        version = init_postgres(args.store, app_role=args.app_role)
        granted = f"; role {args.app_role} granted what the app needs" if args.app_role else ""
        out.write(f"ledger schema version {version} in {store_name(args.store)}{granted}\n")
        return EXIT_OK
    directory = args.dir if args.dir is not None else default_directory()
    if args.app_role is not None:
        raise UsageError(f"--app-role is for a PostgreSQL store; {directory} is a ledger directory")
    with _open(args, readonly=False, create=True) as ledger:
        events = ledger.head().seq
    out.write(
        f"ledger directory {directory} ready: {LOG_NAME} holds {events} events (a file store has no schema)\n"
    )
    return EXIT_OK


@commands.command(
    "status",
    "The ledger's health, cheap at any log size: head, the app's file and its lag, entries per status, "
    "live attempts, whether a watch runs (exit 1 with the reasons when something is wrong).",
    "status --json --max-lag 30",
)
@option("--json", action="store_true", help="print the figures as one JSON object")
@option(
    "--max-lag", type=seconds, default=health.MAX_LAG, metavar="SECONDS",
    help=f"a problem when the app's file has lacked an event for longer (default {health.MAX_LAG:g})",
)  # fmt: skip
def _status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    found = health.status(_directory(args), snapshot=args.snapshot, store=_url(args), max_lag=args.max_lag)
    print_status(found, out, json=args.json)
    return EXIT_OK if found.healthy else EXIT_PROBLEM


@commands.command(
    "metrics",
    "The ledger in the Prometheus text format: print it once, keep a textfile-collector file current, or "
    "serve GET /metrics; kept current incrementally (the log is read once, then only what is new).",
    "metrics --serve 127.0.0.1:9464",
)
@exclusive(
    option("--serve", metavar="HOST:PORT", type=address, help="answer GET /metrics there until stopped"),
    option(
        "--textfile", metavar="FILE", type=path, help="keep FILE current (node_exporter's textfile collector)"
    ),
)
@option(
    "--interval",
    type=seconds_at_least(1),
    default=15.0,
    metavar="SECONDS",
    help="--textfile: rewrite at least this often, 1 or more (default 15)",
)
def _metrics(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger import metrics

    stop = threading.Event()
    with metrics.Exporter(_directory(args), snapshot=args.snapshot, store=_url(args)) as exporter:
        if args.serve is not None:
            with _stop_on_signals(stop):
                metrics.serve(exporter, args.serve[0], args.serve[1], stop)
        elif args.textfile is not None:
            with _stop_on_signals(stop):
                metrics.keep_textfile(exporter, Path(args.textfile), stop, interval=args.interval)
        else:
            out.write(exporter.render())
    return EXIT_OK


@commands.command(
    "report",
    "Write one self-contained HTML page to look at: a grid of spots x eras coloured by status, each "
    "entry's attempts with their errors, failures over time, the chain's head and what verify says.",
    "report --html report.html",
)
@option("--html", dest="html", metavar="FILE", required=True, type=path, help="the page to write")
def _report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger import report

    with _open(args, readonly=True) as ledger:
        shown = report.write(ledger, args.html)
    print_report_written(shown, args.html, out)
    return EXIT_OK


@commands.command(
    "copy",
    "Copy a whole ledger from one store to another (each a directory or a postgresql:// URL): the "
    "source checked first, its lines copied byte for byte; a target that holds the start of the "
    "source is resumed, any other non-empty target refused.",
    "copy --from data --to postgresql://ledger_app@db-host/ledger",
)
@option("--from", dest="source", metavar="SRC", required=True, type=path, help="the source store")
@option("--to", dest="target", metavar="DST", required=True, type=path, help="the target store")
@option(
    "--follow", action="store_true",
    help="after the copy, keep the target a current replica (each new durable record appended) until "
    "Ctrl-C or SIGTERM; then exit 0",
)  # fmt: skip
def _copy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger.copy import copy_ledger, follow_copy

    progress = CopyProgress(err)  # on a terminal only; once shown, ended before anything else is written
    shown = progress if err.isatty() else None
    try:
        if args.follow:
            stop = threading.Event()
            with _stop_on_signals(stop):
                report = follow_copy(args.source, args.target, stop, progress=shown)
        else:
            report = copy_ledger(args.source, args.target, progress=shown)
    finally:
        progress.end()
    print_copied(report, args.source, args.target, out)
    return EXIT_OK


@commands.command(
    "demo",
    "Run a small real pipeline against the ledger: worker processes claim queued entries and make tiny "
    "MP4 videos, some fail and the retry policy runs them again.",
    "demo --dir demo-data --spots 6 --eras 4 --workers 3",
)
@option(
    "--spots", type=int_at_least(1, at_most=len(places.SPOTS)), default=4, metavar="N",
    help=f"number of spots, 1..{len(places.SPOTS)} (default 4)",
)  # fmt: skip
@option(
    "--eras", type=int_at_least(1, at_most=len(places.ERAS)), default=3, metavar="M",
    help=f"number of eras, 1..{len(places.ERAS)} (default 3)",
)  # fmt: skip
@option(
    "--workers", type=int_at_least(1, at_most=64), default=2, metavar="K",
    help="worker processes, 1..64 (default 2)",
)  # fmt: skip
@option(
    "--fail-rate", type=fraction, default=0.2, metavar="P", help="chance an attempt fails, 0..1 (default 0.2)"
)
@option("--seed", type=int, default=7, metavar="S", help="random seed (default 7)")
@option(
    "--no-sign", action="store_true",
    help="do not sign the videos (default, with the c2pa extra: a throwaway development CA in DIR/dev-ca)",
)  # fmt: skip
@option("--c2pa-chain", metavar="PEM", type=path, help="sign with this certificate chain (and --c2pa-key)")
@option("--c2pa-key", metavar="PEM", type=path, help="the chain's private key (ed25519)")
def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger import demo  # a long command: its worker processes, random and MP4s only here

    if (args.c2pa_chain is None) != (args.c2pa_key is None) or (args.c2pa_chain and args.no_sign):
        raise UsageError("--c2pa-chain and --c2pa-key go together, and not with --no-sign")
    directory = args.dir if args.dir is not None else default_directory()
    sign = not args.no_sign

    def signer() -> demo.DemoSigner:  # made once the demo made the ledger: a refusal is the ledger's
        return demo.demo_signer(directory, chain=args.c2pa_chain, key=args.c2pa_key, sign=sign)

    progress = DemoProgress(out, total=args.spots * args.eras)
    try:
        result = demo.run_demo(
            directory, spots=args.spots, eras=args.eras, workers=args.workers, fail_rate=args.fail_rate,
            seed=args.seed, progress=progress, store=_url(args), signer=signer,
        )  # fmt: skip
    except demo.DemoInterrupted as exc:
        progress.end()
        err.write(f"{PROG}: {exc}\n")
        return 128 + exc.signum
    progress.end()
    print_demo_run(result, args.workers, directory, out)
    with Ledger(directory, readonly=True, store=_url(args)) as ledger:
        entries = ledger.get_all_video_metadata()
        print_entries(entries, out)
        out.write("\n")
        print_status_counts(entries, out)
        report = ledger.verify()
        print_verify(report, _log_name(args, ledger), out)
        files = ledger.verify_files(
            media=Path(directory) / "videos",
            c2pa=result.signed.signer is not None,
            trust_anchors=result.signed.trust_anchor,
        )
        print_files(files, out)
    out.write(f"retry policy: {result.policy_note}\nvideos: {result.signed.how}\n")
    return EXIT_OK if report.ok and files.ok else EXIT_PROBLEM


@commands.command(
    "schema",
    "Print the JSON Schema of a log line (event) or of generated-videos.json (snapshot).",
    "schema snapshot > generated-videos.schema.json",
)
@option("kind", choices=("event", "snapshot"), metavar="KIND", help="event or snapshot")
def _schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ledger import schema

    out.write(schema.documents()[f"{args.kind}.schema.json"].decode())
    return EXIT_OK


@commands.command(
    "completion",
    "Print a shell completion script for bash or zsh.",
    "completion bash > ~/.local/share/bash-completion/completions/video-ledger",
)
@option("shell", choices=("bash", "zsh"), metavar="SHELL", help="bash or zsh")
def _completion(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(completion_script(_build_parser(), args.shell))
    return EXIT_OK


# -- entry point ---------------------------------------------------------------------------------------


def _build_parser(out: TextIO | None = None, err: TextIO | None = None) -> Parser:
    return commands.parser(out, err)


_NO_STORE = ("copy", "schema", "completion")
"""The commands that open no ledger: --store and $VIDEO_LEDGER_STORE do not concern them."""


def _resolve_store(args: argparse.Namespace) -> None:
    """``args.dir`` and ``args.store`` as the library's one rule decides them from ``--dir``, ``--store``
    and ``$VIDEO_LEDGER_STORE`` (:func:`~ledger.stores.resolve_store`): a directory store is the ledger
    directory; a URL is the store, ``--dir`` this host's directory."""
    if args.command in _NO_STORE:
        return
    named_by = "--store" if args.store is not None else None  # else $VIDEO_LEDGER_STORE, if set
    choice = resolve_store(args.dir, args.store, named_by=named_by)
    args.dir, args.store = choice.directory, store_spec(args.store) if choice.spec is None else choice.spec


def _run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    try:
        args = parse(commands.parser(out, err, argv=argv), argv)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _resolve_store(args)
    if not args.wide and out.isatty():
        import shutil  # a terminal's width ($COLUMNS first); bz2 and lzma come with it

        fit_to(shutil.get_terminal_size().columns)
    else:
        fit_to(None)
    code: int = args.run(args, out, err)
    return code


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger = logging.getLogger("ledger")
    logger.addHandler(handler)
    try:
        return _run(sys.argv[1:] if argv is None else argv, out, err)
    except BadUsage as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    except UsageError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except WaitTimeout as exc:
        err.write(f"{PROG}: {exc}\n")
        return EXIT_PROBLEM
    except LedgerError as exc:
        err.write(f"{PROG}: error: {message(exc)}\n")
        bad_input = (InvalidEntryError, IllegalTransitionError, ReadOnlyLedgerError)
        return EXIT_USAGE if isinstance(exc, bad_input) else EXIT_PROBLEM
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
