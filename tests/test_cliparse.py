"""The command line's grammar (``ledger.cliparse``): where options go, suggestions for a mistyped word,
the flag a message names, range-checked numbers and paths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ledger.cli import main

from .conftest import ROOT, Run, cli_process, files_state, seed

pytestmark = pytest.mark.timeout(120)


NUMBER_CASES = [
        (["watch", "--step", "-5"], "argument --step: -5 is out of range: it must be between 1 and 60000"),
        (["watch", "--debounce", "-5"], "argument --debounce: -5 is out of range"),
        (["watch", "--step", "1e9"], "argument --step: '1e9' is not a whole number"),
        (["reap", "--older-than", "99999999999d"], "99999999999d is out of range: it must be at most 36500d"),
        (["reap", "--older-than", "0s"], "'0s' is not a duration"),
        (["reap", "--older-than", "-1h"], "--older-than: -1h is out of range: it must be more than 0"),
        (["reap", "--older-than=-1h"], "--older-than: -1h is out of range: it must be more than 0"),
        (["verify", "--expect-head", "-1:abc"], "a head is SEQ:HASH (an event's seq, a colon"),
        (["verify", "--expect-head=-1:abc"], "a head is SEQ:HASH (an event's seq, a colon"),
        (["wait", "--seq", "-1"], "argument --seq: -1 is out of range: it must be at least 1"),
        (["wait", "--seq", "0"], "argument --seq: 0 is out of range: it must be at least 1"),
        (["wait", "--seq", "1", "--timeout", "nan"], "argument --timeout: 'nan' is not a finite number"),
        (["wait", "--seq", "1", "--timeout", "-1"], "argument --timeout: -1 is out of range"),
        (["wait", "--seq", "1", "--timeout", "inf"], "'inf' is not a finite number"),
        (["snapshot", "--seq", "-3"], "argument --seq: -3 is out of range: it must be at least 0"),
        (["history", "--since-seq", "-2"], "argument --since-seq: -2 is out of range"),
        (["demo", "--fail-rate", "nan"], "argument --fail-rate: 'nan' is not a finite number"),
        (["demo", "--fail-rate", "1.5"], "--fail-rate: 1.5 is out of range: it must be between 0 and 1"),
        (["demo", "--spots", "99"], "argument --spots: 99 is out of range: it must be between 1 and 14"),
        (["demo", "--eras", "0"], "argument --eras: 0 is out of range: it must be between 1 and 6"),
]  # fmt: skip


def test_ledger_options_go_before_or_after_the_command(ledger_dir: Path, run_cli: Run) -> None:
    seed(run_cli)
    code, before, _ = run_cli("list", "--json")
    assert code == 0
    assert main(["list", "--dir", str(ledger_dir), "--json"]) == 0
    result = cli_process("list", "--json", "--dir", str(ledger_dir))
    assert (result.returncode, result.stdout) == (0, before)
    elsewhere = ledger_dir.parent / "app.json"
    result = cli_process("rebuild", "--dir", str(ledger_dir), "--snapshot", str(elsewhere))
    assert result.returncode == 0, result.stderr
    assert elsewhere.read_text() == before
    # after the command wins over before it
    result = cli_process("--dir", "/nonexistent/nowhere", "list", "--json", "--dir", str(ledger_dir))
    assert (result.returncode, result.stdout) == (0, before)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lsit"], "did you mean 'list'? (see video-ledger --help)"),
        (["histroy"], "did you mean 'history'?"),
        (["list", "--stauts", "ready"], "video-ledger list: error: unrecognized arguments: --stauts ready; "
         "did you mean '--status'? (see video-ledger list --help)"),
        (["set", "s", "e", "--status", "redy"], "did you mean 'ready'? (see video-ledger set --help)"),
        (["list", "--jsno"], "did you mean '--json'?"),
        (["wait"], "the following arguments are required: --seq (see video-ledger wait --help)"),
    ],
)  # fmt: skip
def test_a_mistyped_command_or_option_gets_a_suggestion_and_its_help(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-q", "set", "s", "e", "--status", "pending", "--prompt", "p"],
         "video-ledger: error: -q is an option of 'set': put it after the command: video-ledger set -q … "
         "(see video-ledger set --help)"),
        (["--json", "list"], "--json is an option of 'list': put it after the command: "
         "video-ledger list --json …"),
        (["--status", "ready", "list"], "--status is an option of 'list': put it after the command"),
        (["--older-than=2h", "reap"], "--older-than is an option of 'reap': put it after the command: "
         "video-ledger reap --older-than …"),
        (["--snapshot", "list", "--csv", "list"], "--csv is an option of 'list'"),
        (["list", "--version"], "video-ledger list: error: --version is an option of video-ledger itself: "
         "put it before the command: video-ledger --version list … (see video-ledger --help)"),
        (["--bogus", "list"], "video-ledger list: error: unrecognized arguments: --bogus (see"),
        (["list", "-q"], "video-ledger list: error: unrecognized arguments: -q (see"),
    ],
)  # fmt: skip
def test_an_option_on_the_wrong_side_of_the_command_says_where_it_goes(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "ledger"
    out, err = io.StringIO(), io.StringIO()
    assert main(["--dir", str(directory), *argv], out=out, err=err) == 2
    assert len(err.getvalue().splitlines()) == 1
    assert message in err.getvalue()
    assert out.getvalue() == "" and capsys.readouterr() == ("", "")
    assert not directory.exists(), "nothing was written"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set", "s", "e", "--status", "ready", "--prompt", "p"], "needs --local-path"),
        (["set", "s", "e", "--status", "failed", "--prompt", "p"], "needs --error"),
        (
            ["set", "s", "e", "--status", "pending", "--prompt", "p", "--error", "x"],
            "--error is only allowed",
        ),
        (["set", "s", "", "--status", "pending", "--prompt", "p"], "invalid ERA"),
        (["demo", "--workers", "0"], "argument --workers: 0 is out of range: it must be between 1 and 64"),
    ],
)
def test_messages_name_the_flag_a_user_types(run_cli: Run, argv: list[str], message: str) -> None:
    code, _, err = run_cli(*argv)
    assert code == 2
    assert message in err
    assert "localPath" not in err


@pytest.mark.parametrize(("argv", "message"), NUMBER_CASES)
def test_every_number_is_range_checked(run_cli: Run, ledger_dir: Path, argv: list[str], message: str) -> None:
    run_cli("set", "s", "e", "--status", "pending", "--prompt", "p")
    before = files_state(ledger_dir)
    code, out, err = run_cli(*argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert message in err
    assert files_state(ledger_dir) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["--dir", "", "set", "s", "e", "--status", "pending", "--prompt", "p"],
        ["set", "s", "e", "--status", "pending", "--prompt", "p", "--dir="],
        ["--snapshot", "", "set", "s", "e", "--status", "pending", "--prompt", "p"],
    ],
    ids=["dir-before", "dir-after", "snapshot"],
)
def test_an_empty_path_is_refused_not_taken_as_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """``--dir "$DIR"`` with DIR unset created a ledger in the current directory and recorded there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIDEO_LEDGER_DIR", str(tmp_path / "data"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "an empty path names no ledger" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["events.jsonl", "checkpoint.json", "events.jsonl.sync.lock"])
def test_a_snapshot_path_naming_the_ledgers_own_file_is_refused(
    run_cli: Run, ledger_dir: Path, name: str
) -> None:
    """``--snapshot DIR/events.jsonl`` made a writer replace the event log with a JSON array (the log's
    bytes kept only as events.jsonl.replaced-...; every later command then said the log was damaged)."""
    run_cli("set", "s", "e", "--status", "pending", "--prompt", "p")
    before = files_state(ledger_dir)
    for argv in (["set", "s", "f", "--status", "pending", "--prompt", "p"], ["watch"], ["list"]):
        code, out, err = run_cli("--snapshot", str(ledger_dir / name), *argv)
        assert (code, out) == (2, ""), err
        lines = err.splitlines()[1:] if argv == ["watch"] else err.splitlines()  # after "watching DIR"
        assert len(lines) == 1 and f"would be a ledger's own {name}" in lines[0], err
    assert files_state(ledger_dir) == before


def test_bad_input_md_lists_every_number_case() -> None:
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    for argv, _ in NUMBER_CASES:
        shown = " ".join(argv).replace("--seq 1 --timeout", "--timeout")
        assert f"| `{shown}` | exit 2: " in doc, shown


def test_range_errors_from_a_real_process_are_one_line() -> None:
    for argv in (
        ["watch", "--step", "-5"],
        ["reap", "--older-than", "99999999999d"],
        ["wait", "--seq", "-1"],
    ):
        result = cli_process(*argv)
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.stderr
