"""``copy_ledger`` (``video-ledger copy``): a whole ledger moved between stores, lines byte for byte, on real
files and the real PostgreSQL server (``tests/pg.py``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import pty
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger import Ledger
from ledger.backend import EventStore
from ledger.copy import CopyRefusedError, copy_ledger
from ledger.errors import ConflictError, CorruptLogError
from ledger.memory import MemoryStore
from ledger.postgres import (
    init,
)
from ledger.stores import open_store, store_name

from .conftest import (
    PYTHON,
    ROOT,
    FakeClock,
    cli_in_process,
    entry,
    files_state,
    one_line_error,
    small_ledger,
)
from .pg import PgServer, require_psycopg, tamper

require_psycopg()


HEAD = r"\d+:[0-9a-f]{64}"


require_psycopg()


N = 2500  # more than two batches of 1,000


def make_ledger(directory: Path, *, spots: str = "spot", n: int = N) -> bytes:
    """A ledger of ``n`` events (pending, generating, failed) in ``directory``: its events.jsonl."""
    third = n // 3
    with Ledger(directory, clock=FakeClock()) as ledger:
        ledger.set_many(entry(f"{spots}-{i}", "era", "pending") for i in range(n - 2 * third))
        ledger.set_many(entry(f"{spots}-{i}", "era", "generating") for i in range(third))
        ledger.set_many(entry(f"{spots}-{i}", "era", "failed") for i in range(third))
        assert ledger.head().seq == n
    return (directory / "events.jsonl").read_bytes()


def rows(url: str) -> list[tuple[Any, ...]]:
    """Every event row and the head row, as the superuser reads them: to prove nothing changed."""

    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute("SELECT seq, line, request_id FROM ledger_events ORDER BY seq").fetchall()
        head = conn.execute("SELECT seq, hash, ts FROM ledger_head").fetchall()
    return [*events, *head]


def audited(store: EventStore) -> int:
    """What ``verify`` reads from a store: every record checked; the number of records."""
    audit = store.check()
    for _ in audit:
        pass
    assert audit.torn is None
    return audit.end.seq


def test_file_to_postgresql_to_file_is_byte_identical_and_verifies_on_both(
    tmp_path: Path, pg_url: str
) -> None:
    source = make_ledger(tmp_path / "source")
    init(pg_url)
    seen: list[tuple[int, int]] = []
    report = copy_ledger(tmp_path / "source", pg_url, progress=lambda *p: seen.append(p))
    assert (report.copied, report.resumed) == (N, 0)
    assert seen == [(0, N), (1000, N), (2000, N), (N, N)], "one append per 1,000 records"
    back = copy_ledger(pg_url, str(tmp_path / "back"))
    assert (tmp_path / "back" / "events.jsonl").read_bytes() == source
    assert back.head[:3] == report.head[:3], "the same seq, hash and time (the bookmark is each store's own)"
    with contextlib.closing(open_store(pg_url)) as pg:
        assert audited(pg) == N and pg.head()[:3] == report.head[:3]
    with Ledger(tmp_path / "back", readonly=True) as copied, Ledger(tmp_path / "source") as original:
        verified = original.verify()
        assert verified.ok and copied.verify().ok
        assert copied.verify(expect_head=verified.head).ok, "a head kept from the source anchors the copy"


@pytest.mark.parametrize("kind", ["file", "postgresql"])
def test_an_interrupted_copy_resumes_after_the_prefix_the_target_holds(
    tmp_path: Path, pg_server: PgServer, kind: str
) -> None:
    source = make_ledger(tmp_path / "source")
    target = str(tmp_path / "target") if kind == "file" else pg_server.database()
    if kind == "postgresql":
        init(target)

    def interrupt(copied: int, total: int) -> None:
        if copied == 1000:
            raise KeyboardInterrupt  # as Ctrl-C between two appends

    with pytest.raises(KeyboardInterrupt):
        copy_ledger(tmp_path / "source", target, progress=interrupt)
    with contextlib.closing(open_store(target, readonly=True)) as partial:
        assert partial.head().seq == 1000
    seen: list[tuple[int, int]] = []
    report = copy_ledger(tmp_path / "source", target, progress=lambda *p: seen.append(p))
    assert (report.resumed, report.copied) == (1000, N - 1000)
    assert seen[0] == (1000, N) and seen[-1] == (N, N)
    assert copy_ledger(tmp_path / "source", target).copied == 0, "a finished copy run again copies nothing"
    copy_ledger(target, tmp_path / "back")
    assert (tmp_path / "back" / "events.jsonl").read_bytes() == source


def _stop_at(n: int) -> Callable[[int, int], None]:
    def progress(copied: int, total: int) -> None:
        if copied >= n:
            raise KeyboardInterrupt

    return progress


def _diverging(tmp_path: Path, how: str) -> Path:
    """A target ledger that is not a prefix of the source: another ledger of the same length, a longer one,
    or the source's first 1,000 records followed by one of its own."""
    directory = tmp_path / "target"
    if how == "another ledger":
        make_ledger(directory, spots="other")
    elif how == "longer":
        make_ledger(directory, n=N + 3)
    else:
        with pytest.raises(KeyboardInterrupt):
            copy_ledger(tmp_path / "source", directory, progress=_stop_at(1000))
        later = FakeClock(dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC))
        with Ledger(directory, clock=later) as ledger:
            ledger.set_video_metadata(entry("its-own", "era", "pending"))
        assert ledger.head().seq == 1001
    return directory


