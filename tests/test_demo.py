"""The demo (``ledger.demo``, the README's first command) as a user runs it: what it prints and refuses,
worker processes on ``claim()``, the ledger's retry policy, SIGTERM to its whole process group once or twice
on either store, its videos real MP4 containers with provenance, usage and (with the c2pa extra) a C2PA
manifest that ``verify --files --c2pa`` reads back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import Failed, Ledger, RetryPolicy
from ledger.cli import main
from ledger.demo import DEMO_POLICY, MODEL, run_demo
from ledger.errors import InvalidEntryError
from ledger.mp4 import boxes

from .conftest import ROOT

pytestmark = pytest.mark.timeout(120)


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


COUNT = re.compile(
    r"video-ledger: interrupted by (SIGTERM|SIGINT): stopped the workers; (\d+) running attempt\(s\) "
    r"recorded as failed, (\d+) of 84 jobs finished\n"
)


def _cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env
    )


def _interrupt(directory: Path, store: list[str], times: int) -> tuple[int, str]:
    """Run the demo's 84 jobs and SIGTERM its whole process group ``times`` times, 2 ms apart, once a job
    has finished (as ``systemctl stop`` or ``docker stop`` do); its exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--dir", str(directory), *store, "demo", "--spots", "14", "--eras",
         "6", "--workers", "3", "--no-sign"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("[")  # a job finished: the workers are at work
    time.sleep(0.05)  # and the next ones are running
    for n in range(times):
        if n:
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def _check_the_count(directory: Path, store: str | None, err: str) -> None:
    said = COUNT.fullmatch(err)
    assert said is not None, err
    with Ledger(directory, readonly=True, store=store) as ledger:
        interrupted = [
            e
            for e in ledger.history(type="failed")
            if isinstance(e, Failed) and e.error.startswith("interrupted")
        ]
        entries = ledger.get_all_video_metadata()
        assert ledger.verify().ok
    assert int(said.group(2)) == len(interrupted), "the count the demo says is the log's"
    assert 1 <= len(interrupted) <= 3, "each of the 3 workers had at most one attempt running"
    assert [e for e in entries if e.status == "generating"] == [], "every running attempt recorded failed"
    assert {e.error for e in interrupted} == {"interrupted by SIGTERM"}
    assert any(e.status == "pending" for e in entries), "stopped before every job was claimed"


@pytest.mark.slow
@pytest.mark.parametrize("times", [1, 2], ids=["sigterm-once", "sigterm-twice"])
def test_sigterm_to_the_demos_process_group_on_the_file_store(tmp_path: Path, times: int) -> None:
    code, err = _interrupt(tmp_path / "demo", [], times)
    assert code == 143, err
    _check_the_count(tmp_path / "demo", None, err)


@pytest.mark.slow
@pytest.mark.parametrize("times", [1, 2], ids=["sigterm-once", "sigterm-twice"])
def test_sigterm_to_the_demos_process_group_on_postgresql(tmp_path: Path, pg_url: str, times: int) -> None:
    assert _cli("--store", pg_url, "init").returncode == 0
    code, err = _interrupt(tmp_path / "host", ["--store", pg_url], times)
    assert code == 143, err
    _check_the_count(tmp_path / "host", pg_url, err)


