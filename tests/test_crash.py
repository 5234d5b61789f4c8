"""Process crashes: a writer SIGKILLed at every named point of an append and a projection.

The child writes through ``tests.faults.KillAt``, a FileOps that kills its own process the n-th time the
ledger reaches a named point, and prints each event it was told is recorded. After every kill: every
acknowledged event is in the log exactly once, nothing unsubmitted appears, seq is contiguous, the snapshot
is a whole JSON array, recovery brings snapshot and checkpoint in line with the log (and running it twice
changes nothing), and no temp files pile up. The long run (docs/guarantees.md) kills at random moments too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger

from .conftest import ROOT, files_state
from .faults import temp_leftovers

CHILD = """
import sys
from ledger import Ledger, VideoMetadata
from tests.faults import KillAt
directory, point, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ledger = Ledger(directory, ops=KillAt(point, n))
for i in range(int(sys.argv[4])):
    spot, status = f"spot{i % 3}", ("generating", "ready")[(i // 3) % 2]
    print("try", i, spot, status, flush=True)
    ledger.set_video_metadata(VideoMetadata(spot_id=spot, era_id="era", prompt="p", status=status,
                                            local_path="v.mp4" if status == "ready" else None))
    print("ack", ledger.last_seq, spot, status, flush=True)
"""

POINTS = [
    "log.created",
    "log.before_write",
    "log.after_write",
    "log.after_fsync",
    "snapshot.temp_written",
    "snapshot.before_rename",
    "snapshot.after_rename",
    "checkpoint.temp_written",
    "checkpoint.before_rename",
    "checkpoint.after_rename",
]


def run_child(directory: Path, point: str, n: int, writes: int = 12) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), point, str(n), str(writes)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout.splitlines()


def check_after_crash(directory: Path, output: list[str]) -> None:
    acked = {
        int(seq): (spot, status)
        for _, seq, spot, status in (line.split() for line in output if line.startswith("ack"))
    }
    tries = (line.split() for line in output if line.startswith("try"))
    tried = [(spot, status) for _, _, spot, status in tries]
    if (directory / "generated-videos.json").exists():
        json.loads((directory / "generated-videos.json").read_text())  # always a whole file
    if not (directory / "events.jsonl").exists():
        assert not acked
        return
    events = list(Ledger(directory, readonly=True).history())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for seq, (spot, status) in acked.items():
        assert (events[seq - 1].spot_id, events[seq - 1].STATUS) == (spot, status), (
            "an acknowledged event is lost"
        )
    assert [(e.spot_id, e.STATUS) for e in events] == tried[: len(events)], "nothing unsubmitted appears"
    assert len(events) in (len(acked), len(acked) + 1), "at most the one in-flight event is unacknowledged"
    # recovery: a writer opening the directory brings snapshot and checkpoint in line; twice is once
    Ledger(directory).close()
    recovered = files_state(directory)
    Ledger(directory).close()
    assert files_state(directory) == recovered
    report = Ledger(directory, readonly=True).verify()
    assert report.ok, report
    assert report.checkpoint_seq == len(events)
    assert temp_leftovers(directory) == []


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_named_point(tmp_path: Path, point: str) -> None:
    n = 1 if point == "log.created" else 3
    code, output = run_child(tmp_path / "ledger", point, n)
    assert code == -signal.SIGKILL, (code, output)
    check_after_crash(tmp_path / "ledger", output)


def test_kill_while_setting_a_torn_tail_aside(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    code, _ = run_child(directory, "log.after_write", 2)  # dies with the 2nd event written, unsynced
    assert code == -signal.SIGKILL
    with (directory / "events.jsonl").open("ab") as f:
        f.write(b'{"type":"gene')  # and a torn tail as a crash mid-write would leave
    for point in ("torn.temp_written", "torn.before_rename", "torn.after_rename"):
        code, _ = run_child(directory, point, 1, writes=1)
        assert code == -signal.SIGKILL, point
    Ledger(directory).close()
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.torn is None, report
    assert temp_leftovers(directory) == []
    aside = list(directory.glob("events.jsonl.torn-*"))
    assert [p.read_bytes() for p in aside] == [b'{"type":"gene'], "set aside exactly once"
