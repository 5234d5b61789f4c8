"""The command line: every command, its help, its exit codes, and one-line errors (in-process and real)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import _build_parser, main
from ledger.schema import documents as schema_documents
from ledger.stores import STORE_ENV

from .conftest import ROOT, Run, cli_in_process, cli_process, files_state
from .pg import require_psycopg

require_psycopg()


pytestmark = pytest.mark.timeout(120)


COMMANDS = [
    "set", "fail", "get", "list", "history", "rebuild", "verify", "reap", "import", "demo",
    "timeline", "snapshot", "stats", "watch", "wait", "schema", "completion", "init", "copy", "report",
    "status", "metrics", "provenance", "requeue",
    "claim", "heartbeat", "policy",
    "keygen", "checkpoint", "consistency", "prove", "verify-proof",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text
    assert f"video-ledger {command}" in text


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert command in text
    assert "VIDEO_LEDGER_DIR" in text


def test_a_pipeline_session(run_cli: Run, ledger_dir: Path) -> None:
    code, out, err = run_cli(
        "set", "colosseum", "rome-80ad", "--status", "generating", "--prompt", "Opening games"
    )
    assert (code, err) == (0, "")
    assert "generating" in out
    code, out, _ = run_cli("set", "colosseum", "rome-80ad", "--status", "ready", "--local-path", "v/c.mp4")
    assert code == 0
    assert run_cli("set", "akropolis", "athens", "--status", "generating", "--prompt", "Parthenon")[0] == 0
    assert run_cli("fail", "akropolis", "athens", "model timed out")[0] == 0

    code, out, _ = run_cli("get", "colosseum", "rome-80ad", "--json")
    assert code == 0
    item = json.loads(out)
    assert item["status"] == "ready"
    assert item["prompt"] == "Opening games", "the prompt is kept when --prompt is left out"

    code, out, _ = run_cli("list", "--json")
    assert out.encode() == (ledger_dir / "generated-videos.json").read_bytes()
    code, out, _ = run_cli("list", "--status", "failed")
    assert "akropolis" in out
    assert "colosseum" not in out
    assert "model timed out" in out

    code, out, _ = run_cli("history", "--json")
    assert out.encode() == (ledger_dir / "events.jsonl").read_bytes(), "stored lines exactly"
    code, out, _ = run_cli("history", "colosseum", "rome-80ad")
    assert out.splitlines()[0].split() == ["seq", "time", "event", "spotId", "eraId", "details"]
    assert len(out.splitlines()) == 3

    last = (ledger_dir / "events.jsonl").read_bytes().splitlines()[-1]
    assert run_cli("verify") == (
        0,
        "ok: 4 events, 2 entries, chain intact, snapshot matches the log at event 4\n"
        f"head: 4:{hashlib.sha256(last).hexdigest()}\n",
        "",
    )
    code, out, _ = run_cli("rebuild")
    assert code == 0
    assert "from 4 events (2 entries)" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["get", "nope", "never"], 1, "no entry for spotId='nope'"),
        (["set", "s", "e", "--status", "bogus"], 2, "invalid choice"),
        (["set", "s", "e", "--status", "ready", "--prompt", "p"], 2, "needs --local-path"),
        (
            ["set", "s", "e", "--status", "ready", "--prompt", "p", "--local-path", "x"],
            2,
            "a new entry can only",
        ),
        (["set", "s", "e", "--status", "pending"], 2, "--prompt is required"),
        (["set", "", "e", "--status", "pending", "--prompt", "p"], 2, "invalid SPOT"),
        (["fail", "s", "e", "boom"], 1, "no entry"),
        (["history", "only-spot"], 2, "both SPOT and ERA"),
        (["frobnicate"], 2, "invalid choice"),
        ([], 2, "required"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(
    run_cli: Run, ledger_dir: Path, argv: list[str], code: int, message: str
) -> None:
    Ledger(ledger_dir).close()  # an empty ledger (read-only commands refuse a directory without one)
    before = files_state(ledger_dir) if ledger_dir.exists() else {}
    got, out, err = run_cli(*argv)
    assert got == code, (out, err)
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err
    after = files_state(ledger_dir) if ledger_dir.exists() else {}
    assert {k: v for k, v in after.items() if k != "events.jsonl.lock"} == {
        k: v for k, v in before.items() if k != "events.jsonl.lock"
    } or not before


def test_corrupt_data_is_exit_1_and_verify_names_the_line(run_cli: Run, ledger_dir: Path) -> None:
    for status in ("generating", "ready"):
        run_cli("set", "s", "e", "--status", status, "--prompt", "p", "--local-path", "x")
    run_cli("set", "t", "e", "--status", "pending", "--prompt", "p")
    log = ledger_dir / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"ready"', b'"READY"')
    log.write_bytes(b"".join(lines))
    code, out, err = run_cli("verify")
    assert code == 1
    assert "line 2" in out
    for command in ("history", "rebuild"):  # both read every line (list trusts the checkpointed snapshot)
        code, out, err = run_cli(command)
        assert code == 1
        assert "line 2" in err
        assert len(err.splitlines()) == 1


def test_a_torn_tail_is_a_note_not_a_failure(run_cli: Run, ledger_dir: Path) -> None:
    run_cli("set", "s", "e", "--status", "pending", "--prompt", "p")
    with (ledger_dir / "events.jsonl").open("ab") as f:
        f.write(b'{"type":"gen')
    code, out, _ = run_cli("verify")
    assert code == 0
    assert "note: 12 bytes at the end of the log (from line 2)" in out


def test_real_process_runs(tmp_path: Path) -> None:
    env_dir = tmp_path / "from-env"
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "set", "s", "e", "--status", "pending", "--prompt", "p"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"VIDEO_LEDGER_DIR": str(env_dir), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (env_dir / "events.jsonl").exists()
    script = Path(sys.executable).parent / "video-ledger"
    if script.exists():  # the console script of an installed checkout
        result = subprocess.run(
            [str(script), "--dir", str(env_dir), "list", "--json"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)[0]["spotId"] == "s"
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "--dir", str(env_dir), "get", "x", "y"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "video-ledger: error: no entry for spotId='x' eraId='y'\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"video-ledger \S+\n", capsys.readouterr().out)
    result = cli_process("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("video-ledger ")


def test_set_prints_the_seq_it_recorded_for_wait(run_cli: Run) -> None:
    code, out, _ = run_cli("set", "s", "e", "--status", "generating", "--prompt", "p")
    assert (code, out.splitlines()[-1]) == (0, "recorded event 1")
    code, out, _ = run_cli("set", "s", "e", "--status", "generating")
    assert out.splitlines()[-1] == "nothing recorded: s/e already is generating"
    assert run_cli("set", "s", "e", "--status", "ready", "--local-path", "v.mp4", "--quiet") == (0, "", "")
    assert run_cli("fail", "s", "e", "late", "-q")[0] == 2  # a ready entry has no running attempt
    code, out, _ = run_cli("wait", "--seq", "2", "--timeout", "5")
    assert (code, out) == (0, "the snapshot includes event 2\n")


def test_license_and_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    for kind in ("event", "snapshot"):
        assert main(["schema", kind]) == 0
        printed = capsys.readouterr().out.encode()
        assert printed == schema_documents()[f"{kind}.schema.json"]
        assert printed == (ROOT / "docs" / "schema" / f"{kind}.schema.json").read_bytes()
    result = cli_process("schema", "snapshot")
    assert json.loads(result.stdout)["title"] == "GeneratedVideosJson"


def test_the_help_names_the_store_option_its_variable_init_and_copy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = cli_in_process(capsys, "--help")
    assert code == 0 and "--store STORE" in out and STORE_ENV in out
    assert "init" in out and "copy" in out
    code, out, _ = cli_in_process(capsys, "init", "--help")
    assert code == 0 and "--app-role ROLE" in out and "video-ledger --store postgresql://" in out
    code, out, _ = cli_in_process(capsys, "copy", "--help")
    assert code == 0 and "--from SRC" in out and "--to DST" in out and "video-ledger copy --from" in out
