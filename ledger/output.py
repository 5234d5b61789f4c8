"""What the command line prints: tables, CSV and JSON lines, entries, events, a timeline, figures, the
verify report, progress lines, and the ledger's messages in the words of the command line's flags.

Every printer takes what a library call returned and the stream to print on; none opens a ledger or
decides anything. A table fits the terminal only when :func:`fit_to` was given its width (``main`` does
so for a terminal without ``--wide``); piped, every cell is printed in full.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import errno
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import msgspec

from ledger.errors import SYMLINK_REFUSED, IllegalTransitionError, InvalidEntryError, LedgerError
from ledger.events import (
    STATUSES,
    EventType,
    Failed,
    Generating,
    Imported,
    Pending,
    Policy,
    Ready,
    Renewed,
    VideoMetadata,
)
from ledger.layout import CHECKPOINT_NAME, LOG_NAME, SNAPSHOT_LOCK_NAME
from ledger.pipeline import Job
from ledger.queue import attempt_text, worker_text
from ledger.retry import RetryPolicy, policy_text
from ledger.store import FilesReport, ImportReport, RebuildReport, Timeline, VerifyReport, encode_entries
from ledger.stores import store_name
from projections.provenance import AttemptRecord, model_label
from projections.stats import GroupBy, GroupStats, Stats, describe_span

if TYPE_CHECKING:  # types only: a command that prints one of these imported its room itself
    from ledger import demo, health, report
    from ledger.copy import CopyReport
    from ledger.proofs import Bundle, Extension, Proven

__all__ = (
    "ENTRY_HEADER",
    "HISTORY_HEADER",
    "PROGRESS_AFTER_ENV",
    "CopyProgress",
    "DemoProgress",
    "TerminalProgress",
    "cell",
    "demo_line",
    "duration_text",
    "entry_row",
    "fit_to",
    "flag_names",
    "history_row",
    "json_line",
    "message",
    "print_bundle",
    "print_claimed",
    "print_consistency",
    "print_copied",
    "print_demo_run",
    "print_entries",
    "print_extension",
    "print_files",
    "print_followed",
    "print_history",
    "print_imported",
    "print_policy",
    "print_proven",
    "print_provenance",
    "print_reaped",
    "print_recalled",
    "print_stats",
    "print_stats_by",
    "print_status_counts",
    "print_table",
    "print_timeline",
    "print_verify",
    "print_written",
    "torn_note",
    "unformula",
    "verify_json",
    "write_csv",
)

_encoder = msgspec.json.Encoder()


def json_line(value: object) -> str:
    """``value`` as one line of JSON, newline included."""
    return _encoder.encode(value).decode() + "\n"


# -- tables and CSV ------------------------------------------------------------------------------------

_WIDTH: contextvars.ContextVar[int | None] = contextvars.ContextVar("table_width", default=None)
"""The terminal's width when tables are to fit it; ``None`` (piped, or ``--wide``) prints cells in full."""


def fit_to(width: int | None) -> None:
    """Fit the tables printed from now on in this context to ``width`` columns (``None``: print in full)."""
    _WIDTH.set(width)


def cell(text: str, width: int | None = None) -> str:
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


def print_table(header: list[str], rows: Iterable[list[str]], out: TextIO) -> None:
    table = [header] + [[cell(c) for c in row] for row in rows]
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


