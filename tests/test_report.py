"""``video-ledger report --html``: one self-contained page, opened in headless Chromium, its DOM checked
against the ledger, and a screenshot kept (in the test's tmp directory). Without Chromium (Debian's
``chromium`` package) the browser tests skip, and fail under ``CI=true``."""

from __future__ import annotations

import html.parser
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.events import Usage
from ledger.report import gather, render

from .conftest import FakeClock, entry, need_tool


def _ledger(directory: Path) -> Ledger:
    ledger = Ledger(directory, clock=FakeClock())
    ledger.set_video_metadata(entry("acropolis", "founding", "pending"))
    ledger.set_video_metadata(entry("acropolis", "decline"))
    ledger.set_video_metadata(entry("colosseum", "founding"))
    ledger.mark_video_failed("colosseum", "founding", "CUDA out of memory", usage=Usage(gpu_seconds=30.0))
    ledger.set_video_metadata(entry("colosseum", "founding"))
    ledger.set_video_metadata(entry("colosseum", "founding", "ready"))
    ledger.set_video_metadata(entry('<b>"petra"&', "decline"))
    ledger.mark_video_failed('<b>"petra"&', "decline", "<script>alert(1)</script>")
    return ledger


@pytest.fixture
def chromium() -> str:
    return need_tool("chromium", "the report's tests (Debian's chromium package)")


def _browse(chromium: str, page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


class _Dom(html.parser.HTMLParser):
    """The grid's cells and the attempt rows of each entry, as the browser's DOM has them."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.attempts: dict[tuple[str, str], list[str]] = {}
        self.head: str | None = None
        self._entry: tuple[str, str] | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("class") == "cell":
            self.cells[a["data-spot"] or "", a["data-era"] or ""] = a["data-status"] or ""
        elif tag == "div" and a.get("class") == "entry":
            self._entry = (a["data-spot"] or "", a["data-era"] or "")
            self.attempts[self._entry] = []
        elif tag == "tr" and a.get("class") == "attempt" and self._entry is not None:
            self.attempts[self._entry].append(a["data-outcome"] or "")
        elif tag == "code" and a.get("id") == "head":
            self._in_head = True

    def handle_data(self, data: str) -> None:
        if self._in_head:
            self.head, self._in_head = data, False


def test_the_page_in_chromium_shows_what_the_ledger_holds(
    ledger_dir: Path, tmp_path: Path, chromium: str, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    with _ledger(ledger_dir) as ledger:
        entries = ledger.get_all_video_metadata()
        stories = {e.key: ledger.timeline(*e.key) for e in entries}
        head = ledger.verify().head
    page = tmp_path / "report.html"
    code, out, _ = run_cli("report", "--html", str(page))
    assert code == 0 and out.startswith(f"wrote {page}: 4 entries; verify ok; head {head}")
    dom = _Dom()
    dom.feed(_browse(chromium, page, tmp_path, "--dump-dom").stdout)
    assert dom.cells == {e.key: e.status for e in entries}
    assert dom.attempts == {k: [a.outcome or "running" for a in s.attempts] for k, s in stories.items()}
    assert dom.head == head
    screenshot = tmp_path / "report.png"
    _browse(chromium, page, tmp_path, "--window-size=1200,1400", f"--screenshot={screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


def test_the_page_is_self_contained_and_escapes_what_the_ledger_holds(ledger_dir: Path) -> None:
    with _ledger(ledger_dir) as ledger:
        page = render(gather(ledger))
    assert not re.search(r"""(?:src|href)\s*=\s*(?!["']?#)""", page)  # nothing fetched: only in-page links
    assert "@import" not in page and "url(" not in page
    assert "<script" not in page  # the error text is shown, not run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-spot="&lt;b&gt;&quot;petra&quot;&amp;"' in page


def test_an_empty_ledger_gives_a_page_that_says_so(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        page = render(gather(ledger))
    assert "0 entries" in page and "no failed attempts" in page and "none reported" in page


def test_the_gpu_time_workers_reported_is_shown_by_outcome(ledger_dir: Path) -> None:
    with _ledger(ledger_dir) as ledger:
        page = render(gather(ledger))
    assert 'data-ready="0.0" data-failed="30.0"' in page and "(100%) on attempts that failed" in page
