"""Backups: ``copy`` beside live writers as an incremental backup, ``follow_copy`` keeping a replica current,
and a restore drill end to end (restore, then ``verify --expect-head`` against the head kept before).
docs/backups.md describes what these check."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.backend import Head
from ledger.copy import CopyRefusedError, copy_ledger, follow_copy
from ledger.stores import open_store

from .conftest import PYTHON, ROOT, entry

WRITER = """
import sys
from ledger import Ledger, VideoMetadata
with Ledger(sys.argv[1]) as ledger:
    for i in range(int(sys.argv[3])):
        for status in ("generating", "ready"):
            ledger.set_video_metadata(VideoMetadata(
                spot_id=f"{sys.argv[2]}-{i}", era_id="era", prompt="p", status=status,
                local_path=f"videos/{i}.mp4" if status == "ready" else None))
"""


def _writers(directory: Path, n: int) -> list[subprocess.Popen[bytes]]:
    Ledger(directory).close()
    return [
        subprocess.Popen([PYTHON, "-c", WRITER, str(directory), name, str(n)], cwd=ROOT)
        for name in ("north", "south")
    ]


def _cli(*argv: str) -> str:
    out = subprocess.run(
        [PYTHON, "-m", "ledger", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_backup_taken_beside_live_writers_resumes_and_restores_to_the_kept_head(tmp_path: Path) -> None:
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    writers = _writers(live, 150)
    copies = []
    while any(w.poll() is None for w in writers):  # incremental backups while the writers run
        copies.append(_cli("copy", "--from", str(live), "--to", str(backup)))
        time.sleep(0.05)
    assert all(w.returncode == 0 for w in writers)
    last = _cli("copy", "--from", str(live), "--to", str(backup))
    head = re.search(r"head (\d+:[0-9a-f]{64})", last)
    assert head is not None and head.group(1).startswith("600:")  # 2 writers x 150 entries x 2 events
    assert len(copies) >= 2 and any("resumed after" in c for c in [*copies[1:], last])
    kept = head.group(1)  # the anchor, kept away from the ledger's host
    snapshot = (live / "generated-videos.json").read_bytes()

    shutil.rmtree(live)  # the disaster
    _cli("copy", "--from", str(backup), "--to", str(restored))
    _cli("--dir", str(restored), "rebuild")  # the app's file, from the restored log
    verdict = _cli("--dir", str(restored), "verify", "--expect-head", kept)
    assert verdict.startswith("ok: 600 events") and f"head: {kept}" in verdict
    assert (restored / "generated-videos.json").read_bytes() == snapshot


def test_a_restore_verified_against_a_head_it_lacks_fails(tmp_path: Path) -> None:
    live, backup = tmp_path / "live", tmp_path / "backup"
    with Ledger(live) as ledger:
        ledger.set_video_metadata(entry("a", "b"))
        copy_ledger(live, backup)
        ledger.set_video_metadata(entry("a", "b", status="ready"))
        kept = ledger.head()
    out = subprocess.run(
        [PYTHON, "-m", "ledger", "--dir", str(backup), "verify", "--expect-head", f"{kept.seq}:{kept.hash}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout  # the backup is behind the head kept: said, not passed


def _following(source: Path, target: Path, stop: threading.Event, heads: list[Head]) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            follow_copy(source, target, stop, poll=0.05, copied=heads.append)
        except BaseException as exc:  # the test fails on it below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def _until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


def test_follow_copy_keeps_a_replica_current_until_stopped(tmp_path: Path) -> None:
    live, replica = tmp_path / "live", tmp_path / "replica"
    with Ledger(live) as ledger:
        ledger.set_many(entry(f"s{i}", "era", "pending") for i in range(50))
    stop, heads = threading.Event(), []
    thread = _following(live, replica, stop, heads)
    writers = _writers(live, 100)
    for w in writers:
        assert w.wait(timeout=120) == 0
    with Ledger(live) as ledger:
        want = ledger.head()
    _until(lambda: bool(heads) and heads[-1].seq == want.seq)
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and not thread.errors  # type: ignore[attr-defined]
    assert (replica / "events.jsonl").read_bytes() == (live / "events.jsonl").read_bytes()
    assert heads[-1].hash == want.hash
    assert [h.seq for h in heads] == sorted({h.seq for h in heads})  # each append moved it forward


def test_a_stopped_follow_leaves_a_prefix_that_a_copy_resumes(tmp_path: Path) -> None:
    live, replica = tmp_path / "live", tmp_path / "replica"
    with Ledger(live) as ledger:
        ledger.set_video_metadata(entry("first", "era", "pending"))
    stop, heads = threading.Event(), []
    thread = _following(live, replica, stop, heads)
    _until(lambda: (replica / "events.jsonl").exists() and open_store(replica).head().seq == 1)
    stop.set()
    thread.join(timeout=30)
    with Ledger(live) as ledger:
        ledger.set_many(entry(f"later-{i}", "era", "pending") for i in range(10))
    report = copy_ledger(live, replica)
    assert (report.resumed, report.copied) == (1, 10)
    assert (replica / "events.jsonl").read_bytes() == (live / "events.jsonl").read_bytes()


@pytest.mark.parametrize("damage", ["edited", "cut"])
def test_follow_copy_refuses_a_source_that_does_not_continue_the_replica(tmp_path: Path, damage: str) -> None:
    live, replica = tmp_path / "live", tmp_path / "replica"
    with Ledger(live) as ledger:
        ledger.set_many(entry(f"s{i}", "era", "pending") for i in range(5))
    copy_ledger(live, replica)
    log = live / "events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    if damage == "cut":  # the source lost records the replica holds
        log.write_bytes(b"".join(lines[:3]))
        (live / "events.jsonl.sync.lock").unlink()
    else:  # another history of the same length
        shutil.rmtree(live)
        with Ledger(live) as ledger:
            ledger.set_many(entry(f"other-{i}", "era", "pending") for i in range(5))
    before = (replica / "events.jsonl").read_bytes()
    stop, heads = threading.Event(), []
    thread = _following(live, replica, stop, heads)
    thread.join(timeout=30)
    stop.set()
    errors = thread.errors  # type: ignore[attr-defined]
    assert [type(e) for e in errors] == [CopyRefusedError], errors  # said, not retried or half-copied
    assert (replica / "events.jsonl").read_bytes() == before


def test_copy_follow_on_the_command_line_keeps_a_replica_until_sigterm(tmp_path: Path) -> None:
    live, replica = tmp_path / "live", tmp_path / "replica"
    with Ledger(live) as ledger:
        ledger.set_video_metadata(entry("first", "era", "pending"))
    follower = subprocess.Popen(
        [PYTHON, "-m", "ledger", "copy", "--from", str(live), "--to", str(replica), "--follow"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with Ledger(live) as ledger:
            for i in range(20):
                ledger.set_video_metadata(entry(f"later-{i}", "era", "pending"))
        source = (live / "events.jsonl").read_bytes()
        log = replica / "events.jsonl"
        _until(lambda: log.exists() and log.read_bytes() == source)
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert re.fullmatch(r"copied 21 records from \S+ to \S+; head 21:[0-9a-f]{64}\n", out), out
