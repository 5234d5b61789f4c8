"""One attempt, one finisher: attempt numbers, a live attempt refusing a second one, stale finishers refused,
takeover, the card functions naming the current attempt, format 1 logs continued, and real processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ledger import AttemptInProgressError, Failed, IllegalTransitionError, Ledger, Ready
from ledger.events import FORMAT_VERSION

from .conftest import PYTHON, ROOT, FakeClock, Run, entry, files_state


def _video(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_second_generation_on_a_live_attempt_is_refused_and_the_first_one_finishes(
    ledger_dir: Path, clock: FakeClock
) -> None:
    """Two handles on one entry: the second generation() used to be accepted as a no-op and its ready too,
    leaving the first worker's digest in the ledger beside the second worker's file."""
    first, second = Ledger(ledger_dir, clock=clock), Ledger(ledger_dir, clock=clock)

    def second_worker() -> None:
        with second.generation("colosseum", "rome", "opening games") as other:
            _video(ledger_dir / "videos" / "c.mp4", b"the second worker's video")
            other.ready(ledger_dir / "videos" / "c.mp4", local_path="videos/c.mp4")

    with first.generation("colosseum", "rome", "opening games") as job:
        assert job.attempt == 1
        before = files_state(ledger_dir)
        with pytest.raises(AttemptInProgressError, match=r"attempt 1 is live .*takeover=1") as caught:
            second_worker()
        assert caught.value.attempt == 1
        assert isinstance(caught.value, IllegalTransitionError), "catchable as any refused change"
        assert files_state(ledger_dir) == before, "nothing written"
        path = _video(ledger_dir / "videos" / "c.mp4", b"the first worker's video")
        job.ready(path, local_path="videos/c.mp4")
    ready = [e for e in second.history() if isinstance(e, Ready)]
    assert [(e.attempt, e.sha256) for e in ready] == [
        (1, hashlib.sha256(b"the first worker's video").hexdigest())
    ]
    assert second.verify_files().ok
    assert second.get_video_metadata("colosseum", "rome").attempt == 1  # type: ignore[union-attr]
    first.close()
    second.close()


def test_a_finisher_of_an_attempt_that_is_no_longer_current_is_refused(ledger_dir: Path) -> None:
    """Worker A's attempt is reaped, worker B starts another: A's late ready used to end B's attempt with
    A's file. Now it is refused and B's attempt is untouched; B finishes and verify --files agrees."""
    clock = FakeClock()
    a, b = Ledger(ledger_dir, clock=clock), Ledger(ledger_dir, clock=clock)

    def worker_a() -> None:
        with a.generation("s", "e", "p") as job_a:
            clock.now += dt.timedelta(hours=3)
            assert [r.key for r in b.reap(dt.timedelta(hours=2))] == [("s", "e")]
            with b.generation("s", "e", "p") as job_b:
                assert job_b.attempt == 2
                _video(ledger_dir / "a.mp4", b"A")
                before = files_state(ledger_dir)
                with pytest.raises(IllegalTransitionError, match=r"attempt 2 is running"):
                    job_a.ready(ledger_dir / "a.mp4", local_path="v.mp4")
                assert files_state(ledger_dir) == before
                assert b.get_video_metadata("s", "e").status == "generating"  # type: ignore[union-attr]
                job_b.ready(_video(ledger_dir / "v.mp4", b"B"), local_path="v.mp4")
            job_a.ready(ledger_dir / "a.mp4", local_path="v.mp4")  # after B's ready: still refused

    with pytest.raises(IllegalTransitionError, match=r"attempt 1: it is not the entry's current attempt"):
        worker_a()
    # A's block ended with an error: its failed, naming attempt 1, was refused too (and logged)
    assert [(e.type, getattr(e, "attempt", None)) for e in b.history()] == [
        ("generating", 1),
        ("failed", 1),
        ("generating", 2),
        ("ready", 2),
    ]
    assert b.get_video_metadata("s", "e").status == "ready"  # type: ignore[union-attr]
    assert b.verify_files().ok
    a.close()
    b.close()


def test_takeover_names_the_abandoned_attempt(ledger: Ledger, ledger_dir: Path) -> None:
    abandoned = ledger.begin_attempt("s", "e", "p")
    assert abandoned.attempt == 1
    with pytest.raises(AttemptInProgressError, match="attempt 1 is live"):
        ledger.begin_attempt("s", "e", "p", takeover=7)  # not the live one: refused
    with ledger.generation("s", "e", "p", takeover=1) as job:
        assert job.attempt == 2
        with pytest.raises(AttemptInProgressError, match="attempt 2 is live"):
            ledger.begin_attempt("s", "e", "p", takeover=1)  # the same takeover twice: the second loses
        with pytest.raises(IllegalTransitionError, match="attempt 1"):
            ledger.mark_video_ready("s", "e", "old.mp4", attempt=1)
        job.ready(_video(ledger_dir / "new.mp4", b"new"), local_path="new.mp4")
    events = list(ledger.history())
    assert [e.type for e in events] == ["generating", "failed", "generating", "ready"]
    assert events[1].ts == events[2].ts, "the takeover is one commit"
    assert isinstance(events[1], Failed) and events[1].attempt == 1
    assert events[1].error.startswith("abandoned: taken over by a new attempt")
    # nothing live: takeover changes nothing, a new attempt starts
    assert ledger.begin_attempt("s", "e", "p", takeover=2, regenerate=True).attempt == 3


def test_the_card_functions_name_the_current_attempt_and_stay_retry_safe(ledger: Ledger) -> None:
    started = ledger.set_video_metadata(entry(status="generating"))
    assert started.attempt == 1
    assert ledger.set_video_metadata(entry(status="generating")) == started, "same state: nothing recorded"
    done = ledger.set_video_metadata(entry(status="ready"))
    assert done.attempt == 1
    assert ledger.set_video_metadata(entry(status="ready")) == done, "a retried ready records nothing"
    assert ledger.mark_video_ready("colosseum", "rome-80ad", done.local_path, attempt=1) == done  # type: ignore[arg-type]
    with pytest.raises(IllegalTransitionError, match="attempt 9: it is not the entry's current attempt"):
        ledger.set_video_metadata(entry(status="ready", attempt=9))  # same state, another attempt: refused
    ledger.set_video_metadata(entry(status="generating"))
    ledger.mark_video_failed("colosseum", "rome-80ad", "boom")
    events = list(ledger.history())
    assert [(e.type, getattr(e, "attempt", None)) for e in events] == [
        ("generating", 1),
        ("ready", 1),
        ("generating", 2),
        ("failed", 2),
    ]
    assert all(e.v == FORMAT_VERSION == 3 for e in events)


def test_a_format_1_log_is_continued_in_the_current_format(tmp_path: Path) -> None:
    """The v1 golden log ends with akropolis generating (an attempt with no number): it is still live for
    generation(), the card functions end it, and the log verifies and replays as before."""
    directory = tmp_path / "v1"
    shutil.copytree(ROOT / "tests" / "golden" / "v1", directory)
    golden_snapshot = (directory / "generated-videos.json").read_bytes()
    with Ledger(directory, clock=FakeClock(dt.datetime(2026, 11, 25, tzinfo=dt.UTC))) as ledger:
        assert (directory / "generated-videos.json").read_bytes() == golden_snapshot
        assert ledger.get_video_metadata("akropolis", "athens-430bc").attempt is None  # type: ignore[union-attr]
        with pytest.raises(AttemptInProgressError, match="an attempt started in format 1 is live") as caught:
            ledger.begin_attempt("akropolis", "athens-430bc", "regenerated")
        assert caught.value.attempt is None
        with pytest.raises(IllegalTransitionError, match="started in format 1"):
            ledger.mark_video_ready("akropolis", "athens-430bc", "v.mp4", attempt=9)
        ended = ledger.mark_video_ready("akropolis", "athens-430bc", "videos/akropolis.mp4")
        assert ended.attempt is None
        with ledger.generation("akropolis", "athens-430bc", "again", regenerate=True) as job:
            assert job.attempt == 1  # its earlier attempts had no number: the count starts at 1
            job.ready(_video(directory / "videos" / "a.mp4", b"a"), local_path="videos/a.mp4")
        assert [e.v for e in ledger.history()] == [1] * 10 + [FORMAT_VERSION] * 3
        assert ledger.verify().ok
        ledger.rebuild()
        assert ledger.verify().ok


def test_a_format_1_checkpoint_is_replaced_on_the_first_open(tmp_path: Path) -> None:
    directory = tmp_path / "v1"
    shutil.copytree(ROOT / "tests" / "golden" / "v1", directory)
    Ledger(directory).close()
    checkpoint = directory / "checkpoint.json"
    current = b'{"v":%d,' % FORMAT_VERSION
    assert checkpoint.read_bytes().startswith(current)
    checkpoint.write_bytes(checkpoint.read_bytes().replace(current, b'{"v":1,'))  # format 1 code
    Ledger(directory).close()
    assert checkpoint.read_bytes().startswith(current)
    assert (directory / "generated-videos.json").read_bytes() == (
        ROOT / "tests" / "golden" / "v1" / "generated-videos.json"
    ).read_bytes()


CHILD = """
import sys, time
from pathlib import Path
from ledger import Ledger, LedgerError
directory, name, wait_for, then_signal = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def wait(flag):
    while flag != "-" and not (directory / flag).exists():
        time.sleep(0.01)
