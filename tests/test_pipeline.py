"""The pipeline's side: generation() under success, exception, no result and signals (real processes),
reap racing workers, verify --files, import, and the demo end to end."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import (
    AlreadyReadyError,
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    Ledger,
    Ready,
)
from ledger.events import decode_event
from ledger.pipeline import NOT_READY
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import ROOT, FakeClock, Run, entry, files_state, recent_clock


def _video(path: Path, data: bytes = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_successful_generation_records_the_file_size_and_digest(ledger: Ledger, tmp_path: Path) -> None:
    with ledger.generation("colosseum", "rome", "opening games") as job:
        assert ledger.get_video_metadata("colosseum", "rome").status == "generating"  # type: ignore[union-attr]
        path = _video(tmp_path / "out" / "c.mp4")
        stored = job.ready(path, local_path="videos/c.mp4")
    assert stored.status == "ready"
    assert stored.local_path == "videos/c.mp4"
    ready = next(e for e in ledger.history() if isinstance(e, Ready))
    assert ready.size == path.stat().st_size
    assert ready.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    snapshot = json.loads(ledger.snapshot_path.read_text())
    assert "sha256" not in snapshot[0], "the digest stays in the log; the snapshot keeps the card's shape"


def test_an_exception_in_the_block_records_failed_and_is_reraised(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError, match="model timed out"), ledger.generation("s", "e", "p"):
        raise RuntimeError("model timed out")
    failed = ledger.get_video_metadata("s", "e")
    assert failed is not None
    assert failed.status == "failed"
    assert failed.error == "RuntimeError: model timed out"


def test_leaving_the_block_without_ready_records_failed(ledger: Ledger) -> None:
    with ledger.generation("s", "e", "p"):
        pass
    assert ledger.get_video_metadata("s", "e").error == NOT_READY  # type: ignore[union-attr]


def test_a_missing_output_file_fails_the_attempt(ledger: Ledger) -> None:
    with pytest.raises(FileNotFoundError), ledger.generation("s", "e", "p") as job:
        job.ready(ledger.directory / "never-written.mp4")
    assert ledger.get_video_metadata("s", "e").error.startswith("FileNotFoundError")  # type: ignore[union-attr]


def test_generate_and_store_video(ledger: Ledger, tmp_path: Path) -> None:
    stored = ledger.generate_and_store_video(
        "s", "e", "p", lambda: _video(ledger.directory / "videos" / "v.mp4")
    )
    assert stored.status == "ready"
    assert stored.local_path == "videos/v.mp4", "relative to the ledger directory: no host path"

    def broken() -> str:
        raise OSError("GPU fell off the bus")

    with pytest.raises(AlreadyReadyError, match=r"s/e is already ready .*regenerate=True"):
        ledger.generate_and_store_video("s", "e", "p", broken)  # its video exists: not made again by default
    with pytest.raises(OSError, match="GPU"):
        ledger.generate_and_store_video("s", "e", "p", broken, regenerate=True)
    assert ledger.get_video_metadata("s", "e").status == "failed"  # type: ignore[union-attr]
    assert [e.type for e in ledger.history()] == ["generating", "ready", "generating", "failed"]


CHILD = """
import signal, sys, time
from ledger import Ledger
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (nohup, &)
ledger = Ledger(sys.argv[1])
with ledger.generation("s", "e", "p") as job:
    print("started", flush=True)
    if sys.argv[2] == "interrupt":
        raise KeyboardInterrupt
    time.sleep(60)
"""


@pytest.mark.parametrize(("how", "code", "error"), [
    ("sigterm", 128 + signal.SIGTERM, "interrupted by SIGTERM"),
    ("interrupt", -signal.SIGINT, "interrupted (KeyboardInterrupt)"),
    ("sigint", -signal.SIGINT, "interrupted (KeyboardInterrupt)"),
])  # fmt: skip
def test_signals_inside_the_block_record_failed_before_the_process_ends(
    ledger_dir: Path, how: str, code: int, error: str
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ledger_dir), how],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        if how != "interrupt":
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        _, err = proc.communicate(timeout=90)  # generous: a loaded machine once took over 30 s to fsync
    assert proc.returncode == code, err
    failed = Ledger(ledger_dir, readonly=True).get_video_metadata("s", "e")
    assert failed is not None
    assert (failed.status, failed.error) == ("failed", error)


TERM_AFTER_READY = """
import os, signal, sys
from ledger import Ledger
from ledger.fileops import FileOps