def counted(n: int, one: str, many: str | None = None) -> str:
    """``1 entry``, ``2 entries``: a count with its noun."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def write_csv(
    header: list[str] | None, rows: Iterable[list[str]], out: TextIO, *, delimiter: str = ","
) -> None:
    """CSV: a value holding a comma, a quote or a line break is quoted, as spreadsheets and ``csv``
    readers expect. TSV (``delimiter="\\t"``): never quoted; a backslash, tab, newline or carriage
    return in a value is written ``\\\\``, ``\\t``, ``\\n``, ``\\r`` (PostgreSQL's text format), so every row
    is one line of tab-separated fields for ``cut`` and ``awk``. In both, a value a spreadsheet would
    run as a formula gets a leading ``'`` (:func:`unformula`)."""
    if delimiter == "\t":
        for row in [header] if header is not None else []:
            out.write("\t".join(row) + "\n")
        for row in rows:
            out.write("\t".join(unformula(v).translate(_TSV_ESCAPES) for v in row) + "\n")
        return
    special = (delimiter, '"', "\n", "\r")  # csv.writer leaves a lone carriage return unquoted

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in special) else value

    for row in [header] if header is not None else []:
        out.write(delimiter.join(map(cell, row)) + "\n")
    for row in rows:
        out.write(delimiter.join(cell(unformula(v)) for v in row) + "\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def unformula(value: str) -> str:
    """``value`` as a spreadsheet cell shows it and never runs it: with a ``'`` in front when it starts
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP's advice on CSV injection: an
    error message or prompt such as ``=HYPERLINK(...)`` would otherwise be a formula)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


# -- entries -------------------------------------------------------------------------------------------

ENTRY_HEADER = ["spotId", "eraId", "status", "createdAt", "completedAt", "localPath / error"]


def entry_row(e: VideoMetadata) -> list[str]:
    return [
        e.spot_id,
        e.era_id,
        e.status,
        e.created_at or "",
        e.completed_at or "",
        e.error or e.local_path or "",
    ]


def print_entries(entries: Sequence[VideoMetadata], out: TextIO) -> None:
    if not entries:
        out.write("no entries\n")
        return
    print_table(ENTRY_HEADER, (entry_row(e) for e in entries), out)


_MEMBERS = msgspec.structs.fields(VideoMetadata)
ENTRY_FIELDS = [f.encode_name for f in _MEMBERS]
"""The snapshot's members, in its order: ``list --csv``/``--tsv`` has a column for each."""


def entry_fields(e: VideoMetadata) -> list[str]:
    values = (getattr(e, f.name) for f in _MEMBERS)
    return ["" if v is None else str(v) for v in values]


def print_entry_list(
    entries: Sequence[VideoMetadata], out: TextIO, *, json: bool, delimiter: str | None
) -> None:
    """``list``'s output: the snapshot's JSON array, CSV or TSV (a column per member), or a table."""
    if json:
        out.write(encode_entries(entries).decode())
    elif delimiter is not None:
        write_csv(ENTRY_FIELDS, map(entry_fields, entries), out, delimiter=delimiter)
    else:
        print_entries(entries, out)


def print_written(entry: VideoMetadata, seq: int | None, out: TextIO, *, json: bool, quiet: bool) -> None:
    """The entry as stored and the event that recorded it (what ``wait --seq`` takes)."""
    if quiet:
        return
    if json:
        out.write(json_line({"seq": seq, "entry": entry}))
        return
    print_entries([entry], out)
    if seq is None:
        out.write(f"nothing recorded: {entry.spot_id}/{entry.era_id} already is {entry.status}\n")
    else:
        out.write(f"recorded event {seq}\n")


def print_status_counts(entries: Sequence[VideoMetadata], out: TextIO) -> None:
    counts = Counter(e.status for e in entries)
    out.write(", ".join(f"{status}: {counts[status]}" for status in STATUSES) + "\n")


def print_reaped(reaped: Sequence[VideoMetadata], out: TextIO, *, json: bool) -> None:
    if json:
        out.write(encode_entries(reaped).decode())
        return
    if reaped:
        print_entries(reaped, out)
    out.write(f"reaped {counted(len(reaped), 'entry', 'entries')} stuck in generating\n")


def print_claimed(
    job: Job | None, entry: VideoMetadata | None, seq: int | None, out: TextIO, *, json: bool
) -> None:
    """The job ``claim`` started (or that there was none: nothing on stdout with ``--json``)."""
    if job is None or entry is None:
        out.write("" if json else "nothing to claim\n")
        return
    if json:
        out.write(json_line({
            "spotId": job.spot_id, "eraId": job.era_id, "prompt": entry.prompt, "localPath": entry.local_path,
            "attempt": job.attempt, "lease": job.lease, "seq": seq,
        }))  # fmt: skip
        return
    out.write(
        f"claimed {job.spot_id} {job.era_id} attempt {job.attempt} (lease {job.lease:g}s): {entry.prompt}\n"
    )


def print_policy(policy: RetryPolicy, seq: int, out: TextIO, *, json: bool) -> None:
    """The retry policy and the event that set it (0: none, the default)."""
    if json:
        fields = policy.fields()
        out.write(json_line({
            "seq": seq, "maxAttempts": fields["max_attempts"], "backoff": fields["backoff"],
            "backoffFactor": fields["backoff_factor"], "backoffMax": fields["backoff_max"],
            "notRetried": fields["not_retried"],
        }))  # fmt: skip
        return
    where = f"event {seq}" if seq else "the default: no policy event recorded"
    out.write(f"{policy_text(policy)} ({where})\n")


def print_imported(report: ImportReport, out: TextIO, err: TextIO, prog: str) -> None:
    if report.dropped:
        fields = ", ".join(f"{name} ({counted(n, 'entry', 'entries')})" for name, n in report.dropped.items())
        err.write(f"{prog}: warning: dropped fields the ledger does not keep: {fields}\n")
    out.write(
        f"imported {counted(report.imported, 'entry', 'entries')}; "
        f"{report.already_present} already in the ledger, left as they are\n"
    )


# -- events --------------------------------------------------------------------------------------------

HISTORY_HEADER = ["seq", "time", "event", "spotId", "eraId", "details"]


def _details(event: EventType, *, escape: bool = True) -> str:
    show = repr if escape else str
    match event:
        case Pending() | Generating():
            reason = f" reason={show(event.reason)}" if isinstance(event, Pending) and event.reason else ""
            return (
                f"prompt={show(event.prompt)}"
                + (f" localPath={show(event.local_path)}" if event.local_path else "")
                + reason
                + attempt_text(event)
            )
        case Ready():
            size = f" size={event.size}" if event.size is not None else ""
            return f"localPath={show(event.local_path)}{size}"
        case Failed():
            return f"error={show(event.error)}"
        case Imported():
            return f"imported as {event.status}, createdAt={event.created_at}"
        case Renewed():
            return f"attempt={event.attempt} lease={event.lease:g}s"
        case Policy():
            return policy_text(event)
    raise AssertionError(event)  # every event type has a case above


def history_row(e: EventType, *, escape: bool = True) -> list[str]:
    return [str(e.seq), e.ts, e.type, e.spot_id, e.era_id, _details(e, escape=escape)]


def print_history(records: Iterable[tuple[bytes, EventType]], out: TextIO, *, json: bool, csv: bool) -> None:
    """Events as stored lines (``json``), CSV, or a table."""
    if json:
        for line, _ in records:
            out.write(line.decode() + "\n")
    elif csv:
        write_csv(HISTORY_HEADER, (history_row(e, escape=False) for _, e in records), out)
    else:
        print_table(HISTORY_HEADER, (history_row(e) for _, e in records), out)


def print_followed(line: bytes, event: EventType, out: TextIO, *, json: bool, csv: bool) -> None:
    """One event as it comes (``history --follow``): no table to fit, a row at a time."""
    if json:
        out.write(line.decode() + "\n")
    elif csv:
        write_csv(None, [history_row(event, escape=False)], out)
    else:
        out.write("  ".join(history_row(event)) + "\n")
    out.flush()


# -- timeline and figures ------------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """A duration as the library writes one (:func:`projections.stats.describe_span`)."""
    return describe_span(seconds)


def print_timeline(story: Timeline, out: TextIO) -> None:
    out.write(f"{story.spot_id}/{story.era_id}\n")
    rows: list[tuple[str, str]] = []
    if story.imported is not None:
        imported = story.imported
        rows.append((imported.created_at, f"created (imported at {imported.ts} as {imported.status})"))
    rows += [(ts, f"queued: {cell(prompt, 60)}") for ts, prompt in story.queued]
    for a in story.attempts:
        by = f" by {worker_text(a.worker)}" if a.worker is not None else ""
        rows.append((a.started, f"attempt {a.number} started{by}: {cell(a.prompt, 60)}"))
        if a.ended is not None and a.seconds is not None:
            how = f"attempt {a.number} {a.outcome} after {duration_text(a.seconds)}"
            rows.append((a.ended, f"{how}: {cell(a.detail or '', 60)}"))
    for ts, text in sorted(rows, key=lambda row: row[0]):
        out.write(f"  {ts}  {text}\n")
    summary = f"{len(story.attempts)} attempt(s)"
    if story.seconds_to_ready is not None:
        summary += f"; ready {duration_text(story.seconds_to_ready)} after its first event"
    running = [a for a in story.attempts if a.outcome is None]
    if running:
        summary += f"; attempt {running[-1].number} still generating"
    out.write(f"  {summary}\n")


def timeline_json(story: Timeline) -> dict[str, object]:
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
                "worker": None if a.worker is None else msgspec.to_builtins(a.worker),
            }
            for a in story.attempts
        ],
        "secondsToReady": story.seconds_to_ready,
    }


