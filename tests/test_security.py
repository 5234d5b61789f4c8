"""Nothing in a log line, however crafted, makes the reader run code or touch files outside the ledger."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger, LedgerIOError
from ledger.events import GENESIS_HASH, line_hash
from ledger.fileops import FileOps

from .conftest import ROOT

CRAFTED = [
    {
        "type": "pending",
        "spotId": "../../../../tmp/owned",
        "eraId": "/etc/passwd",
        "prompt": "__import__('os')",
    },
    {
        "type": "generating",
        "spotId": "a",
        "eraId": "b",
        "prompt": "{{7*7}} $(rm -rf /) `id`",
        "localPath": "../../x",
    },
    {"type": "ready", "spotId": "a", "eraId": "b", "localPath": "/dev/zero", "size": 1, "sha256": "0" * 64},
]


def _forge(directory: Path, payloads: list[dict[str, object]]) -> None:
    """Write payloads as a log whose every crc and hash is right: only the content is hostile."""
    import json

    prev, lines = GENESIS_HASH, []
    for seq, payload in enumerate(payloads, start=1):
        fields = {"type": payload["type"], "v": 1, "seq": seq, "ts": f"2026-11-24T09:00:{seq:02d}.000000Z"}
        fields |= {k: v for k, v in payload.items() if k != "type"}
        fields["prev"] = prev
        body = json.dumps(fields, separators=(",", ":")).encode()[:-1]
        line = b'%s,"crc":"%08x"}' % (body, zlib.crc32(body))
        lines.append(line + b"\n")
        prev = line_hash(line)
    directory.mkdir(parents=True)
    (directory / "events.jsonl").write_bytes(b"".join(lines))


def test_crafted_lines_are_data_only(tmp_path: Path) -> None:
    directory = tmp_path / "sandbox" / "ledger"
    _forge(directory, CRAFTED)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with Ledger(directory) as ledger:
        entries = ledger.get_all_video_metadata()
        ledger.rebuild()
        report = ledger.verify()
        files = ledger.verify_files()
        list(ledger.history())
        ledger.stats()
    assert report.ok, report
    assert {e.spot_id for e in entries} == {"../../../../tmp/owned", "a"}
    assert not Path("/tmp/owned").exists()
    created = sorted(str(p) for p in tmp_path.rglob("*") if str(p) not in before)
    assert all(Path(p).parent == directory for p in created), created
    assert files.problems == [] and files.unchecked == [
        "a/b: /dev/zero: not under the media root or a mapped prefix"
    ], "checked, not trusted, and nothing outside the ledger read"


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "pending", "spotId": "a", "eraId": "b", "prompt": [[[[[[[[[[[[]]]]]]]]]]]]},
        {"type": "pending", "spotId": "a", "eraId": "b", "prompt": "p", "v": 99},
        {"type": "no-such-type", "spotId": "a", "eraId": "b"},
        {"type": "pending", "spotId": "", "eraId": "b", "prompt": "p"},
        {"type": "pending", "spotId": "a", "eraId": "b", "prompt": 10**400},
    ],
)
def test_hostile_lines_with_valid_framing_are_a_typed_error(
    tmp_path: Path, payload: dict[str, object]
) -> None:
    directory = tmp_path / "ledger"
    _forge(directory, [payload, {"type": "pending", "spotId": "z", "eraId": "z", "prompt": "p"}])
    with pytest.raises(CorruptLogError, match="line 1"):
        list(Ledger(directory, readonly=True).history())
    assert not Ledger(directory, readonly=True).verify().ok


def test_files_are_not_world_writable_and_links_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    with Ledger(directory) as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "pending"})
    for path in directory.iterdir():
        assert not path.stat().st_mode & 0o002, path
    target = tmp_path / "elsewhere.json"
    target.write_text("[]\n")
    (directory / "generated-videos.json").unlink()
    os.symlink(target, directory / "generated-videos.json")
    with pytest.raises(Exception, match="symbolic link"):
        Ledger(directory)
    with Ledger(directory, follow_symlinks=True) as ledger:  # when the user asks for it
        ledger.rebuild()
    assert "s" in target.read_text()


# -- verify --files stays under its root -----------------------------------------------------------------

VL = [sys.executable, "-m", "ledger"]


def _ready(spot: str, local_path: str, data: bytes) -> dict[str, object]:
    return {
        "type": "ready",
        "spotId": spot,
        "eraId": "e",
        "localPath": local_path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_verify_files_reads_nothing_outside_the_root_and_never_blocks(tmp_path: Path) -> None:
    """An absolute path, `..` and /dev/zero map to no file under the root (unchecked, not read); a symbolic
    link out of the root, a FIFO and a directory are each a problem for that entry, and none is read: a
    correct guessed SHA-256 of a file outside is no oracle."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"hunter2\n")
    directory = tmp_path / "ledger"
    good = b"a real video"
    entries = [
        _ready("absolute", str(secret), b"hunter2\n"),
        _ready("dotdot", "../secret.txt", b"hunter2\n"),
        _ready("link-out", "videos/link-out.mp4", b"hunter2\n"),
        _ready("link-in", "videos/link-in.mp4", good),
        _ready("dev-zero", "/dev/zero", b"x"),
        _ready("link-zero", "videos/zero.mp4", b"x"),
        _ready("fifo", "videos/fifo.mp4", b"x"),
        _ready("dir", "videos/dir.mp4", b"x"),
        _ready("good", "videos/good.mp4", good),
        _ready("other-root", "secret.txt", b"hunter2\n"),
    ]
    payloads = [{"type": "pending", "spotId": e["spotId"], "eraId": "e", "prompt": "p"} for e in entries]
    payloads += [{"type": "generating", "spotId": e["spotId"], "eraId": "e", "prompt": "p"} for e in entries]
    _forge(directory, payloads + entries)
    videos = directory / "videos"
    videos.mkdir()
    (videos / "good.mp4").write_bytes(good)
    os.symlink(secret, videos / "link-out.mp4")
    os.symlink("good.mp4", videos / "link-in.mp4")
    os.symlink("/dev/zero", videos / "zero.mp4")
    os.mkfifo(videos / "fifo.mp4")
    (videos / "dir.mp4").mkdir()
    result = subprocess.run(
        [*VL, "--dir", str(directory), "verify", "--files"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and result.stderr == "", result.stderr
    problems = {
        line.split(":")[0].removeprefix("FILE ").split("/")[0]: line
        for line in result.stdout.splitlines()
        if line.startswith("FILE ")
    }
    assert sorted(problems) == sorted(["link-out", "link-zero", "fifo", "dir", "other-root"])
    unchecked = sorted(
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("UNCHECKED ")
    )
    assert unchecked == ["absolute/e:", "dev-zero/e:", "dotdot/e:"]
    assert all(line.endswith("not under the media root or a mapped prefix (not read)")
               for line in result.stdout.splitlines() if line.startswith("UNCHECKED "))  # fmt: skip
    assert "a symbolic link to" in problems["link-out"] and "outside the root" in problems["link-out"]
    assert problems["link-zero"].endswith("(not read)")
    assert problems["fifo"].endswith("it is a FIFO (named pipe), not a regular file (refused))")
    assert problems["dir"].endswith("it is a directory, not a regular file (refused))")
    assert "8 bytes" not in result.stdout, "the size of a file outside the root is not told"
    assert problems["other-root"].endswith("secret.txt: missing")
    assert "files: 7 checked, 5 problems, 3 unchecked" in result.stdout

    # --root moves the root: the same file is then inside it, and checked
    moved = subprocess.run(
        [*VL, "--dir", str(directory), "verify", "--files", "--root", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert "FILE other-root/e" not in moved.stdout and "UNCHECKED absolute/e" in moved.stdout, moved.stdout


def test_verify_files_reads_no_more_than_the_recorded_size(tmp_path: Path) -> None:
    """A file that is larger than recorded is a problem found from its size, without reading it; a file of
    the recorded size is read to its end and no further."""
    directory = tmp_path / "ledger"
    with Ledger(directory) as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
        ledger.mark_video_ready("s", "e", "v.mp4", size=4, sha256=hashlib.sha256(b"abcd").hexdigest())
        video = directory / "v.mp4"
        with open(video, "wb") as f:
            f.truncate(1 << 40)  # sparse: 1 TiB that would take hours to hash
        report = ledger.verify_files()
        assert report.problems == [f"s/e: v.mp4: size is {1 << 40} bytes, 4 when it became ready"]
        video.write_bytes(b"abce")
        assert report_of(ledger) == ["s/e: v.mp4: content changed since it became ready (SHA-256 differs)"]
        video.write_bytes(b"abcd")
        assert report_of(ledger) == []


def report_of(ledger: Ledger) -> list[str]:
    return ledger.verify_files().problems


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_verify_files_reports_an_unreadable_file(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    with Ledger(directory) as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
        ledger.mark_video_ready("s", "e", "v.mp4", size=1)
        (directory / "v.mp4").write_bytes(b"x")
        (directory / "v.mp4").chmod(0)
        assert report_of(ledger) == ["s/e: v.mp4: cannot be read (Permission denied)"]


class FailReadsOf(FileOps):
    """Fails every read of one file with EIO, as a failing disk would."""

    def __init__(self, name: str) -> None:
        self.name, self.fds = name, set[int]()

    def open(self, path: Path, flags: int, mode: int = 0o666) -> int:
        fd = super().open(path, flags, mode)
        if Path(path).name == self.name:
            self.fds.add(fd)
        return fd

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        if fd in self.fds:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return super().pread(fd, size, offset)


def test_verify_files_reports_a_failing_read(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    with Ledger(directory, ops=FailReadsOf("v.mp4")) as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
        ledger.mark_video_ready("s", "e", "v.mp4", size=1, sha256=hashlib.sha256(b"x").hexdigest())
        (directory / "v.mp4").write_bytes(b"x")
        assert report_of(ledger) == ["s/e: v.mp4: cannot be read (Input/output error)"]


# -- a FIFO, a device or a link in place of a ledger file hangs nothing -----------------------------------

COMMANDS = {
    "get": ["get", "s", "e"],
    "list": ["list"],
    "history": ["history"],
    "verify": ["verify"],
    "set": ["set", "t", "e", "--status", "pending", "--prompt", "p"],
    "rebuild": ["rebuild"],
    "wait": ["wait", "--seq", "1", "--timeout", "2"],
}


def _run_all(directory: Path, commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run every command at once, each in its own process; none may take more than 60 s."""
    procs = {
        name: subprocess.Popen(
            [*VL, "--dir", str(directory), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        for name, argv in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"`{name}` hangs")
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


# file replaced by a FIFO -> the commands that refuse (exit 1, one line naming the file); the others exit 0
FIFO_CASES = {
    "events.jsonl": {"get", "list", "history", "verify", "set", "rebuild"},
    "generated-videos.json": {"verify", "set", "rebuild"},  # readers answer from the log
    "checkpoint.json": {"wait"},  # a cache: ignored with a warning (wait times out: nothing vouches)
    "events.jsonl.staged": {"set", "rebuild"},
    "events.jsonl.lock": set(),
    "events.jsonl.sync.lock": set(),
    "snapshot.lock": set(),
    "merkle.tree": set(),  # derived: a tree that cannot be read is left behind with a warning
    "merkle.index": set(),
    "merkle.keys": set(),
}


def _small_ledger(directory: Path) -> None:
    with Ledger(directory) as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})


@pytest.mark.parametrize("name", list(FIFO_CASES))
def test_a_fifo_in_place_of_a_ledger_file_hangs_no_command(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "ledger"
    _small_ledger(directory)
    (directory / name).unlink(missing_ok=True)
    os.mkfifo(directory / name)
    if name.endswith((".lock", ".staged")):
        (directory / "checkpoint.json").unlink()  # readers read the log from the start, through every lock
    commands = dict(COMMANDS)
    if name != "checkpoint.json":
        commands.pop("wait")  # waits for the checkpoint only
    writers = {"set", "rebuild"}  # after the readers: a writer replaces a checkpoint that is not a file
    results = _run_all(directory, {k: v for k, v in commands.items() if k not in writers})
    results |= _run_all(directory, {k: v for k, v in commands.items() if k in writers})
    for command, result in results.items():
        assert "Traceback" not in result.stderr, (command, result.stderr)
        if command in FIFO_CASES[name]:
            assert result.returncode == 1, (command, result)
            text = result.stderr + result.stdout
            assert name in text and "it is a FIFO (named pipe), not a regular file (refused)" in text, text
        else:
            assert result.returncode == 0, (command, result)
    if name == "checkpoint.json":
        assert "checkpoint.json: it is a FIFO (named pipe), not a regular file (refused); ignored" in (
            results["get"].stderr
        )


def test_a_watch_on_a_fifo_snapshot_stops_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    _small_ledger(directory)
    (directory / "generated-videos.json").unlink()
    os.mkfifo(directory / "generated-videos.json")
    proc = subprocess.Popen(
        [*VL, "--dir", str(directory), "watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT,
    )  # fmt: skip
    try:
        try:
            proc.wait(timeout=3)  # it may refuse at once
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert "generated-videos.json" in err, err


def test_a_checkpoint_linked_to_dev_zero_is_ignored_not_read(tmp_path: Path) -> None:
    """Under a 1 GiB address-space limit: reading /dev/zero to a MemoryError cannot hurt the machine."""
    directory = tmp_path / "ledger"
    _small_ledger(directory)
    (directory / "checkpoint.json").unlink()
    os.symlink("/dev/zero", directory / "checkpoint.json")
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from ledger import Ledger
with Ledger({str(directory)!r}, readonly=True) as ledger:
    assert ledger.get_video_metadata("s", "e") is not None
    assert ledger.verify().ok
with Ledger({str(directory)!r}, follow_symlinks=True) as ledger:
    assert ledger.get_video_metadata("s", "e") is not None
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result
    assert "checkpoint.json: it is a symbolic link (refused); ignored" in result.stderr
    assert (directory / "checkpoint.json").is_file() and not (directory / "checkpoint.json").is_symlink(), (
        "the writer replaced the link with a checkpoint"
    )


def test_an_oversized_checkpoint_is_ignored_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "ledger"
    _small_ledger(directory)
    with open(directory / "checkpoint.json", "r+b") as f:
        f.truncate(1 << 40)  # sparse
    with Ledger(directory, readonly=True) as ledger:
        assert ledger.get_video_metadata("s", "e") is not None
    assert "checkpoint.json: it is larger than 65536 bytes (refused); ignored" in caplog.text


@pytest.mark.parametrize(
    "command", ["get", "list", "history", "verify", "set", "rebuild", "stats", "timeline"]
)
def test_a_symlinked_log_gets_the_same_refusal_from_every_command(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.cli import main

    directory = tmp_path / "ledger"
    _small_ledger(directory)
    (directory / "events.jsonl").rename(tmp_path / "real.jsonl")
    (directory / "events.jsonl").symlink_to(tmp_path / "real.jsonl")
    argv = {**COMMANDS, "stats": ["stats"], "timeline": ["timeline", "s", "e"]}[command]
    assert main(["--dir", str(directory), *argv]) == 1
    err = capsys.readouterr().err
    said = "; nothing was recorded" if command in ("set", "rebuild") else ""  # a write's open refused
    assert err == (
        f"video-ledger: error: cannot read {directory}/events.jsonl: it is a symbolic link "
        f"(refused; replace the link with the file it points to){said}\n"
    )


@pytest.mark.parametrize("command", ["set", "rebuild"])
def test_a_symlinked_snapshot_refusal_names_what_a_cli_user_can_do(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library's refusal says to pass ``follow_symlinks=True``, which the command line has no way to
    do: the CLI's line names the real file's path instead (``--snapshot``)."""
    from ledger.cli import main

    directory = tmp_path / "ledger"
    _small_ledger(directory)
    snapshot = directory / "generated-videos.json"
    snapshot.rename(tmp_path / "app.json")
    snapshot.symlink_to(tmp_path / "app.json")
    with pytest.raises(LedgerIOError, match="pass follow_symlinks=True"):  # the library's own words
        Ledger(directory)
    assert main(["--dir", str(directory), *COMMANDS[command]]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"video-ledger: error: cannot write {snapshot}: it is a symbolic link "
        "(refused; replace the link with the file it points to, or name that file with --snapshot); "
        "nothing was recorded\n"
    )
    assert main(["--dir", str(directory), "--snapshot", str(tmp_path / "app.json"), *COMMANDS[command]]) == 0


# -- modes kept; new directories fsynced -----------------------------------------------------------------


def test_the_atomic_replace_keeps_the_mode_and_group_and_a_new_file_follows_the_umask(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    old = os.umask(0o077)
    try:
        with Ledger(directory) as ledger:
            snapshot = directory / "generated-videos.json"
            assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600, "a new file follows the umask"
            snapshot.chmod(0o644)  # so the web app can read it
            group = _another_group()
            if group is not None:
                os.chown(snapshot, -1, group)
            ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "generating"})
            ledger.rebuild()
            assert stat.S_IMODE(snapshot.stat().st_mode) == 0o644
            if group is not None:
                assert snapshot.stat().st_gid == group
    finally:
        os.umask(old)


def _another_group() -> int | None:
    """A group this process may give a file: any (as root), else a supplementary one."""
    if os.geteuid() == 0:
        return 4242
    others = [g for g in os.getgroups() if g != os.getegid()]
    return others[0] if others else None


class RecordDirSyncs(FileOps):
    def __init__(self) -> None:
        self.synced: list[Path] = []

    def fsync_dir(self, directory: Path) -> None:
        super().fsync_dir(directory)
        self.synced.append(Path(directory))


def test_creating_a_ledger_fsyncs_every_directory_created_on_the_way(tmp_path: Path) -> None:
    ops = RecordDirSyncs()
    Ledger(tmp_path / "a" / "b" / "c", ops=ops).close()
    for parent in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert parent in ops.synced, parent  # each new directory's entry, in its parent


def test_a_watch_on_a_new_directory_fsyncs_every_directory_created_on_the_way(tmp_path: Path) -> None:
    """A writer that later finds the directory must not depend on an entry nobody fsynced."""
    import threading

    from ledger.watch import watch

    ops = RecordDirSyncs()
    stop = threading.Event()
    stop.set()
    watch(tmp_path / "a" / "b", stop_event=stop, ops=ops, idle_check_ms=10)
    assert tmp_path in ops.synced and tmp_path / "a" in ops.synced


def test_verify_files_reports_a_nul_in_a_logged_path_not_a_traceback(tmp_path: Path) -> None:
    """Writers refuse a localPath with U+0000, but the log only length-checks what it reads back: a line
    written by hand (its crc and chain right) or by another tool can hold one. It is a problem for that entry;
    before, `verify --files` died with a ValueError traceback (embedded null byte)."""
    directory = tmp_path / "ledger"
    _forge(
        directory,
        [
            {"type": "pending", "spotId": "s", "eraId": "e", "prompt": "p"},
            {"type": "generating", "spotId": "s", "eraId": "e", "prompt": "p"},
            _ready("s", "videos/a\x00b.mp4", b"x"),
        ],
    )
    result = subprocess.run(
        [*VL, "--dir", str(directory), "verify", "--files"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr == "", result
    assert "FILE s/e: videos/a\\x00b.mp4: holds a NUL byte, which no file name can (not read)\n" in (
        result.stdout
    )
    assert "files: 1 checked, 1 problems" in result.stdout


def test_verify_files_prints_one_line_per_problem_whatever_the_logged_path(tmp_path: Path) -> None:
    """A localPath with a line break (a hand-written line; writers refuse it) is printed escaped, as the
    other commands print names: before, it split its FILE line in two, the second able to pass for a
    `head:` line to a script reading verify's output."""
    directory = tmp_path / "ledger"
    forged = "videos/x\nhead: 1:" + "ab" * 32
    _forge(
        directory,
        [
            {"type": "pending", "spotId": "s", "eraId": "e", "prompt": "p"},
            {"type": "generating", "spotId": "s", "eraId": "e", "prompt": "p"},
            _ready("s", forged, b"x"),
        ],
    )
    result = subprocess.run(
        [*VL, "--dir", str(directory), "verify", "--files"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr == "", result
    lines = result.stdout.splitlines()
    assert [line[:8] for line in lines if line.startswith("head: ")] == ["head: 3:"], lines
    assert "FILE s/e: videos/x\\nhead: 1:" + "ab" * 32 + ": missing" in lines
