"""The files a ledger directory holds (``ledger.layout``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.demo import run_demo

from .conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def test_gitignore_covers_every_file_a_ledger_directory_holds(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    directory = tmp_path / "data"
    assert run_demo(directory, spots=2, eras=2, delay=(0.0, 0.01)).jobs == 4
    with (directory / "events.jsonl").open("ab") as f:
        f.write(b'{"torn')
    Ledger(directory).close()  # sets the torn tail aside
    names = {p.name for p in directory.iterdir()} | {
        "generated-videos.json.tmp-abc123",
        "checkpoint.json.tmp-x",
    }
    assert any(n.startswith("events.jsonl.torn-") for n in names)
    assert "events.jsonl.staged" in names
    names -= {"generated-videos.json", "videos"}  # the app's file ships; the demo writes videos elsewhere
    paths = [f"data/{name}" for name in sorted(names)]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *paths],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    not_ignored = [line.split("\t")[1] for line in result.stdout.splitlines() if line.startswith("::")]
    assert not_ignored == []