def print_stats(figures: Stats, out: TextIO) -> None:
    out.write(f"{counted(figures.events, 'event')}, {counted(figures.entries, 'entry', 'entries')}\n")
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
            f"generating -> ready: median {duration_text(figures.generation_seconds_median)}, "
            f"95th percentile {duration_text(figures.generation_seconds_p95)}\n"
        )
    if figures.top_failures:
        out.write("most frequent failures:\n")
    for message, count in figures.top_failures:
        out.write(f"  {count:>5} x {cell(message, 90)}\n")
    if figures.clock_skew is not None:
        out.write(f"clock skew: {figures.clock_skew.describe()}\n")


def print_stats_by(groups: Sequence[GroupStats], by: GroupBy, out: TextIO) -> None:
    """``stats --by``: one row per model, era or spot."""
    header = [by, "attempts", "ready", "failed", "running", "success", "GPU-s", "on failed", "wall-s"]
    rows = [
        [
            g.key, str(g.attempts), str(g.ready), str(g.failed), str(g.running),
            "n/a" if g.success_rate is None else f"{g.success_rate:.1%}",
            f"{g.gpu_seconds:,.1f}",
            "n/a" if g.failed_gpu_share is None else f"{g.failed_gpu_share:.1%}",
            f"{g.wall_seconds:,.1f}",
        ]
        for g in groups
    ]  # fmt: skip
    if not rows:
        out.write("no attempts\n")
        return
    print_table(header, rows, out)
    unreported = sum(g.without_usage for g in groups)
    if unreported:
        out.write(
            f"{unreported} finished attempt(s) reported no GPU-seconds (counted in attempts, not in GPU-s)\n"
        )


