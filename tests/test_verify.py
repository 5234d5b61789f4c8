"""``verify`` always compares the snapshot with the replay of the log; read-only commands need a ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import Ledger, LedgerError, NoLedgerError

from .conftest import ROOT, FakeClock, cli_in_process, entry

Run = tuple[int, str, str]


def two_entries(directory: Path, clock: FakeClock, *, projection: str = "inline") -> None:
    with Ledger(directory, clock=clock, projection=projection) as ledger:  # type: ignore[arg-type]
        ledger.set_video_metadata(entry("a", "1", status="generating"))
        ledger.set_video_metadata(entry("b", "1", status="pending"))


# -- verify compares the snapshot with the replay, checkpoint or none ------------------------------------


def test_a_wrong_snapshot_without_a_checkpoint_fails_verify(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    two_entries(ledger_dir, clock)
    (ledger_dir / "checkpoint.json").unlink()
    (ledger_dir / "generated-videos.json").write_bytes(b"[]\n")
    code, out, _ = cli_in_process(capsys, "--dir", str(ledger_dir), "verify")  # before: ok, exit 0
    assert code == 1 and "has no checkpoint and is not the replay of the log" in out, out


def test_a_right_snapshot_without_a_checkpoint_passes_verify(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    two_entries(ledger_dir, clock)
    (ledger_dir / "checkpoint.json").unlink()
    code, out, _ = cli_in_process(capsys, "--dir", str(ledger_dir), "verify")
    assert code == 0 and "snapshot matches the log at event 2" in out, out


@pytest.mark.parametrize("spelling", ["dotdot", "symlink"])
def test_a_wrong_snapshot_named_another_way_fails_verify(
    tmp_path: Path, ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    two_entries(ledger_dir, clock)
    (ledger_dir / "generated-videos.json").write_bytes(b"[]\n")
    if spelling == "dotdot":
        (tmp_path / "sub").mkdir()
        other = tmp_path / "sub" / ".." / ledger_dir.name / "generated-videos.json"
    else:
        (tmp_path / "link").symlink_to(ledger_dir)
        other = tmp_path / "link" / "generated-videos.json"
    code, out, _ = cli_in_process(
        capsys, "--dir", str(ledger_dir), "--snapshot", str(other), "verify"
    )  # before: ok
    assert code == 1 and "is not the replay of the log" in out, out


def test_an_unreadable_checkpoint_and_a_snapshot_behind_the_log_are_harmless(
    ledger_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    two_entries(ledger_dir, clock)
    with Ledger(ledger_dir, clock=clock, projection="deferred") as ledger:  # appends, does not project
        ledger.set_video_metadata(entry("c", "1", status="pending"))
    (ledger_dir / "checkpoint.json").write_bytes(b"\x00" * 40)  # what a power loss can leave
    code, out, _ = cli_in_process(capsys, "--dir", str(ledger_dir), "verify")
    assert code == 0 and "snapshot matches the log at event 2" in out and "cannot be read" in out, out
    (ledger_dir / "generated-videos.json").write_bytes(b"[]\n")
    code, out, _ = cli_in_process(capsys, "--dir", str(ledger_dir), "verify")  # [] is the replay at event 0
    assert code == 0 and "at event 0" in out, out
    (ledger_dir / "generated-videos.json").write_bytes(b'[\n{"spotId":"a"}\n]\n')
    code, out, _ = cli_in_process(capsys, "--dir", str(ledger_dir), "verify")
    assert code == 1 and "not the replay of the log at any event" in out, out


# -- read-only commands need a ledger and create nothing -------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["verify"],
        ["list"],
        ["stats"],
        ["get", "a", "1"],
        ["history"],
        ["timeline", "a", "1"],
        ["snapshot", "--seq", "1"],
        ["history", "--follow"],
        ["wait", "--seq", "1", "--timeout", "0.1"],
    ],
)
@pytest.mark.parametrize("where", ["missing", "empty"])
def test_read_only_commands_on_a_directory_without_a_ledger_exit_1_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], where: str
) -> None:
    directory = tmp_path / "mistyped"
    if where == "empty":
        directory.mkdir()
    code, out, err = cli_in_process(
        capsys, "--dir", str(directory), *command
    )  # before: exit 0, "ok: 0 events"
    assert code == 1, (out, err)
    assert err == f"video-ledger: error: no ledger at {directory} (it holds no events.jsonl)\n"
    assert out == ""
    assert (sorted(directory.iterdir()) == []) if where == "empty" else not directory.exists()


def test_a_read_only_open_without_a_ledger_raises_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(NoLedgerError, match="no ledger at") as info:
        Ledger(tmp_path / "nowhere", readonly=True)
    assert isinstance(info.value, LedgerError)
    assert not (tmp_path / "nowhere").exists()


@given(
    commits=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=3), min_size=1, max_size=8),
    data=st.data(),
)
def test_a_checkpoint_left_behind_by_a_crash_is_harmless_wherever_it_stopped(
    commits: list[list[int]], data: st.DataObject
) -> None:
    """Any snapshot a projector wrote, with the checkpoint of any earlier projection (a crash between the
    two renames, then writers that only append): verify finds the event the snapshot is the replay at."""
    import tempfile

    cut = data.draw(st.integers(1, len(commits)), label="commits projected")
    stale = data.draw(st.integers(0, cut), label="commits the checkpoint describes")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "ledger"
        ledger = Ledger(directory, clock=FakeClock())
        checkpoints = [(directory / "checkpoint.json").read_bytes()]
        status = {}
        for n, batch in enumerate(commits, start=1):
            if n == cut + 1:
                ledger.close()
                ledger = Ledger(directory, clock=FakeClock(), projection="deferred")
            changes = []
            for spot in dict.fromkeys(batch):  # one change per entry per commit
                status[spot] = {None: "pending", "pending": "generating", "generating": "failed"}.get(
                    status.get(spot), "generating"
                )
                changes.append(entry(f"s{spot}", "1", status=status[spot]))
            ledger.set_many(changes)
            if n <= cut:
                checkpoints.append((directory / "checkpoint.json").read_bytes())
        ledger.close()
        projected = json.loads(checkpoints[cut])["seq"]
        (directory / "checkpoint.json").write_bytes(checkpoints[stale])
        report = Ledger(directory, readonly=True).verify()
        assert report.ok, report
        assert report.snapshot_seq == projected, report
        assert (report.note is None) == (stale == cut), report


PAUSED_PROJECTOR = """
import sys, time
from ledger import Ledger
from ledger.fileops import FileOps

