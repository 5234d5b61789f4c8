"""The command line as a user of git, jq or sqlite-utils expects it, and its bad numbers, permission
errors and interrupts: in-process ``main(argv)`` and real processes."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.demo import run_demo
from ledger.errors import InvalidEntryError
from ledger.schema import documents as schema_documents

from .conftest import ROOT, files_state

Run = Callable[..., tuple[int, str, str]]
pytestmark = pytest.mark.timeout(120)


def cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def seed(run_cli: Run) -> None:
    run_cli("set", "colosseum", "rome-80ad", "--status", "generating", "--prompt", "Opening games")
    run_cli("set", "colosseum", "rome-80ad", "--status", "ready", "--local-path", "videos/c.mp4")
    run_cli("set", "petra", "nabataean", "--status", "generating", "--prompt", "Treasury")
    long_error = "RuntimeError: the model refused after 3 retries; quota exceeded for project 42 (region eu)"
    run_cli("fail", "petra", "nabataean", long_error)


# -- 1. --version ---------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"video-ledger \S+\n", capsys.readouterr().out)
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("video-ledger ")


# -- 2. global options in either place, did you mean, help pointers -------------------------------------


def test_ledger_options_go_before_or_after_the_command(ledger_dir: Path, run_cli: Run) -> None:
    seed(run_cli)
    code, before, _ = run_cli("list", "--json")
    assert code == 0
    assert main(["list", "--dir", str(ledger_dir), "--json"]) == 0
    result = cli("list", "--json", "--dir", str(ledger_dir))
    assert (result.returncode, result.stdout) == (0, before)
    elsewhere = ledger_dir.parent / "app.json"
    result = cli("rebuild", "--dir", str(ledger_dir), "--snapshot", str(elsewhere))
    assert result.returncode == 0, result.stderr
    assert elsewhere.read_text() == before
    # after the command wins over before it
    result = cli("--dir", "/nonexistent/nowhere", "list", "--json", "--dir", str(ledger_dir))
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


# -- 3. history --follow with filters -------------------------------------------------------------------


def test_history_follow_combines_with_the_filters(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    writer = Ledger(directory)
    writer.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
    argv = ["--dir", str(directory), "history", "s", "e", "--follow", "--type", "failed", "--json"]
    with subprocess.Popen(
        [sys.executable, "-m", "ledger", *argv],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as follower:  # fmt: skip
        assert follower.stdout is not None and follower.stderr is not None
        assert "caught up at event 1" in follower.stderr.readline()
        writer.mark_video_failed("s", "e", "boom")  # 2: shown
        writer.set_video_metadata({"spotId": "t", "eraId": "e", "prompt": "p", "status": "generating"})
        writer.mark_video_failed("t", "e", "other entry")  # 4: another entry
        writer.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
        writer.mark_video_failed("s", "e", "again")  # 6: shown
        got = [json.loads(follower.stdout.readline()) for _ in range(2)]
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=20)
    assert follower.returncode == 0
    assert [(e["seq"], e["error"]) for e in got] == [(2, "boom"), (6, "again")]


def test_history_follow_finds_an_id_given_in_another_unicode_form_as_history_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``history`` and ``history --follow`` are one filter: an id typed decomposed (``cafe`` and a
    combining accent) finds the entry stored in NFC (``café``) both ways, and no other entry's events."""
    directory = tmp_path / "ledger"
    writer = Ledger(directory)
    writer.set_video_metadata({"spotId": "caf\u00e9", "eraId": "e", "prompt": "p", "status": "generating"})
    writer.set_video_metadata({"spotId": "cafe", "eraId": "e", "prompt": "p", "status": "generating"})
    writer.mark_video_failed("caf\u00e9", "e", "boom")
    typed = ["history", "cafe\u0301", "e", "--since-seq", "0", "--json"]
    assert main(["--dir", str(directory), *typed]) == 0
    printed = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert printed == [1, 3]
    with subprocess.Popen(
        [sys.executable, "-m", "ledger", "--dir", str(directory), *typed, "--follow"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as follower:  # fmt: skip
        assert follower.stdout is not None and follower.stderr is not None
        assert "caught up at event 3" in follower.stderr.readline()
        writer.mark_video_failed("cafe", "e", "another entry")  # 4: not shown
        writer.set_video_metadata(
            {"spotId": "caf\u00e9", "eraId": "e", "prompt": "p", "status": "generating"}
        )
        data, deadline = b"", time.monotonic() + 30  # three lines, or the follower missed one
        while data.count(b"\n") < 3 and time.monotonic() < deadline:
            if select.select([follower.stdout], [], [], 1)[0]:
                data += os.read(follower.stdout.fileno(), 65536) or b"\n\n\n"
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=20)
    assert follower.returncode == 0
    assert [json.loads(line)["seq"] for line in data.splitlines() if line] == [1, 3, 5]


# -- 4. tables: full when piped, fit to a terminal, --wide; --json and --csv ----------------------------


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


# -- 5. set prints the seq it recorded ------------------------------------------------------------------


def test_set_prints_the_seq_it_recorded_for_wait(run_cli: Run) -> None:
    code, out, _ = run_cli("set", "s", "e", "--status", "generating", "--prompt", "p")
    assert (code, out.splitlines()[-1]) == (0, "recorded event 1")
    code, out, _ = run_cli("set", "s", "e", "--status", "generating")
    assert out.splitlines()[-1] == "nothing recorded: s/e already is generating"
    assert run_cli("set", "s", "e", "--status", "ready", "--local-path", "v.mp4", "--quiet") == (0, "", "")
    assert run_cli("fail", "s", "e", "late", "-q")[0] == 2  # a ready entry has no running attempt
    code, out, _ = run_cli("wait", "--seq", "2", "--timeout", "5")
    assert (code, out) == (0, "the snapshot includes event 2\n")


# -- 6. the demo's counter and the README's sample ------------------------------------------------------


def test_the_demo_counts_finished_jobs_and_prints_what_the_readme_shows(
    ledger_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(ledger_dir)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    progress = [line for line in lines if line.startswith("[")]
    counters = [line[1:7] for line in progress if not line.startswith("[ retry]")]
    assert counters == [f"{n:>3}/12" for n in range(1, 13)], "each finished job once, in order"
    retries = [line for line in progress if line.startswith("[ retry]")]
    assert all("attempt 1: failed" in line for line in retries)

    readme = (ROOT / "README.md").read_text()
    sample = re.search(r"^```text\n(.*?)^```", readme, re.S | re.M)
    assert sample is not None
    times = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

    def shape(line: str) -> str:  # what differs between runs: times, the counter, the seconds, the head
        line = times.sub("TIME", line)
        line = re.sub(r"^head: (\d+):[0-9a-f]{64}$", r"head: \1:HASH", line)
        line = re.sub(r"^\[ *\d+/12\]", "[N/12]", line)
        return re.sub(r"in \d+\.\d s", "in S s", line).rstrip()

    printed = {shape(line) for line in lines}
    for line in sample.group(1).splitlines():
        if line != "...":
            assert shape(line) in printed, f"README shows a line the demo does not print: {line!r}"


# -- 7. import: dropped fields, original times ----------------------------------------------------------


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


# -- 8. messages name the flags -------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1, not 0"),
        ({"fail_rate": float("nan")}, "--fail-rate must be between 0 and 1, not nan"),
        ({"spots": 0}, "--spots must be between 1 and 14, not 0"),
    ],
)
def test_the_demo_names_only_what_is_wrong(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidEntryError) as info:
        run_demo(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert not tmp_path.joinpath("events.jsonl").exists()


# -- 9. packaging ---------------------------------------------------------------------------------------


def test_license_and_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    for kind in ("event", "snapshot"):
        assert main(["schema", kind]) == 0
        printed = capsys.readouterr().out.encode()
        assert printed == schema_documents()[f"{kind}.schema.json"]
        assert printed == (ROOT / "docs" / "schema" / f"{kind}.schema.json").read_bytes()
    result = cli("schema", "snapshot")
    assert json.loads(result.stdout)["title"] == "GeneratedVideosJson"


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


def test_docs_link_only_to_files_in_the_repository() -> None:
    link = re.compile(r"\]\(([^)#\s]+)")
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target in link.findall(text):
            if re.match(r"https?://", target):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name} links to {target}"
        assert "../shared" not in text, f"{doc.name} points outside the repository"


