"""A command that records only what it finds (claim, heartbeat, fail, requeue, reap, rebuild, policy shown,
checkpoint) at a directory with no ledger says so in one line and creates nothing: a mistyped ``--dir`` is
an error, not a new empty ledger. The commands that record what they are given (set, import, init, a new
policy) make one. ``Ledger(dir, create=False)`` is the library's side of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import NoLedgerError

from .conftest import cli_process, one_line_error

FINDERS = [
    ["claim"],
    ["heartbeat", "s", "e", "--attempt", "1"],
    ["fail", "s", "e", "boom"],
    ["requeue", "s", "e"],
    ["reap", "--older-than", "1h"],
    ["rebuild"],
    ["policy"],
]


@pytest.mark.parametrize("argv", FINDERS, ids=lambda a: a[0])
def test_a_command_that_records_only_what_it_finds_creates_no_ledger(tmp_path: Path, argv: list[str]) -> None:
    where = tmp_path / "typo" / "ledger"
    done = cli_process("--dir", str(where), *argv)
    assert done.returncode == 1, done
    assert (
        one_line_error(done.stderr)
        == f"video-ledger: error: no ledger at {where} (it holds no events.jsonl)\n"
    )
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    "argv",
    [["set", "s", "e", "--status", "pending", "--prompt", "p"], ["init"], ["policy", "--max-attempts", "4"]],
    ids=lambda a: a[0],
)
def test_a_command_that_records_what_it_is_given_makes_the_ledger(tmp_path: Path, argv: list[str]) -> None:
    where = tmp_path / "new" / "ledger"
    done = cli_process("--dir", str(where), *argv)
    assert done.returncode == 0, done.stderr
    assert (where / "events.jsonl").exists()


def test_ledger_create_false_opens_only_a_ledger_that_is_there(tmp_path: Path) -> None:
    with pytest.raises(NoLedgerError, match="no ledger at"):
        Ledger(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
    with Ledger(tmp_path / "made") as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "pending"})
    with Ledger(tmp_path / "made", create=False) as ledger:
        assert ledger.claim() is not None