ledger = Ledger(directory)
wait(wait_for)
try:
    with ledger.generation("colosseum", "rome", "opening games") as job:
        print("started", getattr(job, "attempt", "?"), flush=True)
        if then_signal != "-":
            (directory / then_signal).touch()
        wait(sys.argv[5])
        video = directory / "videos" / "c.mp4"
        video.parent.mkdir(exist_ok=True)
        video.write_bytes(name.encode() * 1000)
        job.ready(video, local_path="videos/c.mp4")
        print("ready", flush=True)
except LedgerError as exc:
    print(type(exc).__name__, exc, flush=True)
finally:
    if then_signal != "-" and not (directory / then_signal).exists():
        (directory / then_signal).touch()
    if len(sys.argv) > 6:
        (directory / sys.argv[6]).touch()
"""


def test_two_worker_processes_on_one_entry_the_second_is_refused(ledger_dir: Path) -> None:
    """Real processes: worker A starts, worker B starts on the same entry while A's attempt is live, then
    A writes its file and records ready. B is refused at once; the ledger and verify --files agree with
    A's file."""
    Ledger(ledger_dir).close()
    a = subprocess.Popen(
        [PYTHON, "-c", CHILD, str(ledger_dir), "A", "-", "a-started", "b-done"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    b = subprocess.Popen(
        [PYTHON, "-c", CHILD, str(ledger_dir), "B", "a-started", "-", "-", "b-done"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    out_a, _ = a.communicate(timeout=60)
    out_b, _ = b.communicate(timeout=60)
    with Ledger(ledger_dir, readonly=True) as ledger:
        files = ledger.verify_files()
        assert files.ok and files.checked == 1, files
        assert [e.type for e in ledger.history()] == ["generating", "ready"]
        assert ledger.verify().ok
    assert (ledger_dir / "videos" / "c.mp4").read_bytes() == b"A" * 1000
    assert out_a.split("\n")[:2] == ["started 1", "ready"], out_a
    assert out_b.startswith("AttemptInProgressError colosseum/rome: attempt 1 is live"), out_b


DEMO = """
import sys
from ledger.demo import run_demo
result = run_demo(sys.argv[1], spots=1, eras=1, workers=1, fail_rate=0.0, delay=(float(sys.argv[2]),) * 2)
for r in result.results:
    print(r.outcome, r.detail, flush=True)
"""


def test_a_second_demo_into_the_same_directory_refuses_the_live_entries(ledger_dir: Path) -> None:
    """A second demo into a directory where the first's attempt is live leaves that entry to it (refused
    when queueing: its workers never claim a live entry), and the first demo's video is the one the ledger
    describes."""
    first = subprocess.Popen(
        [PYTHON, "-c", DEMO, str(ledger_dir), "4"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    deadline = time.monotonic() + 60
    log = ledger_dir / "events.jsonl"
    while not (log.exists() and b'"generating"' in log.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first demo's attempt is live (it then waits 4 s before its video)
    second = subprocess.run(
        [PYTHON, "-c", DEMO, str(ledger_dir), "0"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    out_first, _ = first.communicate(timeout=60)
    assert out_first.startswith("ready"), out_first
    assert second.stdout.startswith("refused colosseum/founding: attempt 1 is live"), second.stdout
    with Ledger(ledger_dir, readonly=True) as ledger:
        assert [e.type for e in ledger.history()] == ["policy", "pending", "generating", "ready"]
        assert ledger.verify_files().ok


def test_the_demo_says_what_it_found_and_what_it_refused(ledger_dir: Path, run_cli: Run) -> None:
    with Ledger(ledger_dir) as ledger:
        ledger.begin_attempt("colosseum", "founding", "another pipeline's prompt")
    code, out, _ = run_cli("demo", "--spots", "1", "--eras", "1", "--workers", "1", "--fail-rate", "0")
    assert code == 0
    assert "[  1/1] colosseum/founding attempt 1: refused (colosseum/founding: attempt 1 is live" in out
    assert (
        "1 jobs on 1 workers in " in out
        and ", 0 retried, 1 refused (another attempt on the entry was live)" in out
    )
    assert f"note: {ledger_dir} already held 1 entries, 1 of them generating;" in out
