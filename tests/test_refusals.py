"""A write the ledger refuses leaves every file as it was, and its error says whether anything was recorded.

Refused changes (exit 2) with the snapshot behind the log; snapshot paths the ledger cannot take (named like
its own temp files, ``/dev/null``, a FIFO); a lock file it may not open; an error in doubt.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import (
    ClockSkewError,
    DurabilityError,
    IllegalTransitionError,
    InvalidEntryError,
    Ledger,
    LedgerIOError,
)
from ledger.backend import Decide, Head
from ledger.cli import main
from ledger.memory import MemoryStore

from .conftest import ROOT, FakeClock, entry, recent_clock


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``directory`` with its bytes and its modification time (ns)."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir()) if p.is_file()
    }


@pytest.fixture
def behind(tmp_path: Path) -> Path:
    """A ledger whose snapshot and checkpoint are two events behind its log (a deferred writer's)."""
    directory = tmp_path / "ledger"
    with Ledger(directory, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    with Ledger(directory, clock=recent_clock(), projection="deferred") as ledger:
        ledger.set_video_metadata(entry(status="ready"))
        ledger.set_video_metadata(entry("acropolis", "athens", status="pending"))
    return directory


REFUSED_CLI = {
    "illegal": ["set", "acropolis", "athens", "--status", "failed", "--error", "x"],  # pending: not failed
    "attempt": ["set", "acropolis", "athens", "--status", "ready", "--local-path", "v.mp4"],
    "invalid": ["set", "new", "entry", "--status", "pending"],  # a new entry needs a prompt
}


@pytest.mark.parametrize("case", list(REFUSED_CLI))
def test_a_refused_change_leaves_every_file_as_it_was_with_the_snapshot_behind(
    behind: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(behind)
    assert main(["--dir", str(behind), *REFUSED_CLI[case]]) == 2, capsys.readouterr().err
    assert _files(behind) == before


def test_a_refused_change_in_the_library_leaves_every_file_as_it_was(behind: Path) -> None:
    before = _files(behind)
    with Ledger(behind, clock=recent_clock()) as ledger:
        with pytest.raises(IllegalTransitionError):
            ledger.set_video_metadata(entry("acropolis", "athens", status="failed"))
        with pytest.raises(InvalidEntryError):
            ledger.update_entry("new", "entry", "pending")
    far = FakeClock(dt.datetime.now(dt.UTC) + dt.timedelta(days=40))
    with Ledger(behind, clock=far) as ledger, pytest.raises(ClockSkewError):
        ledger.set_video_metadata(entry("acropolis", "athens", status="generating"))
    assert _files(behind) == before
    with Ledger(behind, clock=recent_clock()) as ledger:  # the next change that is recorded catches up
        ledger.set_video_metadata(entry("acropolis", "athens", status="generating"))
    assert Ledger(behind, readonly=True).verify().snapshot_seq == 4


def test_a_snapshot_named_like_a_checkpoint_temp_file_is_refused_and_kept(
    behind: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The projector deletes ``checkpoint.json.tmp-*`` as a dead projector's leftovers: a snapshot of that
    name would be accepted and then deleted by the next write."""
    app = behind / "checkpoint.json.tmp-app"
    app.write_bytes(b"[]\n")
    before = _files(behind)
    with pytest.raises(InvalidEntryError, match="named like a temp file"):
        Ledger(behind, snapshot=app)
    argv = [
        "--dir",
        str(behind),
        "--snapshot",
        str(app),
        "set",
        "x",
        "y",
        "--status",
        "pending",
        "--prompt",
        "p",
    ]
    assert main(argv) == 2
    assert "named like a temp file of the ledger's checkpoint.json" in capsys.readouterr().err
    assert _files(behind) == before
    assert app.read_bytes() == b"[]\n"


def test_an_open_refused_for_the_snapshot_says_nothing_was_recorded(
    behind: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = behind.parent / "app.fifo"
    os.mkfifo(fifo)
    for target in (Path("/dev/null"), fifo):
        with pytest.raises(LedgerIOError, match=r"not a regular file.*; nothing was recorded$"):
            Ledger(behind, snapshot=target)
        argv = ["--dir", str(behind), "--snapshot", str(target)]
        assert main([*argv, "set", "x", "y", "--status", "pending", "--prompt", "p"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"video-ledger: error: cannot write {target}: it is "), err
        assert err.endswith("; nothing was recorded\n") and err.count("\n") == 1, err
    assert Ledger(behind, readonly=True).head().seq == 3


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory another user can reach (pytest's own temp directories are mode 700)."""
    with tempfile.TemporaryDirectory(prefix="ledger-lock-") as name:
        Path(name).chmod(0o755)
        yield Path(name)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """Python as user 65534 (root runs the tests) or as ourselves, with the ledger on its path."""
    if os.geteuid() != 0:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    system = Path("/usr/bin/python3")
    version = subprocess.run(
        [str(system), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip() if system.exists() else ""  # fmt: skip
    if version != str(sys.version_info[:2]):
        pytest.skip("running as root with no system Python of this version to run as another user")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(system), *args], capture_output=True, text=True, cwd=ROOT, timeout=60, user=65534, env=env
    )


LIBRARY = """
import sys
from ledger import Ledger, LedgerIOError
try:
    Ledger(sys.argv[1]).set_video_metadata({"spotId": "x", "eraId": "y", "prompt": "p", "status": "pending"})
except LedgerIOError as exc:
    print(exc)
"""


@pytest.mark.parametrize("lock", ["events.jsonl.lock", "snapshot.lock"])
def test_a_lock_file_that_may_not_be_opened_says_nothing_was_recorded(reachable: Path, lock: str) -> None:
    directory = reachable / "ledger"
    with Ledger(directory, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry(status="generating"))
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)
    (directory / lock).chmod(0o600 if os.geteuid() == 0 else 0o000)  # root owns it; 65534 may not open it
    before = _files(directory)
    cli = _as_nobody(
        "-m", "ledger", "--dir", str(directory), "set", "x", "y", "--status", "pending", "--prompt", "p"
    )
    assert cli.returncode == 1, cli.stderr
    assert cli.stderr.startswith("video-ledger: error: cannot "), cli.stderr
    assert cli.stderr.endswith(": Permission denied; nothing was recorded\n"), cli.stderr
    library = _as_nobody("-c", LIBRARY, str(directory))
    assert library.stdout.endswith(": Permission denied; nothing was recorded\n"), library
    assert _files(directory) == before


class _Failing(MemoryStore):
    """A memory store whose appends raise ``error`` (as a store whose connection broke would)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.armed = False

    def append(self, after: Head, decide: Decide) -> Head:
        if self.armed:
            raise self.error
        return super().append(after, decide)


def test_an_error_in_doubt_is_never_said_to_have_recorded_nothing(tmp_path: Path) -> None:
    doubt = DurabilityError("lost the connection after COMMIT was sent: the append may be recorded")
    store = _Failing(doubt)
    with Ledger(tmp_path / "host", store=store, clock=FakeClock()) as ledger:
        store.armed = True
        with pytest.raises(DurabilityError) as caught:
            ledger.set_video_metadata(entry(status="pending"))
    assert str(caught.value) == str(doubt) and "nothing was recorded" not in str(caught.value)


def test_an_error_before_anything_was_sent_says_nothing_was_recorded(tmp_path: Path) -> None:
    unsent = LedgerIOError("cannot reach the server")
    unsent.errno = errno.ECONNREFUSED
    store = _Failing(unsent)
    with Ledger(tmp_path / "host", store=store, clock=FakeClock()) as ledger:
        store.armed = True
        with pytest.raises(LedgerIOError, match=r"^cannot reach the server; nothing was recorded$"):
            ledger.set_video_metadata(entry(status="pending"))
