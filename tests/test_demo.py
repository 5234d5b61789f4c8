"""The demo (``ledger.demo``, the README's first command): what it prints, what it refuses, how it stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.cli import main
from ledger.demo import run_demo
from ledger.errors import InvalidEntryError

from .conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


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
    assert len(entries) < 84