# -- 10. shell completion -------------------------------------------------------------------------------


def _complete(script: str, *words: str) -> list[str]:
    line = " ".join(words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _video_ledger; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_completes_commands_options_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o default -F _video_ledger video-ledger" in script
    assert _complete(script, "video-ledger", "hi") == ["history"]
    assert sorted(_complete(script, "video-ledger", "--dir", "x", "wa")) == ["wait", "watch"]
    assert _complete(script, "video-ledger", "set", "s", "e", "--sta") == ["--status"]
    assert _complete(script, "video-ledger", "set", "s", "e", "--st") == ["--store", "--status"]
    assert _complete(script, "video-ledger", "list", "--status", "") == [
        "pending",
        "generating",
        "ready",
        "failed",
    ]
    assert _complete(script, "video-ledger", "schema", "") == ["event", "snapshot"]
    assert "--older-than" in _complete(script, "video-ledger", "reap", "--")


def test_zsh_completion_is_bash_s_through_bashcompinit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert "autoload -U +X bashcompinit && bashcompinit" in script
    assert "_video_ledger()" in script
    if shutil.which("zsh"):
        result = subprocess.run(["zsh", "-fc", script], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_the_readme_documents_completion() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "video-ledger completion bash" in readme
    assert "video-ledger completion zsh" in readme


# -- every number range-checked -------------------------------------------------------------------------


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
        result = cli(*argv)
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.stderr


# -- permission denied ----------------------------------------------------------------------------------


def _as_another_user(directory: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """A runner of Python (``run("-m", "ledger", ...)``) for which ``directory`` is unreachable: as root, a
    system Python of this version as user 65534 with the directory mode 700; otherwise ourselves with the
    directory mode 000."""

    def python(executable: str, **kwargs: object) -> Callable[..., subprocess.CompletedProcess[str]]:
        return lambda *args: subprocess.run(
            [executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
            **kwargs,  # type: ignore[call-overload]
        )  # fmt: skip

    if os.geteuid() != 0:
        directory.chmod(0o000)
        return python(sys.executable)
    directory.chmod(0o700)
    system = Path("/usr/bin/python3")
    version = subprocess.run(
        [str(system), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip() if system.exists() else ""  # fmt: skip
    if version != str(sys.version_info[:2]):
        pytest.skip("running as root with no system Python of this version to run as another user")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", "PATH": "/usr/bin:/bin"}
    return python(str(system), user=65534, env=env)


@pytest.mark.parametrize(
    "argv",
    [
        ["set", "s", "e", "--status", "generating", "--prompt", "p"],
        ["rebuild"],
        ["reap", "--older-than", "1s"],
        ["import", str(ROOT / "data" / "generated-videos.json")],  # readable and valid: the directory is not
        ["demo", "--spots", "1", "--eras", "1"],
        ["wait", "--seq", "1", "--timeout", "1"],
        ["list"],
    ],
    ids=lambda argv: argv[0],
)
def test_permission_denied_is_one_line_exit_1(tmp_path: Path, argv: list[str]) -> None:
    locked = tmp_path / "locked"
    Ledger(locked / "ledger").close()
    run = _as_another_user(locked)
    try:
        for directory in (locked / "ledger", locked / "new"):
            result = run("-m", "ledger", "--dir", str(directory), *argv)
            assert result.returncode == 1, result.stderr
            assert result.stderr.startswith("video-ledger: error: cannot "), result.stderr
            said = "" if argv[0] in ("wait", "list") else "; nothing was recorded"  # a write's open refused
            assert result.stderr.endswith(f": Permission denied{said}\n"), result.stderr
            assert len(result.stderr.splitlines()) == 1
    finally:
        locked.chmod(0o755)


def test_permission_denied_is_a_ledger_io_error_in_the_library(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    Ledger(locked / "ledger").close()
    run = _as_another_user(locked)
    where = str(locked / "ledger")
    code = (
        "from ledger import Ledger, LedgerIOError\n"
        "from ledger.watch import wait_for_seq\n"
        f"for call in (lambda: Ledger({where!r}), lambda: wait_for_seq({where!r}, 1, timeout=1)):\n"
        "    try:\n        call()\n"
        "    except LedgerIOError as exc:\n        print(type(exc).__name__, exc.errno)\n"
    )
    try:
        result = run("-c", code)
    finally:
        locked.chmod(0o755)
    assert result.stdout == "LedgerIOError 13\nLedgerIOError 13\n", result.stderr


# -- Ctrl-C and SIGTERM on demo -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "group", "code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143), (signal.SIGINT, False, 130)],
    ids=["ctrl-c-to-the-group", "sigterm-to-the-demo", "sigint-to-the-demo-only"],
)
def test_interrupting_the_demo_stops_its_workers_promptly(
    tmp_path: Path, sig: signal.Signals, group: bool, code: int
) -> None:
    directory = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger", "demo", "--dir", str(directory), "--spots", "14", "--eras", "6"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as from a terminal: a suite started in the background (`&`, nohup) passes SIGINT on ignored, and
        # an ignored signal stays ignored across exec, so the demo would rightly run on
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("[")  # a job finished: the workers are at work
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C does: to every process of the group
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == code
    assert took < 5, f"the workers ran on for {took:.1f} s"
    assert re.fullmatch(
        rf"video-ledger: interrupted by {sig.name}: stopped the workers; \d running attempt\(s\) recorded "
        r"as failed, \d+ of 84 jobs finished\n",
        err,
    ), err
    with Ledger(directory, readonly=True) as ledger:
        entries = ledger.get_all_video_metadata()
        assert ledger.verify().ok
    assert [e for e in entries if e.status == "generating"] == []
    interrupted = [e for e in entries if e.error == "interrupted by SIGTERM"]
    assert 1 <= len(interrupted) <= 2
    assert any(e.status == "pending" for e in entries), "stopped before every queued job was claimed"


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
