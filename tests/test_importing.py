"""Importing an app's JSON array (``ledger.importing``): from a file or standard input, and what it keeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Run

pytestmark = pytest.mark.timeout(120)


def test_import_warns_about_dropped_fields_and_reap_sees_the_original_times(
    run_cli: Run, tmp_path: Path
) -> None:
    legacy = tmp_path / "generated-videos.json"
    legacy.write_text(
        json.dumps(
            [
                {"spotId": "colosseum", "eraId": "rome", "prompt": "p", "status": "generating",
                 "createdAt": "2025-01-02T03:04:05Z", "thumbnail": "thumbs/c.png"},
                {"spotId": "petra", "eraId": "nabataean", "prompt": "p", "status": "ready",
                 "localPath": "videos/p.mp4", "createdAt": "2025-01-02T03:04:05Z",
                 "completedAt": "2025-01-02T03:09:05Z", "thumbnail": "thumbs/p.png", "durationSeconds": 8},
            ]
        )
    )  # fmt: skip
    code, out, err = run_cli("import", str(legacy))
    assert code == 0
    assert err == (
        "video-ledger: warning: dropped fields the ledger does not keep: "
        "thumbnail (2 entries), durationSeconds (1 entry)\n"
    )
    assert "imported 2 entries" in out
    code, out, _ = run_cli("reap", "--older-than", "1h")
    assert code == 0
    assert "reaped 1 entry stuck" in out
    assert "generating since 2025-01-02T03:04:05Z" in out
    code, out, _ = run_cli("get", "colosseum", "rome", "--json")
    assert json.loads(out)["status"] == "failed"


def test_import_dash_reads_standard_input(tmp_path: Path) -> None:
    legacy = [
        {"spotId": "petra", "eraId": "nabataean", "prompt": "p", "status": "ready", "localPath": "v/p.mp4",
         "createdAt": "2025-01-02T03:04:05Z", "completedAt": "2025-01-02T03:09:05Z"},
    ]  # fmt: skip
    run = [sys.executable, "-m", "ledger", "--dir", str(tmp_path / "d"), "import", "-"]
    done = subprocess.run(run, input=json.dumps(legacy), capture_output=True, text=True, cwd=ROOT, timeout=60)
    said = "imported 1 entry; 0 already in the ledger, left as they are\n"
    assert (done.returncode, done.stdout) == (0, said)
    refused = subprocess.run(run, input="[{", capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