def print_recalled(records: Sequence[AttemptRecord], out: TextIO, *, dry_run: bool) -> None:
    """``requeue --model``: the entries whose videos were (or, with ``--dry-run``, would be) withdrawn."""
    if records:
        header = ["spotId", "eraId", "attempt", "model", "localPath"]
        rows = [[r.spot_id, r.era_id, str(r.seq), model_label(r) or "", r.local_path or ""] for r in records]
        print_table(header, rows, out)
    verb = "would put back" if dry_run else "put back"
    out.write(f"{verb} {len(records)} entr{'y' if len(records) == 1 else 'ies'} to pending\n")


def print_provenance(records: Sequence[AttemptRecord], out: TextIO) -> None:
    """``provenance``: each attempt, the current one first, with what made it and what it cost."""
    if not records:
        out.write("no attempts\n")
        return
    for record in records:
        how = "running" if record.outcome is None else f"{record.outcome} {record.ended}"
        out.write(f"attempt {record.attempt} (event {record.seq}), started {record.started}: {how}\n")
        for label, value in _attempt_lines(record):
            out.write(f"  {label + ':':<12}{cell(value)}\n")


def _attempt_lines(record: AttemptRecord) -> Iterator[tuple[str, str]]:
    made = record.provenance
    if made is not None and made.model is not None:
        model = made.model
        text = model.name + ("" if model.version is None else f" {model.version}")
        yield "model", text + ("" if model.weights_digest is None else f" (weights {model.weights_digest})")
    if made is not None:
        for label, value in (("seed", made.seed), ("parameters", made.parameters)):
            if value is not None:
                yield label, str(value)
        if made.prompt_template is not None:
            yield "template", made.prompt_template
        if made.prompt_sha256 is not None:
            yield "prompt", f"sha256 {made.prompt_sha256}"
        for item in made.inputs:
            yield "input", f"{item.role} sha256 {item.sha256}"
    if made is None:
        yield "provenance", "none recorded"
    if record.worker is not None:
        w = record.worker
        yield (
            "worker",
            " ".join(p for p in (w.name, w.host and f"on {w.host}", w.pid and f"pid {w.pid}") if p),
        )
    if record.usage is not None:
        yield "usage", _usage_text(record)
    if record.reuses is not None:
        source = record.reuses
        yield (
            "reuses",
            f"the video of {source.spot_id}/{source.era_id} attempt {source.attempt} (same provenance)",
        )
    if record.outcome == "ready":
        size = "" if record.size is None else f"{record.size:,} bytes"
        digest = "" if record.sha256 is None else f"sha256 {record.sha256}"
        yield "video", ", ".join(p for p in (record.local_path or "", size, digest) if p)
    if record.error is not None:
        yield "error", record.error