def test_the_demos_videos_are_signed_mp4s_with_provenance_and_usage(tmp_path: Path) -> None:
    pytest.importorskip("c2pa")
    directory = tmp_path / "demo"
    done = _cli("--dir", str(directory), "demo", "--spots", "2", "--eras", "2", "--fail-rate", "0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"videos: signed (C2PA) by a throwaway development CA in {directory / 'dev-ca'}" in done.stdout
    root = directory / "dev-ca" / "root.pem"
    checked = _cli("--dir", str(directory), "verify", "--files", "--c2pa", "--c2pa-trust", str(root))
    assert checked.returncode == 0 and "files: " in checked.stdout and " 0 problems" in checked.stdout, (
        checked
    )
    with Ledger(directory, readonly=True) as ledger:
        ready = [e for e in ledger.get_all_video_metadata() if e.status == "ready"]
        assert ready
        for entry in ready:
            assert entry.local_path is not None
            data = (directory / entry.local_path).read_bytes()
            kinds = [kind for kind, _, _ in boxes(data)]
            assert kinds[0] == "ftyp" and {"moov", "mdat", "uuid"} <= set(kinds), kinds  # uuid: C2PA's
            [current, *_] = ledger.provenance(entry.spot_id, entry.era_id)
            assert current.provenance is not None and current.provenance.model == MODEL
            assert current.provenance.seed is not None and current.provenance.prompt_sha256 is not None
            assert current.usage is not None and current.usage.gpu_seconds is not None
            assert current.usage.wall_seconds is not None and current.worker is not None
    stats = json.loads(_cli("--dir", str(directory), "stats", "--by", "model", "--json").stdout)
    assert [row["key"] for row in stats] == ["stand-in@1"] and stats[0]["withoutUsage"] == 0, stats


def test_without_the_extra_the_demo_runs_and_says_nothing_is_signed(tmp_path: Path) -> None:
    """The README's first command installs no extras: a process that cannot import c2pa."""
    blocked = "import sys; sys.modules['c2pa'] = None; from ledger.cli import main; sys.exit(main())"
    directory = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "--dir", str(directory), "demo", "--spots", "1", "--eras", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.endswith(
        "videos: not signed: C2PA disclosure needs the c2pa extra: pip install 'video-ledger[c2pa]'\n"
    )
    assert not (directory / "dev-ca").exists()


def test_the_ledgers_policy_does_the_retries(tmp_path: Path) -> None:
    """A ledger with its own policy keeps it: every attempt failing, each entry gets its 3 attempts and
    ends failed; a ledger without one gets the demo's, recorded in the log."""
    with Ledger(tmp_path / "own") as ledger:
        ledger.set_retry_policy(RetryPolicy(max_attempts=3, backoff=0))
    result = run_demo(tmp_path / "own", spots=2, eras=1, fail_rate=1.0, delay=(0.0, 0.01))
    assert not result.policy_recorded and result.policy.max_attempts == 3
    assert sorted((r.spot_id, r.attempt, r.retried) for r in result.results) == [
        (spot, n, n < 3) for spot in ("acropolis", "colosseum") for n in (1, 2, 3)
    ]
    with Ledger(tmp_path / "own", readonly=True) as ledger:
        assert {(e.status, e.attempt) for e in ledger.get_all_video_metadata()} == {("failed", 3)}
    fresh = run_demo(tmp_path / "fresh", spots=1, eras=1, fail_rate=1.0, delay=(0.0, 0.01))
    assert fresh.policy_recorded and fresh.policy == DEMO_POLICY
    assert [(r.attempt, r.retried) for r in fresh.results] == [(1, True), (2, False)]
    with Ledger(tmp_path / "fresh", readonly=True) as ledger:
        assert ledger.retry_policy() == DEMO_POLICY


def test_a_second_run_leaves_ready_entries_and_requeues_failed_ones(tmp_path: Path) -> None:
    first = run_demo(tmp_path, spots=3, eras=1, fail_rate=0.6, seed=1, delay=(0.0, 0.01))
    with Ledger(tmp_path, readonly=True) as ledger:
        before = {e.key: e for e in ledger.get_all_video_metadata()}
    failed = {k for k, e in before.items() if e.status == "failed"}
    assert failed and len(failed) < 3, "seed 1 fails two of the three twice"
    second = run_demo(tmp_path, spots=3, eras=1, fail_rate=0.0, delay=(0.0, 0.01))
    skipped = {(r.spot_id, r.era_id) for r in second.results if r.outcome == "skipped"}
    assert skipped == set(before) - failed and second.existing == 3
    assert {(r.spot_id, r.era_id) for r in second.results if r.outcome == "ready"} == failed
    with Ledger(tmp_path, readonly=True) as ledger:
        after = {e.key: e for e in ledger.get_all_video_metadata()}
    assert {e.status for e in after.values()} == {"ready"}
    assert all(after[k] == before[k] for k in skipped), "a ready entry is left exactly as it was"
    assert first.finished == 3
