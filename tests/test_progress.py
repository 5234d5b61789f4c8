"""Progress of ``rebuild``, ``verify``, ``stats`` and ``import`` on a terminal: one line on stderr rewritten
in place (records or entries done, a total where known, a rate), cleared before the result is printed;
nothing extra without a terminal, nor with ``--json``. The commands run as real processes, their stderr a
pseudo-terminal (``pty``) or a pipe; ``$VIDEO_LEDGER_PROGRESS_AFTER=0`` shows the progress at once where a
user sees it after a second."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

import tests.bench.bench_ledger as bench_ledger
from ledger import Ledger
from ledger.output import PROGRESS_AFTER_ENV

from .conftest import PYTHON, ROOT

CLEAR = "\r\x1b[K"
EVENTS = 20_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("progress") / "ledger"
    directory.mkdir()
    bench_ledger.write_log(directory / "events.jsonl", EVENTS, 100)
    with Ledger(directory) as ledger:
        ledger.rebuild()
    return directory


def _import_file(tmp_path: Path, n: int) -> Path:
    entries = [
        {
            "spotId": f"s{i}",
            "eraId": "e",
            "prompt": "p",
            "status": "pending",
            "createdAt": "2026-01-01T00:00:00Z",
        }
        for i in range(n)
    ]
    path = tmp_path / "import.json"
    path.write_text(json.dumps(entries))
    return path


def _run(argv: list[str], *, terminal: bool, after: str = "0") -> tuple[int, str, str]:
    """Run the CLI with stdout a pipe and stderr a pseudo-terminal (``terminal``) or a pipe."""
    env = {**os.environ, PROGRESS_AFTER_ENV: after}
    if not terminal:
        done = subprocess.run(
            [PYTHON, "-m", "ledger", *argv], cwd=ROOT, env=env, capture_output=True, text=True
        )
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [PYTHON, "-m", "ledger", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=slave
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed (EIO on Linux)
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = proc.communicate(timeout=120)[0]
    finally:
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("command", ["rebuild", "verify", "stats"])
def test_a_long_read_shows_records_and_a_rate_on_a_terminal_then_clears_it(big: Path, command: str) -> None:
    code, out, err = _run(["--dir", str(big), command], terminal=True)
    assert code == 0, err
    drawn = [piece for piece in err.split(CLEAR) if piece]
    assert drawn and all(piece.startswith(f"{command}: ") for piece in drawn), err
    assert all(" records, " in piece and piece.endswith("/s") for piece in drawn), drawn
    last = int(drawn[-1].split(": ", 1)[1].split(" ", 1)[0].replace(",", ""))
    assert 0 < last <= EVENTS
    assert err.endswith(CLEAR)  # cleared before the result: the terminal shows only the result
    assert out and CLEAR not in out


def test_import_shows_entries_checked_then_recorded_of_the_total(tmp_path: Path) -> None:
    source = _import_file(tmp_path, 3000)
    code, out, err = _run(["--dir", str(tmp_path / "d"), "import", str(source)], terminal=True)
    assert code == 0, err
    drawn = [piece for piece in err.split(CLEAR) if piece]
    assert drawn[0].startswith("import: checking: 1,024/3,000 entries (34%), ")
    assert "import: checking: 3,000/3,000 entries (100%), " in err
    assert drawn[-1].startswith("import: recording: 3,000/3,000 entries (100%), ")
    assert err.endswith(CLEAR) and out.startswith("imported 3000 entries")


@pytest.mark.parametrize(
    "argv",
    [["rebuild"], ["verify"], ["stats"], ["verify", "--json"], ["stats", "--json"]],
    ids=" ".join,
)
def test_without_a_terminal_or_with_json_nothing_extra_is_printed(big: Path, argv: list[str]) -> None:
    code, piped_out, err = _run(["--dir", str(big), *argv], terminal=False)
    assert code == 0 and err == "" and CLEAR not in piped_out
    if "--json" in argv:
        code, out, err = _run(["--dir", str(big), *argv], terminal=True)
        assert code == 0 and err == "" and json.loads(out).keys() == json.loads(piped_out).keys()


def test_a_quick_command_shows_nothing_before_the_threshold(big: Path) -> None:
    code, _, err = _run(["--dir", str(big), "verify"], terminal=True, after="600")
    assert code == 0 and err == ""