def _usage_text(record: AttemptRecord) -> str:
    usage = record.usage
    assert usage is not None
    parts = []
    if usage.wall_seconds is not None:
        parts.append(f"wall {duration_text(usage.wall_seconds)}")
    if usage.gpu_seconds is not None:
        on = "" if usage.gpu_type is None else f" on {usage.gpu_type}"
        parts.append(f"GPU {usage.gpu_seconds:,.1f} s{on}")
    elif usage.gpu_type is not None:
        parts.append(f"GPU {usage.gpu_type}")
    if usage.cost is not None:
        parts.append(f"cost {usage.cost:g} {usage.currency or ''}".rstrip())
    return ", ".join(parts) or "nothing reported"


# -- verify --------------------------------------------------------------------------------------------


def print_rebuilt(report: RebuildReport, snapshot: Path, out: TextIO) -> None:
    events, entries = counted(report.events, "event"), counted(report.entries, "entry", "entries")
    out.write(f"rebuilt {snapshot} from {events} ({entries})\n")


def torn_note(size: int, line: int) -> str:
    return (
        f"{size} bytes at the end of the log (from line {line}) are not a whole event "
        "(a write cut short by a crash); the next write sets them aside"
    )


def print_verify(report: VerifyReport, where: str, out: TextIO) -> None:
    """The report as ``verify`` prints it; ``where`` names the log (its file, or the store's URL)."""
    if not report.ok:
        at = f" line {report.line}" if report.line is not None else ""
        out.write(f"FAILED {where}{at}: {report.problem}\n")
        out.write(f"{counted(report.events, 'whole event')} before the problem\n")
        if report.head is not None:
            out.write(f"head: {report.head}\n")
        return
    snapshot = (
        "no snapshot yet"
        if report.snapshot_seq is None
        else f"snapshot matches the log at event {report.snapshot_seq}"
    )
    counts = f"{counted(report.events, 'event')}, {counted(report.entries, 'entry', 'entries')}"
    out.write(f"ok: {counts}, chain intact, {snapshot}\n")
    out.write(f"head: {report.head}\n")
    if lag := snapshot_lag(report):
        behind = counted(lag, "event")
        out.write(f"lag: the app's file is {behind} behind the log (a watch or a write catches it up)\n")
    if report.note is not None:
        out.write(f"note: {report.note}\n")
    if report.torn is not None:
        out.write(f"note: {torn_note(report.torn.size, report.torn.line)}\n")
    if report.skew is not None:
        out.write(f"warning: clock skew: {report.skew.describe()}\n")
    if report.non_nfc is not None:
        out.write(f"warning: ids: {report.non_nfc}\n")


