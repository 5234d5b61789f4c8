"""What the command line prints (``ledger.output``): tables piped and on a terminal, --json, --csv and
--tsv, plurals."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Run, seed

pytestmark = pytest.mark.timeout(120)


def test_piped_tables_print_every_cell_in_full(run_cli: Run) -> None:
    seed(run_cli)
    code, out, _ = run_cli("list")
    assert code == 0
    assert "quota exceeded for project 42 (region eu)" in out, "the distinguishing end of the error"
    assert "…" not in out
    code, out, _ = run_cli("history", "petra", "nabataean")
    assert "(region eu)'" in out


def _on_a_terminal(ledger_dir: Path, *args: str, columns: int = 80) -> list[str]:
    """Run the CLI with stdout on a pseudo-terminal ``columns`` wide; returns its lines."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--dir", str(ledger_dir), *args],
        cwd=ROOT, stdout=terminal, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


def test_on_a_terminal_tables_fit_its_width_and_wide_prints_them_in_full(
    run_cli: Run, ledger_dir: Path
) -> None:
    seed(run_cli)
    lines = _on_a_terminal(ledger_dir, "list", columns=80)
    assert len(lines) == 3
    assert all(len(line) < 80 for line in lines), lines
    assert "…" in lines[2]
    assert lines[2].startswith("petra")
    wide = _on_a_terminal(ledger_dir, "list", "--wide", columns=80)
    assert "quota exceeded for project 42 (region eu)" in wide[2]
    assert max(len(line) for line in wide) > 80


def test_json_on_every_command_that_prints_data(run_cli: Run, ledger_dir: Path) -> None:
    seed(run_cli)
    code, out, _ = run_cli("timeline", "petra", "nabataean", "--json")
    story = json.loads(out)
    assert (code, story["spotId"], story["attempts"][0]["outcome"]) == (0, "petra", "failed")
    code, out, _ = run_cli("verify", "--json")
    found = json.loads(out)
    assert (code, found["ok"], found["events"], found["checkpointSeq"]) == (0, True, 4, 4)
    code, out, _ = run_cli("stats", "--json")
    assert (code, json.loads(out)["entries"]) == (0, 2)
    run_cli("set", "akropolis", "athens", "--status", "generating", "--prompt", "p")
    code, out, _ = run_cli("reap", "--older-than", "1s", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = run_cli("set", "akropolis", "athens", "--status", "failed", "--error", "x", "--json")
    written = json.loads(out)
    assert (written["seq"], written["entry"]["status"]) == (6, "failed")
    (ledger_dir / "events.jsonl").write_bytes(
        (ledger_dir / "events.jsonl").read_bytes().replace(b"Treasury", b"Treasurx")
    )
    code, out, _ = run_cli("verify", "--json")
    found = json.loads(out)
    assert (code, found["ok"], found["line"]) == (1, False, 3)


def test_csv_on_list_and_history(run_cli: Run) -> None:
    seed(run_cli)
    code, out, _ = run_cli("list", "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0
    header = ["spotId", "eraId", "prompt", "localPath", "status", "createdAt", "completedAt", "error"]
    assert rows[0] == [*header, "updatedAt", "attempt"]  # a column per member of the snapshot
    snapshot = json.loads(run_cli("list", "--json")[1])
    assert [dict(zip(rows[0], r, strict=True)) for r in rows[1:]] == [
        {k: str(e.get(k, "")) for k in rows[0]} for e in snapshot
    ]
    assert rows[2][0] == "petra" and rows[2][7].endswith("(region eu)")
    code, tsv, _ = run_cli("list", "--tsv")
    assert list(csv.reader(io.StringIO(tsv), delimiter="\t")) == rows
    assert run_cli("list", "--csv", "--tsv")[0] == 2
    code, out, _ = run_cli("history", "--csv", "--type", "failed")
    rows = list(csv.reader(io.StringIO(out)))
    assert [r[2] for r in rows] == ["event", "failed"]
    assert rows[1][5].startswith("error=RuntimeError")


def test_counts_are_said_with_their_plural(run_cli: Run) -> None:
    run_cli("set", "s", "e", "--status", "generating", "--prompt", "p")
    assert run_cli("verify")[1].startswith("ok: 1 event, 1 entry, chain intact")
    assert run_cli("stats")[1].startswith("1 event, 1 entry\n")
    run_cli("set", "t", "e", "--status", "generating", "--prompt", "p")
    assert run_cli("verify")[1].startswith("ok: 2 events, 2 entries, chain intact")


def test_tsv_is_one_line_per_entry_with_its_breaks_escaped(run_cli: Run) -> None:
    run_cli("set", "a", "e", "--status", "generating", "--prompt", "line1\tTAB\nline2 \\ end", "-q")
    code, out, _ = run_cli("list", "--tsv")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and '"' not in out
    row = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=True))
    assert row["prompt"] == "line1\\tTAB\\nline2 \\\\ end"
