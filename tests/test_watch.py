"""The live projector, wait and follow, as real subprocesses on real watchfiles notifications."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.events import Generating, decode_event, encode_line, line_hash
from ledger.projector import encode_snapshot, read_checkpoint
from projections.entries import as_of, fold

from .conftest import ROOT, entry
from .faults import temp_leftovers

pytestmark = pytest.mark.timeout(60)


def cli(directory: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ledger", "--dir", str(directory), *args]


def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``condition`` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
    return time.monotonic() - start


def checkpoint_seq(directory: Path) -> int:
    checkpoint = read_checkpoint(directory / "checkpoint.json")
    return -1 if checkpoint is None else checkpoint.seq


def snapshot_matches_log(directory: Path) -> None:
    """The snapshot is whole and equals the replay of the log up to its checkpoint."""
    seq = checkpoint_seq(directory)
    events = [decode_event(line) for line in (directory / "events.jsonl").read_bytes().splitlines()]
    assert (directory / "generated-videos.json").read_bytes() == encode_snapshot(as_of(events, seq=seq))


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(directory: Path, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            cli(directory, "watch", "--step", "10", *extra),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        assert "watching" in proc.stderr.readline()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_appends_from_another_process_show_up_quickly(
    tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    directory = tmp_path / "ledger"
    Ledger(directory, projection="deferred").close()
    watcher(directory)
    time.sleep(0.3)  # let the watch settle, so the figures below are latencies, not start-up
    writer = Ledger(directory, projection="deferred")
    latencies = []
    for i in range(10):
        writer.set_video_metadata(entry(f"spot{i}", "era", status="generating"))
        seq = writer.last_seq
        assert seq is not None
        latencies.append(until(lambda seq=seq: checkpoint_seq(directory) >= seq, what=f"event {seq}"))
        time.sleep(0.05)
    latencies.sort()
    print(f"append -> snapshot: median {latencies[5] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    assert latencies[5] < 1.0  # ~20 ms on an idle machine (docs/performance.md); CI machines are not idle
    snapshot_matches_log(directory)


def test_a_half_written_line_is_not_projected_until_it_is_complete(
    tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    directory = tmp_path / "ledger"
    with Ledger(directory) as ledger:
        ledger.set_video_metadata(entry(status="pending"))
    log = directory / "events.jsonl"
    last = log.read_bytes().splitlines()[-1]
    line = encode_line(
        Generating(
            1, 2, "2026-11-24T10:00:00.000000Z", "colosseum", "rome-80ad", line_hash(last), prompt="p" * 5000
        )
    )
    watcher(directory)
    with log.open("ab", buffering=0) as f:
        f.write(line[:3000])  # a writer in the middle of its write
        time.sleep(0.5)
        assert checkpoint_seq(directory) == 1, "half an event is never projected"
        json.loads((directory / "generated-videos.json").read_text())
        f.write(line[3000:])
    time.sleep(0.5)
    assert checkpoint_seq(directory) == 1, "nor a whole one that is not known to be fsynced"
    Ledger(directory, projection="deferred").close()  # fsyncs it and records so, as its writer would have
    until(lambda: checkpoint_seq(directory) == 2, what="the completed line")
    snapshot_matches_log(directory)


def test_sigterm_mid_burst_exits_0_with_a_valid_snapshot(
    tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    directory = tmp_path / "ledger"
    Ledger(directory, projection="deferred").close()
    proc = watcher(directory)
    writer = Ledger(directory, projection="deferred")
    stop = threading.Event()

    def burst() -> None:
        i = 0
        while not stop.is_set():
            writer.set_video_metadata(entry(f"s{i % 50}", "e", status=("generating", "ready")[(i // 50) % 2]))
            i += 1

    thread = threading.Thread(target=burst)
    thread.start()
    until(lambda: checkpoint_seq(directory) > 20, what="the watcher to start projecting")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    stop.set()
    thread.join()
    assert proc.returncode == 0, err
    assert "stopped after writing" in err
    snapshot_matches_log(directory)
    assert temp_leftovers(directory) == []


def test_sigint_stops_it_cleanly_too(tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]) -> None:
    proc = watcher(tmp_path / "ledger")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_the_log_may_be_created_after_the_watcher_starts(
    tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    directory = tmp_path / "not-yet"
    watcher(directory)
    assert not (directory / "events.jsonl").exists()
    writer = Ledger(directory, projection="deferred")
    writer.set_video_metadata(entry(status="generating"))
    until(lambda: checkpoint_seq(directory) == 1, what="the first event")
    snapshot_matches_log(directory)


def test_two_watchers_never_move_the_snapshot_backwards(
    tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    directory = tmp_path / "ledger"
    Ledger(directory, projection="deferred").close()
    watcher(directory)
    watcher(directory)
    writer = Ledger(directory, projection="deferred")
    seen: list[int] = []
    for i in range(300):
        writer.set_video_metadata(entry(f"s{i % 30}", "e", status=("generating", "ready")[(i // 30) % 2]))
        if i % 5 == 0:
            seen.append(checkpoint_seq(directory))
    until(lambda: checkpoint_seq(directory) == 300, what="the last event")
    assert seen == sorted(seen), "the snapshot never went backwards"
    snapshot_matches_log(directory)


def test_wait_returns_once_the_snapshot_includes_the_event(
    tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    directory = tmp_path / "ledger"
    writer = Ledger(directory, projection="deferred")
    writer.set_video_metadata(entry(status="generating"))
    result = subprocess.run(
        cli(directory, "wait", "--seq", "1", "--timeout", "0.3"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, "nothing projects yet"
    assert "does not include event 1" in result.stderr
    waiting = subprocess.Popen(
        cli(directory, "wait", "--seq", "1", "--timeout", "20"), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.3)
    watcher(directory)
    out, _ = waiting.communicate(timeout=30)
    assert waiting.returncode == 0
    assert "includes event 1" in out
    assert Ledger(directory, readonly=True).wait_for(1, timeout=1)


def test_history_follow_prints_new_events_as_stored(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    writer = Ledger(directory)
    writer.set_video_metadata(entry("old", "e", status="generating"))
    with subprocess.Popen(
        cli(directory, "history", "--follow", "--json"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        assert follower.stderr is not None and follower.stdout is not None
        assert "caught up at event 1" in follower.stderr.readline()
        for i in range(3):
            writer.set_video_metadata(entry(f"new{i}", "e", status="pending"))
        got = [follower.stdout.readline() for _ in range(3)]  # bounded: exactly the three new events
        follower.send_signal(signal.SIGTERM)
        follower.communicate(timeout=20)
    assert follower.returncode == 0
    stored = (directory / "events.jsonl").read_text().splitlines(keepends=True)
    assert got == stored[1:4], "after the existing ones, exactly as stored"


def test_history_follow_resumes_after_a_given_event(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    writer = Ledger(directory)
    for i in range(5):
        writer.set_video_metadata(entry(f"s{i}", "e", status="pending"))
    with subprocess.Popen(
        cli(directory, "history", "--follow", "--since-seq", "3"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        assert follower.stdout is not None and follower.stderr is not None
        first = [follower.stdout.readline().split()[0] for _ in range(2)]
        assert "caught up at event 5" in follower.stderr.readline()
        writer.set_video_metadata(entry("s9", "e", status="pending"))
        assert follower.stdout.readline().split()[0] == "6"
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=20)
    assert first == ["4", "5"]
    assert follower.returncode == 0


def test_watch_as_a_library_function_with_a_stop_event(tmp_path: Path) -> None:
    from ledger.watch import watch

    directory = tmp_path / "ledger"
    writer = Ledger(directory, projection="deferred")
    stop = threading.Event()
    seqs: list[int] = []
    thread = threading.Thread(
        target=watch, args=(directory,), kwargs={"stop_event": stop, "step": 5, "on_project": seqs.append}
    )
    thread.start()
    for i in range(5):
        writer.set_video_metadata(entry(f"s{i}", "e", status="pending"))
        until(lambda: checkpoint_seq(directory) == writer.last_seq, what="the event")
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert seqs == sorted(seqs)
    assert seqs[-1] == 5
    assert fold(writer.history()) == {
        e.key: e for e in Ledger(directory, readonly=True).get_all_video_metadata()
    }