@pytest.mark.parametrize("how", ["another ledger", "longer", "went its own way"])
@pytest.mark.parametrize("kind", ["file", "postgresql"])
def test_a_target_that_is_not_a_prefix_of_the_source_is_refused_and_left_as_it_was(
    tmp_path: Path, pg_server: PgServer, kind: str, how: str
) -> None:
    make_ledger(tmp_path / "source")
    target: str = str(_diverging(tmp_path, how))
    if kind == "postgresql":
        target = pg_server.database()
        init(target)
        copy_ledger(tmp_path / "target", target)
    before = files_state(tmp_path / "target") if kind == "file" else rows(target)
    with pytest.raises(CopyRefusedError, match="nothing was written"):
        copy_ledger(tmp_path / "source", target)
    assert (files_state(tmp_path / "target") if kind == "file" else rows(target)) == before


@pytest.mark.parametrize("kind", ["file", "postgresql"])
def test_a_damaged_source_is_refused_before_anything_is_written(
    tmp_path: Path, pg_server: PgServer, kind: str
) -> None:
    make_ledger(tmp_path / "source", n=30)
    source: str = str(tmp_path / "source")
    if kind == "postgresql":
        source = pg_server.database()
        init(source)
        copy_ledger(tmp_path / "source", source)
        tamper(source, 12)
    else:
        log = tmp_path / "source" / "events.jsonl"
        lines = log.read_bytes().split(b"\n")
        lines[11] = lines[11][:10] + bytes([lines[11][10] ^ 1]) + lines[11][11:]
        log.write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptLogError, match="line 12"):
        copy_ledger(source, tmp_path / "new")
    assert not (tmp_path / "new").exists(), "a target directory is not even created"
    make_ledger(tmp_path / "prefix", n=5)
    before = files_state(tmp_path / "prefix")
    with pytest.raises(CorruptLogError, match="line 12"):
        copy_ledger(source, tmp_path / "prefix")
    assert files_state(tmp_path / "prefix") == before


