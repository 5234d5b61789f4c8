"""Several processes writing at once: serialized appends, contiguous seq, valid chain, correct snapshot."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from ledger import Ledger
from ledger.events import decode_event
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import ROOT, entry

WRITER = """
import sys
from ledger import Ledger, IllegalTransitionError, VideoMetadata
directory, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ledger = Ledger(directory)
cycle = ["generating", "ready", "pending"]
for i in range(n):
    # own entries go round the lifecycle; a shared entry is contended by every writer
    if i % 4 == 3:
        key, status = ("shared", "era"), ("generating", "ready")[i // 4 % 2]
    else:
        key, status = (f"{me}-spot{i % 5}", "era"), cycle[(i // 5) % 3]
    before = ledger.last_seq
    try:
        ledger.set_video_metadata(VideoMetadata(spot_id=key[0], era_id=key[1], prompt="p", status=status,
                                                local_path="v.mp4" if status == "ready" else None))
    except IllegalTransitionError:
        continue
    if ledger.last_seq != before:  # not a no-op: this call appended event last_seq
        print(ledger.last_seq, key[0], key[1], status, flush=True)
"""


def _check_ledger(directory: Path, acknowledged: dict[int, tuple[str, str, str]]) -> None:
    lines = (directory / "events.jsonl").read_bytes().splitlines()
    events = [decode_event(line) for line in lines]
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seq is contiguous"
    for seq, (spot, era, status) in acknowledged.items():
        event = events[seq - 1]
        assert (event.spot_id, event.era_id, event.STATUS) == (spot, era, status), seq
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.torn is None, report
    assert (directory / "generated-videos.json").read_bytes() == encode_snapshot(fold(events))


def test_four_processes_times_two_hundred_writes(ledger_dir: Path) -> None:
    Ledger(ledger_dir).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ledger_dir), f"w{i}", "200"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    acknowledged: dict[int, tuple[str, str, str]] = {}
    own_counts = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        seqs = []
        for line in out.splitlines():
            seq, spot, era, status = line.split()
            assert int(seq) not in acknowledged, "two writers were told they wrote the same event"
            acknowledged[int(seq)] = (spot, era, status)
            seqs.append(int(seq))
        assert seqs == sorted(seqs), "each writer's order is kept"
        own_counts.add(sum(1 for seq in seqs if acknowledged[seq][0] != "shared"))
    # a writer's own entries never meet contention: every writer records the same number of them
    assert len(own_counts) == 1
    assert own_counts.pop() > 50
    _check_ledger(ledger_dir, acknowledged)
    assert len((ledger_dir / "events.jsonl").read_bytes().splitlines()) == len(acknowledged)


def test_threads_sharing_one_handle_and_threads_with_their_own(ledger_dir: Path) -> None:
    shared = Ledger(ledger_dir)
    errors: list[BaseException] = []

    def work(name: str, ledger: Ledger) -> None:
        try:
            for i in range(30):
                ledger.set_video_metadata(entry(name, "era", status=("generating", "ready")[i % 2]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    handles = [shared if i % 2 else Ledger(ledger_dir) for i in range(6)]
    threads = [threading.Thread(target=work, args=(f"t{i}", h)) for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    events = list(Ledger(ledger_dir, readonly=True).history())
    assert len(events) == 6 * 30
    for i in range(6):
        mine = [e.STATUS for e in events if e.spot_id == f"t{i}"]
        assert mine == ["generating", "ready"] * 15, "each thread's order is kept"
    assert Ledger(ledger_dir, readonly=True).verify().ok


STRESS_WRITER = """
import os, random, sys, threading
from ledger import Ledger, VideoMetadata
directory, me, per_thread, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()

def work(t):
    try:
        ledger = Ledger(directory)  # a handle per thread, and one shared below
        rng = random.Random(f"{me}-{t}")
        for i in range(per_thread):
            if i % 2 == 0:
                size = rng.choice([1, 10, 300, 5000, 70_000])  # up to lines over 64 KiB
            status = ("generating", "ready")[i % 2]
            target = ledger if t % 2 else shared
            target.set_video_metadata(VideoMetadata(
                spot_id=f"{me}-t{t}", era_id="era", prompt="p" * size, status=status,
                local_path="v.mp4" if status == "ready" else None))
            with lock:
                print(me, t, i, status, flush=True)
    except BaseException as exc:
        print("thread failed:", repr(exc), file=sys.stderr, flush=True)
        os._exit(1)

shared = Ledger(directory)
workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
"""

READER = """
import json, sys, time
from ledger import Ledger
directory, until = sys.argv[1], time.time() + float(sys.argv[2])
reads = 0
while time.time() < until:
    json.loads(open(directory + "/generated-videos.json", "rb").read())  # never a partial snapshot
    Ledger(directory, readonly=True).get_all_video_metadata()
    reads += 1
print(reads)
"""

LOCK_HOLDER = """
import sys
from ledger import Ledger, VideoMetadata
from tests.faults import KillAt
# dies holding a writer lock: the sync lock once its lines are in the log, or the queue lock once they are
# staged for another writer's group commit
ledger = Ledger(sys.argv[1], ops=KillAt("log.after_write|staged.after_write"))
doomed = VideoMetadata(spot_id=f"doomed{sys.argv[2]}", era_id="e", prompt="p", status="pending")
ledger.set_video_metadata(doomed)
"""


def test_many_processes_threads_big_lines_readers_and_a_writer_killed_holding_the_lock(
    ledger_dir: Path, long_run: bool
) -> None:
    import signal

    from .conftest import Tally

    Ledger(ledger_dir).close()
    tally = Tally("concurrency")
    for processes in [2, 4, 8, 16] if long_run else [2, 6]:
        per_thread, threads = (40, 3) if long_run else (12, 2)
        run = lambda code, *args: subprocess.Popen(  # noqa: E731
            [sys.executable, "-c", code, str(ledger_dir), *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        readers = [run(READER, 3 if long_run else 1.5) for _ in range(2)]
        projector = subprocess.Popen(  # a watcher projects too, beside the inline writers
            [sys.executable, "-m", "ledger", "--dir", str(ledger_dir), "watch", "--step", "5"], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert projector.stderr is not None
        # its SIGTERM handler is in place once it says so (on a loaded machine the writers may all be done
        # before it has imported: a SIGTERM then would end it as the default action does)
        assert "watching" in projector.stderr.readline()
        holder = run(LOCK_HOLDER, processes)
        writers = [run(STRESS_WRITER, f"p{processes}w{w}", per_thread, threads) for w in range(processes)]
        said: list[str] = []
        for proc in writers:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
            said += out.splitlines()
        holder.communicate(timeout=60)
        assert holder.returncode == -signal.SIGKILL, "it died holding the lock, and the others went on"
        projector.send_signal(signal.SIGTERM)
        _, err = projector.communicate(timeout=60)
        assert projector.returncode == 0, err
        for proc in readers:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            tally.add("snapshot reads", int(out))
        tally.add("writes", len(said))
        tally.add("processes", processes + 3)
        events = list(Ledger(ledger_dir, readonly=True).history())
        for w in range(processes):
            for t in range(threads):
                spot = f"p{processes}w{w}-t{t}"
                mine = [e.type for e in events if e.spot_id == spot]
                assert mine == ["generating", "ready"] * (per_thread // 2), (
                    f"{spot}: each event once, in order"
                )
    Ledger(ledger_dir).close()  # recovery after the lock holder's death
    report = Ledger(ledger_dir, readonly=True).verify()
    assert report.ok and report.torn is None, report
    lines = (ledger_dir / "events.jsonl").read_bytes().splitlines()
    assert max(len(line) for line in lines) > 64 * 1024
    assert (ledger_dir / "generated-videos.json").read_bytes() == encode_snapshot(
        fold(decode_event(line) for line in lines)
    )
    tally.report()


PAUSING_WRITER = """
import sys, time
from ledger import Ledger, VideoMetadata
from ledger.fileops import FileOps

class PauseAfterWrite(FileOps):
    armed = False  # from the write on, not while opening (which fsyncs too)
    def point(self, name):
        if not self.armed:
            return
        if name == "log.after_write":
            print("written", flush=True)
            time.sleep(0.5)
        if name == "log.after_fsync":
            print("synced", flush=True)

ops = PauseAfterWrite()
ledger = Ledger(sys.argv[1], ops=ops, projection="deferred")
ops.armed = True
ledger.set_video_metadata(VideoMetadata(spot_id="slow", era_id="e", prompt="p", status="pending"))
"""


def test_readers_never_take_in_a_line_whose_fsync_is_not_done(ledger_dir: Path) -> None:
    import select

    reader = Ledger(ledger_dir)
    assert reader.get_all_video_metadata() == []
    with subprocess.Popen(
        [sys.executable, "-c", PAUSING_WRITER, str(ledger_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "written"  # the line is in the file, not yet fsynced
        entries = reader.get_all_video_metadata()  # waits for the writer to let go of the lock
        ready, _, _ = select.select([writer.stdout], [], [], 0)
        assert ready, "the read returned before the fsync was done"
        assert writer.stdout.readline().strip() == "synced"
        writer.wait(timeout=30)
    assert [e.spot_id for e in entries] == ["slow"]


def _forked_writer(ledger: Ledger, name: str) -> None:
    for i in range(30):
        ledger.set_video_metadata(entry(name, "e", status=("generating", "ready")[i % 2]))


def test_a_handle_opened_before_fork_is_safe_in_the_child(ledger_dir: Path) -> None:
    """A forked child shares its parent's open file descriptions, and would share its flock: the handle
    notices the new process and opens its own lock (docs/guarantees.md, Concurrency)."""
    import multiprocessing

    ledger = Ledger(ledger_dir)
    ledger.set_video_metadata(entry("parent", "e", status="generating"))  # the lock file is open now
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_forked_writer, args=(ledger, f"child{i}")) for i in range(3)]
    for child in children:
        child.start()
    _forked_writer(ledger, "parent2")
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    events = list(Ledger(ledger_dir, readonly=True).history())
    assert len(events) == 1 + 4 * 30
    assert Ledger(ledger_dir, readonly=True).verify().ok