def snapshot_lag(report: VerifyReport) -> int | None:
    """How many events of the log the app's file (its checkpoint) lacks; ``None`` when verify could not
    say (no checkpoint, or a problem)."""
    if report.head is None or report.checkpoint_seq is None or not report.ok:
        return None
    return max(0, int(report.head.partition(":")[0]) - report.checkpoint_seq)


# -- proofs --------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def print_extension(extension: Extension, out: TextIO, *, json: bool) -> None:
    """``verify --previous``: the log extends the signed checkpoint."""
    old = extension.old
    if json:
        out.write(json_line({
            "ok": True, "origin": old.origin, "previousSize": old.size, "previousRoot": _b64(old.root),
            "size": extension.size, "root": _b64(extension.root), "proof": [_b64(h) for h in extension.proof],
        }))  # fmt: skip
        return
    out.write(
        f"ok: the log ({extension.size} records, root {_b64(extension.root)}) extends the signed checkpoint "
        f"of {old.origin} at {old.size} records (a consistency proof of {len(extension.proof)} hashes)\n"
    )


def print_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes], out: TextIO, *, json: bool
) -> None:
    """``consistency OLD NEW``: both roots, then the proof's hashes, one per line (base64)."""
    if json:
        out.write(json_line({
            "old": old, "new": new, "oldRoot": _b64(old_root), "newRoot": _b64(new_root),
            "proof": [_b64(h) for h in proof],
        }))  # fmt: skip
        return
    out.write(f"old {old} {_b64(old_root)}\nnew {new} {_b64(new_root)}\n")
    out.writelines(f"{_b64(h)}\n" for h in proof)


def print_bundle(bundle: Bundle, where: str, size: int, out: TextIO) -> None:
    """``prove --out``: what the bundle written to ``where`` proves."""
    lines = bundle.checkpoint.split("\n")
    seqs = ", ".join(str(r.index + 1) for r in bundle.records)
    out.write(
        f"proved {len(bundle.records)} records of {bundle.spot_id}/{bundle.era_id} (events {seqs}) against "
        f"the checkpoint of {lines[0]} at {lines[1]} records; {where}: {size} bytes\n"
    )


def print_proven(proven: Proven, out: TextIO, *, json: bool) -> None:
    """``verify-proof``: the entry as its proven records make it, and what they are proven against."""
    checkpoint = proven.checkpoint
    signers = sorted(v.name for v in proven.note.verified)
    if json:
        out.write(json_line({
            "entry": proven.entry, "seqs": [e.seq for e in proven.events], "origin": checkpoint.origin,
            "size": checkpoint.size, "root": _b64(checkpoint.root), "extensions": list(checkpoint.extensions),
            "signedBy": signers,
        }))  # fmt: skip
        return
    print_entries([proven.entry], out)
    out.write(
        f"proven: events {', '.join(str(e.seq) for e in proven.events)} are in the log of "
        f"{checkpoint.origin} at {checkpoint.size} records (root {_b64(checkpoint.root)}), "
        f"signed by {', '.join(signers)}\n"
    )


def print_files(files: FilesReport, out: TextIO) -> None:
    for problem in files.problems:
        out.write(f"FILE {cell(problem)}\n")
    for unchecked in files.unchecked:
        out.write(f"UNCHECKED {cell(unchecked)} (not read)\n")
    more = f", {len(files.unchecked)} unchecked" if files.unchecked else ""
    out.write(f"files: {files.checked} checked, {len(files.problems)} problems{more}\n")