def test_a_copied_directory_opens_to_the_same_snapshot_as_the_source(tmp_path: Path, pg_url: str) -> None:
    make_ledger(tmp_path / "source", n=300)
    with Ledger(tmp_path / "source") as ledger:
        ledger.rebuild()
        entries = ledger.get_all_video_metadata()
    init(pg_url)
    copy_ledger(tmp_path / "source", pg_url)
    copy_ledger(pg_url, tmp_path / "copy")
    with Ledger(tmp_path / "copy") as copied:
        assert copied.get_all_video_metadata() == entries
    snapshot = "generated-videos.json"
    assert (tmp_path / "copy" / snapshot).read_bytes() == (tmp_path / "source" / snapshot).read_bytes()


def test_a_target_another_writer_appends_to_during_the_copy_stops_it_with_a_conflict(tmp_path: Path) -> None:
    make_ledger(tmp_path / "source")
    count = itertools.count()

    def meddle(copied: int, total: int) -> None:
        if copied == 1000 and next(count) == 0:
            with Ledger(tmp_path / "target", projection="deferred", clock=FakeClock()) as other:
                other.set_video_metadata(entry("meddler", "era", "pending"))

    with pytest.raises(ConflictError, match="another writer is using it"):
        copy_ledger(tmp_path / "source", tmp_path / "target", progress=meddle)
    with Ledger(tmp_path / "target", readonly=True) as target:
        assert target.head().seq == 1001


def test_any_two_stores_copy_through_the_verbs_and_stores_passed_in_stay_open(tmp_path: Path) -> None:
    source = make_ledger(tmp_path / "source", n=40)
    memory = MemoryStore()
    report = copy_ledger(tmp_path / "source", memory, batch=7)
    assert (report.copied, memory.head()[:3]) == (40, report.head[:3]), "still open: the caller's to close"
    copy_ledger(memory, tmp_path / "back")
    assert (tmp_path / "back" / "events.jsonl").read_bytes() == source


def test_a_torn_tail_in_the_source_is_left_behind_and_the_sound_records_copied(tmp_path: Path) -> None:
    source = make_ledger(tmp_path / "source", n=30)
    torn = source.split(b"\n")[-2][:50]  # a crash cut an append short: never acknowledged
    (tmp_path / "source" / "events.jsonl").write_bytes(source + torn)
    report = copy_ledger(tmp_path / "source", tmp_path / "copy")
    assert report.copied == 30
    assert (tmp_path / "copy" / "events.jsonl").read_bytes() == source


def test_a_line_a_dead_writer_left_unfsynced_is_left_behind_and_the_durable_records_copied(
    tmp_path: Path,
) -> None:
    """A writer killed between its write and its fsync leaves a whole line the fsynced-size record does not
    vouch for (a crash state, not damage: readers do not show it). The check counted it, the read did not:
    the copy appended the durable records and then failed with "do not end at the head its check found"."""
    from .test_fsynced_part import _deferred_writer_killed_before_its_fsync

    _deferred_writer_killed_before_its_fsync(tmp_path / "source", acked=2)
    before = files_state(tmp_path / "source")
    report = copy_ledger(tmp_path / "source", tmp_path / "copy")
    assert (report.copied, report.head.seq) == (2, 2)
    durable = b"".join(
        line + b"\n" for line in (tmp_path / "source" / "events.jsonl").read_bytes().splitlines()[:2]
    )
    assert (tmp_path / "copy" / "events.jsonl").read_bytes() == durable
    assert files_state(tmp_path / "source") == before, "the source is only read"
    assert Ledger(tmp_path / "copy", readonly=True).verify().ok


@pytest.mark.parametrize("how", ["longer", "another"])
def test_a_refused_directory_target_with_a_torn_tail_is_left_as_it_was(tmp_path: Path, how: str) -> None:
    """The target directory was opened for writing before it was judged: that open set the torn tail of a
    target the copy then refused aside (a new file, the log cut), and printed a warning about it."""
    make_ledger(tmp_path / "source", n=30)
    make_ledger(tmp_path / "target", spots="other", n=40 if how == "longer" else 10)
    log = tmp_path / "target" / "events.jsonl"
    log.write_bytes(log.read_bytes() + b'{"v":2,"seq":')  # a crash cut an append short
    before = files_state(tmp_path / "target")
    with pytest.raises(CopyRefusedError, match="nothing was written"):
        copy_ledger(tmp_path / "source", tmp_path / "target")
    assert files_state(tmp_path / "target") == before


