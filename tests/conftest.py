"""Shared fixtures: a fresh ledger directory under tmp_path and a deterministic clock."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger import Ledger, VideoMetadata

from .pg import pg_server, pg_url  # noqa: F401  (fixtures: a real PostgreSQL server, a database per test)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class FakeClock:
    """Starts at a fixed instant and advances one millisecond per reading (or as told)."""

    def __init__(self, start: dt.datetime | None = None, step: dt.timedelta = dt.timedelta(milliseconds=1)):
        self.now = start or dt.datetime(2026, 11, 24, 9, 0, 0, tzinfo=dt.UTC)
        self.step = step

    def __call__(self) -> dt.datetime:
        now = self.now
        self.now += self.step
        return now


def recent_clock(step: dt.timedelta = dt.timedelta(milliseconds=1)) -> FakeClock:
    """A FakeClock starting six hours before the real clock: for a log that a writer on the real clock
    (another process, the CLI) continues. The fixed default start would one day be more than 30 days behind
    the real clock, and that writer's events would be refused (``ledger.store.MAX_CLOCK_LEAD``)."""
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=6), step)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def ledger(ledger_dir: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger(ledger_dir, clock=clock) as opened:
        yield opened


def need_tool(name: str, purpose: str) -> str:
    """The path of the program ``name`` the calling test needs; without it the test skips, and fails under
    ``CI=true`` (CI installs what its tests need and must never pass by skipping them)."""
    import shutil

    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is needed for {purpose} under CI=true", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return found


def js_from_doc(doc: Path, directory: Path, module: str, harness: str) -> Path:
    """The one ```js block of ``doc`` written to ``directory/module`` beside ``harness.mjs``: the docs'
    JavaScript as node runs it, so a page cannot drift from what its test checks."""
    blocks = re.findall(r"^```js\n(.*?)^```", doc.read_text(), re.S | re.M)
    assert blocks, f"{doc.name} has no ```js block"
    directory.mkdir()
    (directory / module).write_text(blocks[0])
    (directory / "harness.mjs").write_text(harness)
    return directory


def entry(
    spot: str = "colosseum", era: str = "rome-80ad", status: str = "generating", **fields: object
) -> VideoMetadata:
    """A VideoMetadata with sensible defaults for tests."""
    fields.setdefault("prompt", f"{spot} in {era}")
    if status == "ready":
        fields.setdefault("local_path", f"videos/{spot}-{era}.mp4")
    if status == "failed":
        fields.setdefault("error", "generator crashed")
    return VideoMetadata(spot_id=spot, era_id=era, status=status, **fields)  # type: ignore[arg-type]


def files_state(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` with its bytes: to prove an operation changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


Run = Callable[..., tuple[int, str, str]]


def cli_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process (``main(argv)``): returns (exit code, stdout, stderr)."""
    from ledger.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_process(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ledger ARGS`` as a real process from the repository's root (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def one_line_error(err: str) -> str:
    """``err`` if it is one line of ``video-ledger: error: …`` with no traceback (else the test fails)."""
    assert err.count("\n") == 1 and err.startswith("video-ledger: error: "), err
    assert "Traceback" not in err
    return err


def small_ledger(directory: Path, n: int = 12) -> bytes:
    """A ledger of ``n`` pending entries in ``directory``: returns its log's bytes."""
    with Ledger(directory, clock=FakeClock()) as ledger:
        ledger.set_many(entry(f"spot-{i}", "era", "pending") for i in range(n))
    return (directory / "events.jsonl").read_bytes()


def seed(run_cli: Run) -> None:
    """Two entries through ``run_cli``: one ready, one failed with a long error (for table tests)."""
    run_cli("set", "colosseum", "rome-80ad", "--status", "generating", "--prompt", "Opening games")
    run_cli("set", "colosseum", "rome-80ad", "--status", "ready", "--local-path", "videos/c.mp4")
    run_cli("set", "petra", "nabataean", "--status", "generating", "--prompt", "Treasury")
    long_error = "RuntimeError: the model refused after 3 retries; quota exceeded for project 42 (region eu)"
    run_cli("fail", "petra", "nabataean", long_error)


@pytest.fixture
def run_cli(ledger_dir: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run the CLI in-process against ``ledger_dir``: returns (exit code, stdout, stderr)."""
    return lambda *argv: cli_in_process(capsys, "--dir", str(ledger_dir), *argv)


from hypothesis import HealthCheck, settings  # noqa: E402

# Real files make examples slow and uneven on a shared machine: no deadline. HYPOTHESIS_PROFILE=long
# runs many more examples (the long suites, see docs/guarantees.md).
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the crash, power-loss, fault and corruption suites at the size that produces the figures "
        "in docs/guarantees.md (tens of minutes)",
    )


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


class Tally:
    """Counters a suite reports at the end (printed with -s, collected into docs/guarantees.md)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def report(self) -> None:
        print(f"\n[{self.name}] " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--long", default=False):
        settings.load_profile("long")  # the property suites run 2,000 examples each