def verify_json(report: VerifyReport, where: str, files: FilesReport | None) -> dict[str, object]:
    """``verify --json``'s object: the text output's lines as fields, each null when it has none."""
    found: dict[str, object] = {
        "ok": report.ok,
        "log": where,
        "events": report.events,
        "entries": report.entries,
        "problem": report.problem,
        "line": report.line,
        "checkpointSeq": report.checkpoint_seq,
        "head": report.head,
        "snapshotLag": snapshot_lag(report),
        "torn": None if report.torn is None else {"bytes": report.torn.size, "line": report.torn.line},
        "note": report.note,
        "clockSkew": report.skew,  # as stats --json has it
        "nonNfc": report.non_nfc,
    }
    if files is not None:
        found["files"] = {
            "ok": files.ok, "checked": files.checked, "problems": files.problems,
            "unchecked": files.unchecked,
        }  # fmt: skip
        found["ok"] = report.ok and files.ok
    return found


# -- progress ------------------------------------------------------------------------------------------


class CopyProgress:
    """``copying: N/M records`` rewritten in place on ``err``, ended with a newline once it was shown."""

    def __init__(self, err: TextIO) -> None:
        self._err, self.shown = err, False

    def __call__(self, copied: int, total: int) -> None:
        self.shown = True
        self._err.write(f"\rcopying: {copied}/{total} records")
        self._err.flush()

    def end(self) -> None:
        if self.shown:
            self._err.write("\n")


PROGRESS_AFTER_ENV = "VIDEO_LEDGER_PROGRESS_AFTER"
"""Seconds a long command runs before it shows its progress on a terminal (default 1; tests set 0)."""


class TerminalProgress:
    """A long call's progress on ``err``, one line rewritten in place (``verify: 120,000 records,
    95,000/s``; with a total, ``import: 2,048/100,000 entries (2%), ...``), shown only when ``err`` is a
    terminal, ``shown`` (not for ``--json``), and once the call has run for a second
    (``$VIDEO_LEDGER_PROGRESS_AFTER``); redrawn at most ten times a second, and cleared on leaving (before
    the command prints its result). The library reports (:data:`~ledger.backend.Progress`); this draws."""

    def __init__(self, err: TextIO, label: str, *, shown: bool = True) -> None:
        self._err, self._label = err, label
        self._on = shown and err.isatty()
        try:
            self._after = float(os.environ.get(PROGRESS_AFTER_ENV, "1"))
        except ValueError:
            self._after = 1.0
        self._last = self._seen = time.monotonic()
        self._starts: dict[str, float] = {}  # when each step began: its first report, or the command
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        self.report(self._label, "records", done, total)

    def step(self, name: str, noun: str) -> Callable[[int, int | None], None]:
        """A progress callback for one step of the command (``import: checking``, then ``recording``)."""
        label = f"{self._label}: {name}"
        return lambda done, total: self.report(label, noun, done, total)

    def report(self, label: str, noun: str, done: int, total: int | None) -> None:
        if not self._on:
            return
        now = time.monotonic()
        elapsed = now - self._starts.setdefault(label, self._seen)
        self._seen = now
        if now - min(self._starts.values()) < self._after:
            return
        if self._drawn and now - self._last < 0.1 and done != total:
            return
        self._last, self._drawn = now, True
        of = f"/{total:,}" if total else ""
        share = f" ({done * 100 // total}%)" if total else ""
        rate = done / elapsed if elapsed > 0 else 0.0
        self._err.write(f"\r\x1b[K{label}: {done:,}{of} {noun}{share}, {rate:,.0f}/s")
        self._err.flush()

    def close(self) -> None:
        """Clear the line if it was drawn."""
        if self._drawn:
            self._err.write("\r\x1b[K")
            self._err.flush()
            self._drawn = False

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_copied(report: CopyReport, source: str, target: str, out: TextIO) -> None:
    head = report.head
    resumed = f", resumed after the {report.resumed} already there" if report.resumed else ""
    out.write(
        f"copied {counted(report.copied, 'record')} from {store_name(source)} to {store_name(target)}"
        f"{resumed}; head {head.seq}:{head.hash}\n"
    )