def test_copy_prints_one_summary_line_and_resumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pg_url: str
) -> None:
    source = small_ledger(tmp_path / "src")
    assert cli_in_process(capsys, "--store", pg_url, "init")[0] == 0
    code, out, err = cli_in_process(capsys, "copy", "--from", str(tmp_path / "src"), "--to", pg_url)
    assert (code, err) == (0, "")
    assert re.fullmatch(
        rf"copied 12 records from {re.escape(str(tmp_path / 'src' / 'events.jsonl'))} to "
        rf"{re.escape(str(store_name(pg_url)))}; head {HEAD}\n",
        out,
    )
    code, out, _ = cli_in_process(capsys, "copy", "--from", pg_url, "--to", str(tmp_path / "back"))
    assert code == 0 and (tmp_path / "back" / "events.jsonl").read_bytes() == source
    code, out, _ = cli_in_process(capsys, "copy", "--from", pg_url, "--to", str(tmp_path / "back"))
    assert code == 0 and "copied 0 records" in out and "resumed after the 12 already there" in out
    head = out.rsplit("head ", 1)[1].strip()
    code, out, _ = cli_in_process(capsys, "--dir", str(tmp_path / "back"), "verify", "--expect-head", head)
    assert code == 0, out


def test_copy_refusals_are_one_line_exit_1_and_change_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small_ledger(tmp_path / "src")
    with Ledger(tmp_path / "other", clock=FakeClock()) as other:
        other.set_video_metadata(entry("elsewhere", "era", "pending"))
    before = files_state(tmp_path / "other")
    code, out, err = cli_in_process(
        capsys, "copy", "--from", str(tmp_path / "src"), "--to", str(tmp_path / "other")
    )
    assert (code, out) == (1, "") and "differs from the source's" in one_line_error(err)
    assert files_state(tmp_path / "other") == before
    code, _, err = cli_in_process(
        capsys, "copy", "--from", str(tmp_path / "missing"), "--to", str(tmp_path / "x")
    )
    assert code == 1 and "no ledger at" in one_line_error(err)
    assert not (tmp_path / "x").exists()


def on_a_terminal(command: list[str]) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run ``command`` with its standard error on a terminal (a pty): the result, and what the terminal
    showed."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=follower, timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    return result, shown


def test_copy_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    small_ledger(tmp_path / "src", 5)
    command = [PYTHON, "-m", "ledger", "copy", "--from", str(tmp_path / "src")]
    piped = subprocess.run(
        [*command, "--to", str(tmp_path / "a")], capture_output=True, text=True, timeout=60
    )
    assert (piped.returncode, piped.stderr) == (0, "")
    result, shown = on_a_terminal([*command, "--to", str(tmp_path / "b")])
    assert result.returncode == 0 and result.stdout.startswith(b"copied 5 records")
    assert b"\rcopying: 0/5 records" in shown and b"\rcopying: 5/5 records" in shown


def test_a_copy_that_fails_before_any_progress_is_one_line_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, the progress line's closing newline was written even when no progress was shown: a
    damaged source gave an empty line, then the error."""
    small_ledger(tmp_path / "src", 3)
    log = tmp_path / "src" / "events.jsonl"
    data = bytearray(log.read_bytes())
    data[30] ^= 1  # line 1 damaged
    log.write_bytes(bytes(data))
    result, shown = on_a_terminal(
        [PYTHON, "-m", "ledger", "copy", "--from", str(tmp_path / "src"), "--to", str(tmp_path / "dst")]
    )
    assert result.returncode == 1
    assert shown.startswith(b"video-ledger: error: ") and shown.count(b"\n") == 1, shown
    assert not (tmp_path / "dst").exists()
