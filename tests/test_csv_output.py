"""CSV and TSV output never hands a spreadsheet a formula: a value starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return gets a leading ``'`` (OWASP's advice on CSV injection); every other value is
written as it is."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.output import unformula, write_csv

from .conftest import FakeClock, entry

RISKY = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tlead", "\rlead"]
PLAIN = ["plain", "a=b", "1-2", "", "'quoted"]


@pytest.mark.parametrize("value", RISKY)
def test_a_value_a_spreadsheet_would_run_gets_a_quote_in_front(value: str) -> None:
    assert unformula(value) == "'" + value


@pytest.mark.parametrize("value", PLAIN)
def test_any_other_value_is_written_as_it_is(value: str) -> None:
    assert unformula(value) == value


def test_csv_and_tsv_quote_each_risky_cell_and_keep_the_header() -> None:
    rows = [[v, "ok"] for v in RISKY + PLAIN]
    out = io.StringIO()
    write_csv(["a", "b"], rows, out)
    back = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert back[0] == ["a", "b"]
    assert [r[0] for r in back[1:]] == ["'" + v for v in RISKY] + PLAIN
    tsv = io.StringIO()
    write_csv(["a", "b"], rows, tsv, delimiter="\t")
    lines = tsv.getvalue().splitlines()
    assert lines[0] == "a\tb"
    firsts = [line.split("\t")[0] for line in lines[1:]]
    assert firsts[:4] == ["'" + v for v in RISKY[:4]]
    assert firsts[4:6] == ["'\\tlead", "'\\rlead"]  # the quote, then the escape
    assert firsts[6:] == PLAIN


def test_list_csv_and_tsv_and_history_csv_defuse_a_formula_in_the_ledger(
    ledger_dir: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    with Ledger(ledger_dir, clock=FakeClock()) as ledger:
        prompt = "=cmd|' /C calc'!A0"
        for status in ("pending", "generating"):
            ledger.set_video_metadata(entry("colosseum", "rome", status=status, prompt=prompt))
        failed = entry("colosseum", "rome", status="failed", prompt=prompt, error="@SUM(1+1)")
        ledger.set_video_metadata(failed)
        ledger.set_video_metadata(entry("=evil", "+era", status="pending", prompt="-prompt"))
    code, out, _ = run_cli("list", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_spot = {row["spotId"]: row for row in rows}
    assert by_spot["colosseum"]["error"] == "'@SUM(1+1)"
    assert by_spot["colosseum"]["prompt"] == "'=cmd|' /C calc'!A0"
    assert by_spot["'=evil"]["eraId"] == "'+era" and by_spot["'=evil"]["prompt"] == "'-prompt"
    assert by_spot["colosseum"]["status"] == "failed"  # the rest as it is
    code, out, _ = run_cli("list", "--tsv")
    assert code == 0
    assert out.splitlines()[1].startswith("'=evil\t'+era\t")
    code, out, _ = run_cli("history", "--csv")
    assert code == 0
    history = list(csv.DictReader(io.StringIO(out)))
    assert [row["spotId"] for row in history] == ["colosseum"] * 3 + ["'=evil"]
    assert history[-1]["eraId"] == "'+era"
    assert not any(value.startswith(("=", "+", "-", "@")) for row in history for value in row.values())