def demo_line(last: demo.JobResult, finished: int, total: int) -> str:
    """``[  3/12] petra/decline attempt 1: ready``; a failed first attempt is not a finished job: it shows
    ``[ retry]`` in place of the counter (the job runs again)."""
    counter = f"{finished:>3}/{total}" if last.final else "retry".rjust(len(f"{0:>3}/{total}"))
    detail = f" ({last.detail})" if last.detail else ""
    return f"[{counter}] {last.spot_id}/{last.era_id} attempt {last.attempt}: {last.outcome}{detail}"


class DemoProgress:
    """The demo's progress: a bar rewritten in place on a terminal, else a line per attempt."""

    def __init__(self, out: TextIO, total: int) -> None:
        self._out, self._total, self.tty = out, total, out.isatty()

    def __call__(self, result: demo.DemoResult, last: demo.JobResult) -> None:
        if not self.tty:
            self._out.write(demo_line(last, result.finished, self._total) + "\n")
            return
        from ledger.demo import outcome_counts

        counts = outcome_counts(result)
        width = 30
        filled = width * result.finished // self._total
        self._out.write(
            f"\r[{'#' * filled}{'-' * (width - filled)}] {result.finished}/{self._total} jobs  "
            f"ready {counts['ready']}  failed {counts['failed']}  retried {result.retried}"
        )
        self._out.flush()

    def end(self) -> None:
        if self.tty:
            self._out.write("\n")
        self._out.flush()


def print_demo_run(result: demo.DemoResult, workers: int, directory: str | Path, out: TextIO) -> None:
    refused = f", {result.refused} refused (another attempt on the entry was live)" if result.refused else ""
    out.write(
        f"{result.jobs} jobs on {workers} workers in {result.seconds:.1f} s, "
        f"{result.retried} retried{refused}\n"
    )
    if result.existing:
        busy = f", {result.live} of them generating" if result.live else ""
        out.write(
            f"note: {directory} already held {result.existing} entries{busy}; this run added its attempts "
            "to theirs (see `history`)\n"
        )
    out.write("\n")


# -- the ledger's messages in the command line's words -------------------------------------------------


def message(exc: LedgerError) -> str:
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
def flag_names() -> Iterator[None]:
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


def print_report_written(shown: report.Report, path: str, out: TextIO) -> None:
    verdict = "ok" if shown.verify.ok else "a problem (see verify)"
    entries = counted(len(shown.entries), "entry", "entries")
    out.write(f"wrote {path}: {entries}; verify {verdict}; head {shown.verify.head}\n")


def print_status(found: health.Status, out: TextIO, *, json: bool) -> None:
    if json:
        out.write(json_line({**msgspec.to_builtins(found), "healthy": found.healthy}))
        return
    out.write(f"{'healthy' if found.healthy else 'PROBLEM'}: head {found.head_seq}")
    out.write(f" at {found.head_time}\n" if found.head_time else " (empty)\n")
    behind = f"{counted(found.lag_events, 'event')} behind" if found.lag_events else "current"
    waited = f", the oldest waiting {found.lag_seconds:.1f} s" if found.lag_events else ""
    at = "no checkpoint yet" if found.snapshot_seq is None else f"at event {found.snapshot_seq}"
    out.write(f"app's file: {at}, {behind}{waited}\n")
    if found.last_event_age_seconds is not None:
        out.write(f"last event: {duration_text(found.last_event_age_seconds)} ago\n")
    by_status = ", ".join(f"{s}: {n}" for s, n in found.by_status.items())
    out.write(f"{counted(found.entries, 'entry', 'entries')} ({by_status}); ")
    watch = "running" if found.watcher else "not running"
    expired = f" ({found.expired_leases} of them with an expired lease)" if found.expired_leases else ""
    out.write(f"{counted(found.live_attempts, 'live attempt')}{expired}; watch {watch}\n")
    for problem in found.problems:
        out.write(f"problem: {problem}\n")