class PauseBetweenRenames(FileOps):
    def point(self, name):
        if name == "snapshot.after_rename":  # the new snapshot is in place, its checkpoint not yet
            print("paused", flush=True)
            time.sleep(0.3)

with Ledger(sys.argv[1], ops=PauseBetweenRenames()) as ledger:
    ledger.set_video_metadata({"spotId": "b", "eraId": "1", "status": "pending", "prompt": "p"})
"""


def test_verify_beside_a_projector_between_its_renames_reports_no_crash(ledger_dir: Path) -> None:
    """verify read the checkpoint, then the snapshot, once: beside a live writer about one run in ten
    caught a projector between its two renames and said "a crash or a full disk came between ..."."""
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("a", "1", status="pending"))
    with subprocess.Popen(
        [sys.executable, "-c", PAUSED_PROJECTOR, str(ledger_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "paused\n"
        report = Ledger(ledger_dir, readonly=True).verify()
        assert child.wait(timeout=30) == 0
    assert report.ok and report.note is None, report
    assert report.snapshot_seq == report.checkpoint_seq == 2, report


def test_verify_reads_the_log_once(tmp_path: Path) -> None:
    """verify's whole-log check also tells the log where the durable head it reports is, so the head is
    found by reading on from there, not by reading the log a second time from its start (a fresh handle's
    first head did that: a third of verify's time on a large log)."""
    from ledger.fileops import FileOps

    directory = tmp_path / "l"
    with Ledger(directory, clock=FakeClock(), projection="deferred") as ledger:
        for i in range(300):
            ledger.set_video_metadata(entry("s", "e", ("generating", "ready")[i % 2]))
    size = (directory / "events.jsonl").stat().st_size

    class Counting(FileOps):
        read = 0

        def pread(self, fd: int, count: int, offset: int) -> bytes:
            data = super().pread(fd, count, offset)
            Counting.read += len(data)
            return data

    report = Ledger(directory, readonly=True, ops=Counting()).verify()
    assert report.ok and report.events == 300 and report.head is not None
    assert report.head.startswith("300:")
    assert size < Counting.read < 1.5 * size  # the log once (and the small snapshot and checkpoint)
