"""Every command of the command line over a PostgreSQL store (``--store URL --dir DIR``) prints what it
prints over a ledger directory. The command line reads the host's clock, so
the two runs are compared with their times, hashes, crcs and durations masked: the same structure, the same
entries, the same events in the same order."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.stores import RETRY_ENV, store_name

from .conftest import PYTHON, ROOT, FakeClock, entry
from .pg import CuttingProxy, PgServer, free_port, require_psycopg

require_psycopg()


_MASKS = (
    (re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+Z"), "TS"),
    (re.compile(r"[0-9a-f]{64}"), "HASH"),
    (re.compile(r'"crc":"[0-9a-f]{8}"'), '"crc":"CRC"'),
    (re.compile(r"\b\d+(\.\d+)? (s|min|h)\b"), "DURATION"),
    (
        re.compile(r'("(?:seconds|generationSecondsMedian|generationSecondsP95|secondsToReady)":)[-0-9.e]+'),
        r"\1N",
    ),
    (re.compile(r"(createdAt|completedAt)( +)"), r"\1 "),  # table columns sized by the times' widths
    (re.compile(r" {2,}"), "  "),
)


def _mask(text: str, directory: Path, url: str | None) -> str:
    text = text.replace(str(directory / "events.jsonl"), "LOG").replace(str(directory), "DIR")
    if url is not None:
        text = text.replace(url, "LOG").replace(str(store_name(url)), "LOG")  # how messages name it
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def _session(tmp_path: Path, directory: Path, store: list[str], source: Path) -> dict[str, tuple[int, str]]:
    """Run the commands a user runs, in order; each one's exit code and masked output."""
    import io

    url = store[1] if store else None
    seen: dict[str, tuple[int, str]] = {}

    def run(name: str, *argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = main([*store, "--dir", str(directory), *argv], out=out, err=err)
        assert "Traceback" not in err.getvalue()
        seen[name] = (code, _mask(out.getvalue() + err.getvalue(), directory, url))
        return out.getvalue()

    run("import", "import", str(source / "generated-videos.json"))
    run("set pending", "set", "colosseum", "rome-80ad", "--status", "pending", "--prompt", "a prompt")
    run("set generating", "set", "colosseum", "rome-80ad", "--status", "generating", "--json")
    run("fail", "fail", "colosseum", "rome-80ad", "boom")
    run("set again", "set", "colosseum", "rome-80ad", "--status", "generating")
    run("ready", "set", "colosseum", "rome-80ad", "--status", "ready", "--local-path", "videos/c.mp4")
    run("petra", "set", "petra", "nabataean", "--status", "generating", "--prompt", "p")
    run("list", "list")
    run("list json", "list", "--json")
    run("list csv", "list", "--csv", "--status", "generating")
    run("get", "get", "colosseum", "rome-80ad", "--json")
    run("get missing", "get", "nowhere", "none")
    run("history", "history")
    run("history json", "history", "--json")
    run("history entry", "history", "colosseum", "rome-80ad", "--csv")
    run("history status", "history", "--status", "failed")
    run("history type", "history", "--type", "generating", "--since-seq", "3")
    run("history since", "history", "--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01T00:00:00Z")
    run("timeline", "timeline", "colosseum", "rome-80ad")
    run("timeline json", "timeline", "colosseum", "rome-80ad", "--json")
    run("as-of", "snapshot", "--seq", "5")
    run("as-of time", "snapshot", "--as-of", "2999-01-01T00:00:00Z")
    run("stats", "stats")
    run("stats json", "stats", "--json")
    verified = run("verify", "verify")
    head = re.search(r"head: (\S+)", verified)
    assert head is not None, verified
    run("verify head", "verify", "--expect-head", head.group(1))
    run("verify wrong head", "verify", "--expect-head", "3:" + "0" * 64)
    run("verify json", "verify", "--json")
    (tmp_path / "videos").mkdir(exist_ok=True)
    run("verify files", "verify", "--files", "--root", str(tmp_path))
    time.sleep(1.1)
    run("reap", "reap", "--older-than", "1s")
    run("no-project", "--no-project", "set", "acropolis-0", "era", "--status", "generating")
    run("wait late", "wait", "--seq", "11", "--timeout", "0.2")
    run("rebuild", "rebuild")
    run("wait", "wait", "--seq", "11", "--timeout", "5")
    run("demo", "demo", "--spots", "1", "--eras", "1", "--workers", "1", "--fail-rate", "0")
    run("verify end", "verify")
    return seen


def test_every_command_prints_the_same_over_postgresql_as_over_a_directory(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source"
    with Ledger(source, clock=FakeClock()) as ledger:
        ledger.set_many(entry(f"acropolis-{i}", "era", "pending") for i in range(3))
    assert main(["--store", pg_url, "init"]) == 0
    capsys.readouterr()
    over_directory = _session(tmp_path, tmp_path / "file", [], source)
    over_postgres = _session(tmp_path, tmp_path / "pg", ["--store", pg_url], source)
    assert over_postgres == over_directory
    codes = {name: code for name, (code, _) in over_directory.items()}
    failed = {"get missing", "verify wrong head", "wait late", "verify files", "demo"}  # files: c.mp4 missing
    assert {name for name, code in codes.items() if code} == failed
    assert "FILE colosseum/rome-80ad: videos/c.mp4: missing" in over_directory["verify files"][1]
    assert "demo" in over_directory and "1 jobs on 1 workers" in over_directory["demo"][1]
    assert sorted(p.name for p in (tmp_path / "pg").iterdir()) == [
        "checkpoint.json", "dev-ca", "generated-videos.json", "merkle.index", "merkle.keys", "merkle.tree",
        "snapshot.lock", "videos",
    ]  # fmt: skip


def _spawn(*argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VIDEO_LEDGER_STORE", None)
    return subprocess.Popen(
        [PYTHON, "-m", "ledger", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.parametrize("over", ["directory", "postgresql"])
def test_follow_and_watch_over_either_store(tmp_path: Path, pg_url: str, over: str) -> None:
    directory = tmp_path / "d"
    store = ["--store", pg_url] if over == "postgresql" else []
    assert main([*store, "--dir", str(directory), "init"]) == 0
    follow = _spawn(*store, "--dir", str(directory), "history", "--follow", "--type", "pending")
    watcher = _spawn(*store, "--dir", str(tmp_path / "w" if store else directory), "watch", "--verbose")
    try:
        assert follow.stderr is not None and "caught up at event 0" in follow.stderr.readline()
        assert watcher.stderr is not None and "watching" in watcher.stderr.readline()
        for status in ("pending", "generating"):
            argv = [*store, "--dir", str(directory), "--no-project", "set", "a", "b", "--status", status]
            assert main([*argv, "--prompt", "p", "--quiet"]) == 0
        assert follow.stdout is not None and watcher.stdout is not None
        assert re.fullmatch(r"1  \S+Z  pending  a  b  prompt='p'\n", follow.stdout.readline())
        seen = [watcher.stdout.readline()]  # an empty store's snapshot, then one per burst, up to event 2
        while seen[-1] in ("snapshot at event 0\n", "snapshot at event 1\n"):
            seen.append(watcher.stdout.readline())
        assert seen[-1] == "snapshot at event 2\n", seen
    finally:
        for proc in (follow, watcher):
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=10)
    assert follow.returncode == 0 and watcher.returncode == 0


def test_an_unreachable_server_is_one_line_exit_1_for_every_command(
    tmp_path: Path, pg_server: PgServer
) -> None:
    import io

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/ledger"  # nothing listens there
    commands = [
        ["list"], ["get", "a", "b"], ["set", "a", "b", "--status", "pending", "--prompt", "p"], ["history"],
        ["verify"], ["reap", "--older-than", "1h"], ["stats"], ["timeline", "a", "b"],
        ["snapshot", "--seq", "1"], ["wait", "--seq", "1", "--timeout", "0"], ["rebuild"],
        ["import", str(tmp_path / "none.json")],
    ]  # fmt: skip
    (tmp_path / "none.json").write_text("[]")
    for argv in commands:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--store", url, "--dir", str(tmp_path / "d"), *argv], out=out, err=err)
        text = err.getvalue()
        assert code == 1 and text.count("\n") == 1 and text.startswith("video-ledger: error: "), (argv, text)
        assert "127.0.0.1" in text and "Traceback" not in text


def test_watch_of_a_file_over_a_store_is_one_line_exit_1(tmp_path: Path, pg_server: PgServer) -> None:
    """``--dir`` naming a file: the watcher ends at once (over the file store its log's read said so;
    over PostgreSQL it retried the projection lock's file forever, a warning every 30 s)."""
    url = pg_server.app_database()
    (tmp_path / "file").write_bytes(b"not a directory")
    for store in (["--store", url], []):
        proc = subprocess.run(
            [PYTHON, "-m", "ledger", *store, "--dir", str(tmp_path / "file"), "watch"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        last = proc.stderr.splitlines()[-1]
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert last == f"video-ledger: error: cannot watch {tmp_path / 'file'}: it is not a directory", last
    assert (tmp_path / "file").read_bytes() == b"not a directory"


@pytest.mark.parametrize(
    ("argv", "when", "marker", "said"),
    [
        (["list"], "before", b"FROM ledger_events", "lost the connection to"),
        (["history", "--json"], "before", b"FROM ledger_events", "lost the connection to"),
        (
            ["set", "a", "b", "--status", "pending", "--prompt", "p"],
            "before",
            b"COMMIT",
            "lost the connection to",  # in doubt: the client cannot tell whether the COMMIT arrived
        ),
        (["set", "a", "b", "--status", "pending", "--prompt", "p"], "after", b"COMMIT", "find"),
    ],
    ids=["list", "history", "set-before-commit", "set-after-commit"],
)
def test_a_server_lost_mid_command_is_one_line_exit_1(
    tmp_path: Path,
    pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    when: str,
    marker: bytes,
    said: str,
) -> None:
    import io

    url = pg_server.app_database()
    with Ledger(tmp_path / "writer", store=url, clock=FakeClock()) as ledger:
        ledger.set_many(entry(f"spot-{i}", "era", "pending") for i in range(3))
    monkeypatch.setenv(RETRY_ENV, "1")  # give up reconnecting after a second, not the default 30
    proxy = CuttingProxy(pg_server.host, pg_server.port)
    try:
        proxy.arm(when, marker)
        proxy.refuse_at = 1  # the server seems gone after the cut
        out, err = io.StringIO(), io.StringIO()
        code = main(["--store", proxy.url(url), "--dir", str(tmp_path / "host"), *argv], out=out, err=err)
    finally:
        proxy.close()
    text = err.getvalue()
    assert proxy.cuts == 1, "the cut came mid-command, after the store was opened"
    assert code == 1 and text.count("\n") == 1 and text.startswith("video-ledger: error: "), text
    assert said in text and "Traceback" not in text
    if when == "after":  # in doubt: never said to have recorded nothing
        assert "nothing was recorded" not in text, text


def test_the_reconnect_time_must_be_a_number_of_seconds(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setenv(RETRY_ENV, "soon")
    err = io.StringIO()
    assert main(["--store", pg_url, "--dir", str(tmp_path / "d"), "list"], out=io.StringIO(), err=err) == 2
    assert f"${RETRY_ENV} must be a number of seconds from 0 to 86400, not 'soon'" in err.getvalue()