class TermAfterFsync(FileOps):
    armed = False

    def point(self, name):
        if self.armed and name == "log.after_fsync":  # the ready is durable: SIGTERM comes now
            self.armed = False
            os.kill(os.getpid(), signal.SIGTERM)

ops = TermAfterFsync()
ledger = Ledger(sys.argv[1], ops=ops)
with ledger.generation("s", "e", "p") as job:
    (ledger.directory / "v.mp4").write_bytes(b"video")
    ops.armed = True
    job.ready(ledger.directory / "v.mp4")
"""


def test_sigterm_after_ready_is_recorded_ends_the_process_without_an_error_about_failed(
    ledger_dir: Path,
) -> None:
    """A SIGTERM that came after the attempt's ready was recorded, still inside the block (the demo's
    workers under load): the block tried to record failed, was refused, and logged "could not record
    s/e as failed ... an entry that is ready can only become ..." although nothing had gone wrong."""
    result = subprocess.run(
        [sys.executable, "-c", TERM_AFTER_READY, str(ledger_dir)], cwd=ROOT, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr == ""
    ready = Ledger(ledger_dir, readonly=True).get_video_metadata("s", "e")
    assert ready is not None and ready.status == "ready"
    assert [e.type for e in Ledger(ledger_dir, readonly=True).history()] == ["generating", "ready"]


def test_reap_fails_only_stuck_entries(ledger_dir: Path) -> None:
    clock = FakeClock(step=dt.timedelta(minutes=1))
    ledger = Ledger(ledger_dir, clock=clock)
    ledger.set_video_metadata(entry("old", "e", status="generating"))
    clock.now += dt.timedelta(hours=3)
    ledger.set_video_metadata(entry("fresh", "e", status="generating"))
    ledger.set_video_metadata(entry("done", "e", status="generating"))
    ledger.set_video_metadata(entry("done", "e", status="ready"))
    reaped = ledger.reap(dt.timedelta(hours=2))
    assert [e.spot_id for e in reaped] == ["old"]
    assert reaped[0].error is not None
    assert reaped[0].error.startswith("abandoned: generating since 2026-11-24T09:00:00.000000Z")
    assert "more than 2.0 h" in reaped[0].error
    assert ledger.reap(dt.timedelta(hours=2)) == [], "reaping twice does nothing more"
    assert ledger.get_video_metadata("fresh", "e").status == "generating"  # type: ignore[union-attr]
    with pytest.raises(InvalidEntryError):
        ledger.reap(dt.timedelta(0))


WORKER = """
import sys
from ledger import Ledger, IllegalTransitionError
ledger = Ledger(sys.argv[1])
for i in range(int(sys.argv[2])):
    try:
        ledger.mark_video_ready(f"job{i}", "e", f"videos/{i}.mp4")
        print("ready", i, flush=True)
    except IllegalTransitionError:
        print("lost", i, flush=True)
"""


def test_reap_racing_a_worker_that_finishes(ledger_dir: Path) -> None:
    """Entries became stuck one minute apart; the reaper's clock sweeps forward over them while a worker
    process records ready for them in the same order: they meet, and each entry is won exactly once."""
    n = 150
    clock = recent_clock(step=dt.timedelta(minutes=1))  # the worker and the reaper write on the real clock
    start = clock.now
    with Ledger(ledger_dir, clock=clock) as ledger:
        for i in range(n):
            ledger.set_video_metadata(entry(f"job{i}", "e", status="generating"))
    reaper = Ledger(ledger_dir)
    reaped: set[str] = set()
    with subprocess.Popen(
        [sys.executable, "-c", WORKER, str(ledger_dir), str(n)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as worker:
        sweep = 0
        while worker.poll() is None:
            sweep += 1
            now = start + dt.timedelta(hours=1, minutes=sweep)
            reaped |= {e.spot_id for e in reaper.reap(dt.timedelta(hours=1), now=now)}
            time.sleep(0.002)
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    said = dict(reversed(line.split()) for line in out.splitlines())
    assert len(said) == n
    assert "ready" in said.values(), "the worker won some"
    assert "lost" in said.values(), "the reaper won some"
    final = {e.spot_id: e for e in Ledger(ledger_dir, readonly=True).get_all_video_metadata()}
    for i in range(n):
        name = f"job{i}"
        events = [e.type for e in Ledger(ledger_dir, readonly=True).history(name, "e")]
        if said[str(i)] == "ready":
            assert events == ["generating", "ready"], name
            assert name not in reaped
        else:
            assert events == ["generating", "failed"], name
            assert name in reaped
            assert final[name].error.startswith("abandoned")  # type: ignore[union-attr]
    assert Ledger(ledger_dir, readonly=True).verify().ok


def test_verify_files_finds_missing_changed_and_unreferenced_files(run_cli: Run, ledger_dir: Path) -> None:
    ledger = Ledger(ledger_dir)
    for name in ("a", "b", "c"):
        with ledger.generation(name, "e", "p") as job:
            job.ready(_video(ledger_dir / "videos" / f"{name}.mp4"), local_path=f"videos/{name}.mp4")
    assert run_cli("verify", "--files", "--media", str(ledger_dir / "videos"))[0] == 0
    (ledger_dir / "videos" / "a.mp4").unlink()
    _video(ledger_dir / "videos" / "b.mp4", b"something else entirely, of another size")
    data = (ledger_dir / "videos" / "c.mp4").read_bytes()
    (ledger_dir / "videos" / "c.mp4").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size
    _video(ledger_dir / "videos" / "stray.mp4")
    (ledger_dir / "videos" / "notes.txt").write_text("not a video")
    code, out, _ = run_cli("verify", "--files", "--media", str(ledger_dir / "videos"))
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("FILE")]
    assert problems == [
        "FILE a/e: videos/a.mp4: missing",
        f"FILE b/e: videos/b.mp4: size is 40 bytes, {len(data)} when it became ready",
        "FILE c/e: videos/c.mp4: content changed since it became ready (SHA-256 differs)",
        f"FILE {ledger_dir / 'videos' / 'stray.mp4'}: not referred to by any entry",
    ]
    assert "files: 3 checked, 4 problems" in out


LEGACY = [
    {"spotId": "colosseum", "eraId": "rome-80ad", "prompt": "Opening games", "localPath": "/videos/c.mp4",
     "status": "ready", "createdAt": "2026-05-01T10:00:00.000Z", "completedAt": "2026-05-01T10:04:31.250Z"},
    {"spotId": "acropolis", "eraId": "athens-430bc", "prompt": "Parthenon", "status": "failed",
     "createdAt": "2026-05-02T08:00:00.000Z", "completedAt": "2026-05-02T08:01:00.000Z",
     "error": "Wanx API: quota exceeded"},
    {"spotId": "petra", "eraId": "nabataean", "prompt": "Al-Khazneh at dawn", "status": "generating",
     "createdAt": "2026-05-03T12:00:00.000Z"},
    {"spotId": "alhambra", "eraId": "nasrid", "prompt": "Court of the Lions", "status": "pending",
     "createdAt": "2026-05-04T12:00:00.000Z"},
]  # fmt: skip


def test_import_keeps_the_legacy_entries_and_their_timestamps_once(
    run_cli: Run, ledger_dir: Path, tmp_path: Path
) -> None:
    legacy = tmp_path / "generated-videos.json"
    legacy.write_text(json.dumps(LEGACY, indent=2))
    code, out, err = run_cli("import", str(legacy))
    assert (code, err) == (0, "")
    assert "imported 4 entries; 0 already in the ledger" in out
    ledger = Ledger(ledger_dir, readonly=True)
    for item in LEGACY:
        got = ledger.get_video_metadata(str(item["spotId"]), str(item["eraId"]))
        assert got is not None
        for key, value in item.items():
            assert json.loads(json.dumps({"v": getattr(got, _snake(key))}))["v"] == value, key
    state = files_state(ledger_dir)
    code, out, _ = run_cli("import", str(legacy))
    assert "imported 0 entries; 4 already in the ledger" in out
    assert files_state(ledger_dir) == state, "the second import changes nothing"
    assert [e.type for e in ledger.history()] == ["imported"] * 4
    # imported entries continue through the lifecycle like any other
    Ledger(ledger_dir).set_video_metadata(
        entry("petra", "nabataean", status="ready", prompt="Al-Khazneh at dawn")
    )
    assert run_cli("verify")[0] == 0


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


@pytest.mark.parametrize(("index", "change", "message"), [
    (2, {"status": "done"}, r"entry 2: invalid entry: .*\$\.status"),
    (1, {"createdAt": None}, "entry 1: createdAt is missing"),
    (3, {"createdAt": "yesterday"}, "entry 3: 'yesterday' is not a time like"),
    (0, {"localPath": None}, "entry 0: colosseum/rome-80ad: a ready entry needs localPath"),
])  # fmt: skip
def test_an_invalid_legacy_entry_is_named_by_index_and_nothing_is_imported(
    ledger: Ledger, ledger_dir: Path, index: int, change: dict[str, object], message: str
) -> None:
    items = [dict(item) for item in LEGACY]
    items[index].update(change)
    items[index] = {k: v for k, v in items[index].items() if v is not None}
    before = files_state(ledger_dir)
    with pytest.raises(InvalidEntryError, match=message):
        ledger.import_entries(json.dumps(items).encode())
    assert files_state(ledger_dir) == before


def test_ready_needs_an_existing_generating_entry(ledger: Ledger) -> None:
    with pytest.raises(EntryNotFoundError):
        ledger.mark_video_ready("no", "such", "v.mp4")
    ledger.set_video_metadata(entry(status="pending"))
    with pytest.raises(IllegalTransitionError):
        ledger.mark_video_ready("colosseum", "rome-80ad", "v.mp4")


def test_the_demo_end_to_end(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "--dir", str(directory), "demo", "--spots", "3", "--eras", "2",
         "--workers", "2", "--fail-rate", "0.3", "--seed", "3"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "6 jobs on 2 workers" in out
    assert "chain intact" in out
    assert "files: " in out
    report = Ledger(directory, readonly=True).verify()
    assert f"\nhead: {report.head}\n" in out, "the closing verify shows the head to keep"
    lines = (directory / "events.jsonl").read_bytes().splitlines()
    assert (directory / "generated-videos.json").read_bytes() == encode_snapshot(
        fold(decode_event(line) for line in lines)
    )
    report = Ledger(directory, readonly=True).verify()
    assert report.ok
    statuses = {e.status for e in Ledger(directory, readonly=True).get_all_video_metadata()}
    assert statuses <= {"ready", "failed"}
    assert Ledger(directory, readonly=True).verify_files(media=directory / "videos").ok


def test_ready_refuses_a_video_outside_the_root_without_a_local_path(ledger: Ledger, tmp_path: Path) -> None:
    """Given no local_path, a video outside the media root (the ledger directory) is refused: no host path
    lands in the app's file unasked."""
    video = _video(tmp_path / "v.mp4")
    with (
        pytest.raises(InvalidEntryError, match="outside the ledger directory"),
        ledger.generation("s", "e", "p") as job,
    ):
        job.ready(video)
    entry = ledger.get_video_metadata("s", "e")
    assert entry is not None and entry.status == "failed" and entry.local_path is None
    with pytest.raises(InvalidEntryError, match="outside the ledger directory"):
        ledger.generate_and_store_video("s", "e", "p", lambda: video, regenerate=True)
    assert str(tmp_path) not in (ledger.directory / "generated-videos.json").read_text()


def test_the_seeds_layout_end_to_end(tmp_path: Path) -> None:
    """The app keeps its JSON in src/lib/data and serves the videos from static/videos as /videos/...: the
    ledger in src/lib/data records the URL path the app uses, through generate_and_store_video,
    generation() and claim() alike, and verify --files maps /videos/ to static/videos (size and SHA-256),
    reads nothing else, and calls a path it cannot map unchecked, not damage."""
    data, static = tmp_path / "src" / "lib" / "data", tmp_path / "static" / "videos"
    static.mkdir(parents=True)
    stored_size = _video(tmp_path / "probe.mp4").stat().st_size
    with Ledger(data) as ledger:
        stored = ledger.generate_and_store_video(
            "colosseum",
            "rome",
            "p",
            lambda: _video(static / "colosseum.mp4"),
            local_path=lambda p: f"/videos/{p.name}",
        )
        assert stored.local_path == "/videos/colosseum.mp4"
        with ledger.generation("acropolis", "athens", "p") as job:
            job.ready(_video(static / "acropolis.mp4"), local_path="/videos/acropolis.mp4")
        ledger.set_video_metadata(
            {"spotId": "petra", "eraId": "nabataea", "prompt": "p", "status": "pending"}
        )
        claimed = ledger.claim()
        assert claimed is not None
        with claimed:
            claimed.ready(_video(static / "petra.mp4"), local_path="../../../static/videos/petra.mp4")
        assert [e.local_path for e in ledger.get_all_video_metadata()] == [
            "/videos/acropolis.mp4", "/videos/colosseum.mp4", "../../../static/videos/petra.mp4",
        ]  # fmt: skip
        files = ledger.verify_files(prefixes={"/videos/": static})
        assert (files.checked, files.problems, len(files.unchecked)) == (2, [], 1), files
        assert "petra" in files.unchecked[0], "leaves the media root: not read, not damage"
        assert ledger.verify_files().unchecked and ledger.verify_files().ok, "no map: nothing read, no damage"
        (static / "colosseum.mp4").write_bytes(b"changed")
        assert ledger.verify_files(prefixes={"/videos/": static}).problems == [
            f"colosseum/rome: /videos/colosseum.mp4: size is 7 bytes, {stored_size} when it became ready"
        ]
    out = subprocess.run(
        [sys.executable, "-m", "ledger", "--dir", str(data), "verify", "--files", "--map", f"/videos={static}"],  # noqa: E501
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "files: 2 checked, 1 problems, 1 unchecked" in out.stdout, out


def test_ready_records_a_path_relative_to_the_ledger_directory(ledger: Ledger, tmp_path: Path) -> None:
    video = _video(ledger.directory / "videos" / "a.mp4")
    with ledger.generation("s", "e", "p") as job:
        job.ready(video)
    assert job.entry is not None and job.entry.local_path == "videos/a.mp4"
    stored = ledger.generate_and_store_video(
        "t", "e", "p", lambda: _video(tmp_path / "b.mp4"), local_path="b.mp4"
    )
    assert stored.local_path == "b.mp4"


def test_the_readmes_demo_with_a_relative_directory_finds_every_video(tmp_path: Path) -> None:
    """As the README runs it: ``--dir demo-data``, relative to where the command runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "--dir", "demo-data", "demo"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env,
    )  # fmt: skip
    ready = sum(
        1
        for e in Ledger(tmp_path / "demo-data", readonly=True).get_all_video_metadata()
        if e.status == "ready"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"files: {ready} checked, 0 problems\n" in result.stdout


SIGNAL_WHILE_FAILING = """
import os, signal, sys
from ledger import Ledger
from ledger.fileops import FileOps

class SignalOps(FileOps):
    armed = False

    def point(self, name):
        if self.armed and name == "log.before_write":
            self.armed = False
            os.kill(os.getpid(), signal.SIGTERM)  # while the block's failed is being written

ops = SignalOps()
ledger = Ledger(sys.argv[1], ops=ops)
ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "pending"})
job = ledger.claim()
try:
    with job:
        ops.armed = True
        raise RuntimeError("boom")
except RuntimeError:
    print("the SIGTERM was lost: the worker goes on", flush=True)
"""


def test_a_sigterm_while_an_ordinary_failure_is_recorded_is_raised_once_it_is(tmp_path: Path) -> None:
    """A worker's block failed for its own reasons, and SIGTERM came while that failure was being written:
    the signal waits for the record, then stops the process (it used to be dropped, and the worker went
    on claiming until it was killed)."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_WHILE_FAILING, str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (143, ""), done.stdout + done.stderr
    with Ledger(tmp_path, readonly=True) as ledger:
        current = ledger.get_video_metadata("s", "e")
    assert current is not None and (current.status, current.error) == ("failed", "RuntimeError: boom")
