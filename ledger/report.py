"""``video-ledger report --html FILE``: one self-contained page to look at (no server, nothing fetched).

A grid of spots by eras coloured by status, each entry's attempts with their times and errors, failures
over time, and the chain's head with what ``verify`` said. :func:`gather` reads the ledger (one pass over
the log for the timelines, one ``verify``); :func:`render` is a pure function of what it gathered.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ledger.events import Failed, Ready, VideoMetadata
from ledger.fileops import FileOps, atomic_write
from ledger.store import Ledger, VerifyReport
from projections import timeline as timeline_view

__all__ = ("Report", "gather", "render", "write")

COLOURS = {"pending": "#9aa5b1", "generating": "#3b82f6", "ready": "#16a34a", "failed": "#dc2626"}


@dataclass(frozen=True)
class Report:
    entries: list[VideoMetadata]
    timelines: dict[tuple[str, str], timeline_view.Timeline]
    verify: VerifyReport
    made: str
    gpu_seconds: dict[str, float]
    """GPU-seconds the workers reported, by the outcome of the attempt (``ready``, ``failed``)."""
    """When the report was made (RFC 3339, UTC)."""


def gather(ledger: Ledger, *, now: dt.datetime | None = None) -> Report:
    """What the page shows, read from ``ledger``."""
    stories: dict[tuple[str, str], timeline_view.Timeline] = {}
    gpu = {"ready": 0.0, "failed": 0.0}
    for event in ledger.history():
        if isinstance(event, Ready | Failed) and event.usage is not None and event.usage.gpu_seconds:
            gpu[event.type] += event.usage.gpu_seconds
        key = (event.spot_id, event.era_id)
        story = stories.get(key)
        if story is None:
            story = stories[key] = timeline_view.Timeline(*key)
        timeline_view.add(story, event)
    made = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Report(ledger.get_all_video_metadata(), stories, ledger.verify(), made, gpu)


def render(report: Report) -> str:
    """The page, as one HTML document with its style inline."""
    counts: Counter[str] = Counter(e.status for e in report.entries)
    summary = ", ".join(f"{s}: {counts.get(s, 0)}" for s in COLOURS)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<title>video-ledger report</title>",
            f"<style>{_STYLE}</style></head><body>",
            "<h1>video-ledger report</h1>",
            f'<p id="made">made {_e(report.made)}; {len(report.entries)} entries ({summary})</p>',
            _chain(report.verify),
            _gpu(report.gpu_seconds),
            _grid(report.entries),
            _failures(report.timelines),
            _attempts(report.entries, report.timelines),
            "</body></html>",
            "",
        ]
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _chain(verify: VerifyReport) -> str:
    verdict = "ok" if verify.ok else f"problem: {verify.problem}"
    head = verify.head or "none (no whole, durable event verified)"
    return (
        f'<section id="chain" data-ok="{str(verify.ok).lower()}"><h2>Chain</h2>'
        f"<p>verify: <b>{_e(verdict)}</b>; {verify.events} events, {verify.entries} entries</p>"
        f'<p>head: <code id="head">{_e(head)}</code></p></section>'
    )


def _gpu(spent: dict[str, float]) -> str:
    total = spent["ready"] + spent["failed"]
    if not total:
        return '<section id="gpu"><h2>GPU time</h2><p>none reported</p></section>'
    return (
        f'<section id="gpu" data-ready="{spent["ready"]}" data-failed="{spent["failed"]}"><h2>GPU time</h2>'
        f"<p>{total:,.1f} GPU-seconds reported: {spent['ready']:,.1f} on attempts that made a video, "
        f"{spent['failed']:,.1f} ({spent['failed'] / total:.0%}) on attempts that failed</p></section>"
    )


def _grid(entries: list[VideoMetadata]) -> str:
    spots = sorted({e.spot_id for e in entries})
    eras = sorted({e.era_id for e in entries})
    by_key = {e.key: e for e in entries}
    rows = ["<tr><th></th>" + "".join(f"<th>{_e(era)}</th>" for era in eras) + "</tr>"]
    for spot in spots:
        cells = []
        for era in eras:
            entry = by_key.get((spot, era))
            if entry is None:
                cells.append('<td class="none"></td>')
                continue
            tip = entry.error or entry.local_path or entry.prompt
            cells.append(
                f'<td class="cell" data-spot="{_e(spot)}" data-era="{_e(era)}" data-status="{entry.status}" '
                f'style="background:{COLOURS[entry.status]}" title="{_e(tip)}">'
                f'<a href="#{_anchor(entry.key)}">{entry.status}</a></td>'
            )
        rows.append(f"<tr><th>{_e(spot)}</th>{''.join(cells)}</tr>")
    legend = " ".join(f'<span class="key" style="background:{c}">{s}</span>' for s, c in COLOURS.items())
    table = f'<table id="grid">{"".join(rows)}</table>'
    return f"<section><h2>Spots &times; eras</h2><p>{legend}</p>{table}</section>"


def _failures(stories: dict[tuple[str, str], timeline_view.Timeline]) -> str:
    attempts = (a for story in stories.values() for a in story.attempts)
    ended = [a.ended for a in attempts if a.outcome == "failed" and a.ended]
    if not ended:
        return '<section id="failures"><h2>Failures over time</h2><p>no failed attempts</p></section>'
    hourly = min(ended)[:10] >= _days_before(max(ended), 2)  # a short run: per hour, else per day
    unit, cut = ("hour", 13) if hourly else ("day", 10)
    days = Counter(when[:cut] for when in ended)
    top = max(days.values())
    bars = []
    for i, (day, n) in enumerate(sorted(days.items())):
        height = 100 * n / top
        bars.append(
            f'<g data-day="{day}" data-failures="{n}"><rect x="{i * 44 + 4}" y="{110 - height:.1f}" '
            f'width="36" height="{height:.1f}" fill="{COLOURS["failed"]}"><title>{day}: {n}</title></rect>'
            f'<text x="{i * 44 + 22}" y="124" font-size="9" text-anchor="middle">{day[5:].replace("T", " ")}'
            "</text></g>"
        )
    width = 44 * len(days) + 8
    return (
        f'<section id="failures"><h2>Failures over time (per {unit}, UTC)</h2>'
        f'<svg width="{width}" height="130" role="img">{"".join(bars)}</svg></section>'
    )


def _days_before(when: str, days: int) -> str:
    return (dt.date.fromisoformat(when[:10]) - dt.timedelta(days=days)).isoformat()


def _attempts(entries: list[VideoMetadata], stories: dict[tuple[str, str], timeline_view.Timeline]) -> str:
    parts = ['<section id="attempts"><h2>Attempts</h2>']
    for entry in entries:
        story = stories.get(entry.key)
        rows = []
        for a in story.attempts if story is not None else []:
            took = "" if a.seconds is None else f"{a.seconds:.1f} s"
            rows.append(
                f'<tr class="attempt" data-outcome="{a.outcome or "running"}"><td>{a.number}</td>'
                f"<td>{_e(a.started)}</td><td>{took}</td><td>{_e(a.outcome or 'running')}</td>"
                f"<td>{_e(a.detail or '')}</td></tr>"
            )
        body = "".join(rows) or '<tr><td colspan="5">no attempts</td></tr>'
        parts.append(
            f'<div class="entry" id="{_anchor(entry.key)}" data-spot="{_e(entry.spot_id)}" '
            f'data-era="{_e(entry.era_id)}"><h3>{_e(entry.spot_id)} / {_e(entry.era_id)}: {entry.status}</h3>'
            "<table><tr><th>#</th><th>started</th><th>took</th><th>outcome</th><th>file or error</th></tr>"
            f"{body}</table></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _anchor(key: tuple[str, str]) -> str:
    return "e-" + "".join(c if c.isalnum() else f"_{ord(c):x}_" for c in f"{key[0]}\x1f{key[1]}")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
#grid td.cell{color:#fff;text-align:center;min-width:80px}#grid td.cell a{color:#fff;text-decoration:none}
.key{color:#fff;padding:2px 6px;margin-right:6px;border-radius:3px}
.entry h3{margin:16px 0 4px;font-size:14px}tr.attempt[data-outcome=failed] td{color:#b91c1c}
code{font-size:12px;word-break:break-all}
""".strip()


def write(ledger: Ledger, path: str | os.PathLike[str]) -> Report:
    """Gather the report from ``ledger`` and write its page to ``path`` (atomically: a reader sees the old
    page or the new one, whole). Returns what it showed."""
    report = gather(ledger)
    atomic_write(FileOps(), Path(path), render(report).encode(), label="report", durable=False)
    return report
