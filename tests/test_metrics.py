"""``video-ledger metrics`` (ledger/metrics.py): the Prometheus text format, parsed with prometheus_client's
own parser; incremental (a render reads only what was appended since the last); served over HTTP and kept
as a textfile by real processes."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ledger import Ledger
from ledger.metrics import Exporter
from projections.metrics import MAX_REASONS, Counters, reason_class

from .conftest import PYTHON, ROOT, entry, recent_clock


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name, tuple(sorted(s.labels.items()))] = s.value
    return found


def _record(directory: Path) -> None:
    with Ledger(directory, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one", "pending"))
        for spot in ("b", "c"):
            ledger.set_video_metadata(entry(spot, "one"))
        ledger.mark_video_failed("b", "one", "CUDAOutOfMemory: 24 GiB were not enough")
        ledger.set_video_metadata(entry("b", "one"))
        ledger.mark_video_failed("b", "one", "the render farm went away")
        ledger.set_video_metadata(entry("c", "one", "ready"))


def test_the_exposition_parses_and_says_what_the_ledger_holds(ledger_dir: Path) -> None:
    _record(ledger_dir)
    with Exporter(ledger_dir) as exporter:
        found = samples(exporter.render())
    assert found["video_ledger_entries", (("status", "failed"),)] == 1
    assert found["video_ledger_entries", (("status", "ready"),)] == 1
    assert found["video_ledger_entries", (("status", "pending"),)] == 1
    assert found["video_ledger_head_seq", ()] == 7
    assert found["video_ledger_attempts_total", ()] == 3
    assert found["video_ledger_attempt_outcomes_total", (("outcome", "failed"),)] == 2
    assert found["video_ledger_failures_total", (("reason", "CUDAOutOfMemory"),)] == 1
    assert found["video_ledger_failures_total", (("reason", "other"),)] == 1
    assert found["video_ledger_events_total", (("type", "generating"),)] == 3
    assert found["video_ledger_healthy", ()] == 1 and found["video_ledger_snapshot_lag_events", ()] == 0
    with Ledger(ledger_dir, readonly=True) as ledger:
        stamp = ledger.head().ts
    assert abs(found["video_ledger_last_event_timestamp_seconds", ()] - _epoch(stamp)) < 1e-5


def _epoch(ts: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(ts).timestamp()


def test_a_render_reads_only_what_was_appended_since_the_last(ledger_dir: Path) -> None:
    _record(ledger_dir)
    with Exporter(ledger_dir) as exporter:
        exporter.render()
        log = ledger_dir / "events.jsonl"
        data = bytearray(log.read_bytes())
        data[40] ^= 0x01  # damage to the first line, already counted: a full read would stop here
        log.write_bytes(bytes(data))
        with Ledger(ledger_dir, projection="deferred") as ledger:  # appends after the damage are read
            ledger.set_video_metadata(entry("d", "two"))
        found = samples(exporter.render())
    assert found["video_ledger_attempts_total", ()] == 4
    assert found["video_ledger_head_seq", ()] == 8


def test_failure_reasons_stay_few() -> None:
    assert reason_class("RuntimeError: boom") == "RuntimeError"
    assert reason_class("torch.cuda.OutOfMemoryError: x") == "torch.cuda.OutOfMemoryError"
    assert reason_class("no class here") == "other"
    from ledger.events import Failed

    counters = Counters()
    counters.add(
        Failed(
            v=2,
            seq=i + 1,
            ts="2026-01-01T00:00:00.000000Z",
            spot_id="s",
            era_id="e",
            prev="0" * 64,
            error=f"Error{i}: x",
        )
        for i in range(MAX_REASONS + 10)
    )
    assert len(counters.failures) == MAX_REASONS + 1 and counters.failures["other"] == 10


def _metrics(ledger_dir: Path, *options: str) -> subprocess.Popen[bytes]:
    """``video-ledger metrics`` with ``options``, running as its own process."""
    return subprocess.Popen([PYTHON, "-m", "ledger", "--dir", str(ledger_dir), "metrics", *options], cwd=ROOT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_answers_scrapes_and_follows_the_log(ledger_dir: Path) -> None:
    _record(ledger_dir)
    port = _free_port()
    server = _metrics(ledger_dir, "--serve", f"127.0.0.1:{port}")
    try:
        body = _scrape(port)
        assert samples(body)["video_ledger_attempts_total", ()] == 3
        with Ledger(ledger_dir) as ledger:
            ledger.set_video_metadata(entry("d", "two"))
        assert samples(_scrape(port))["video_ledger_attempts_total", ()] == 4
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0


def _scrape(port: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text: str = answer.read().decode()
                return text
        except OSError:
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.05)


def test_textfile_is_kept_current_for_the_collector(ledger_dir: Path, tmp_path: Path) -> None:
    _record(ledger_dir)
    target = tmp_path / "video_ledger.prom"
    writer = _metrics(ledger_dir, "--textfile", str(target))
    try:
        _until(lambda: target.exists() and samples(target.read_text())["video_ledger_head_seq", ()] == 7)
        with Ledger(ledger_dir) as ledger:
            ledger.set_video_metadata(entry("d", "two"))
        _until(lambda: samples(target.read_text())["video_ledger_head_seq", ()] == 8)
    finally:
        writer.terminate()
        assert writer.wait(timeout=30) == 0
    assert not list(tmp_path.glob("*.tmp-*"))


def _until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_gpu_seconds_are_counted_by_the_outcome_of_the_attempt_that_spent_them(ledger_dir: Path) -> None:
    from ledger.events import Usage

    with Ledger(ledger_dir, clock=recent_clock()) as ledger:
        ledger.set_video_metadata(entry("a", "one"))
        ledger.mark_video_failed("a", "one", "OOM: x", usage=Usage(gpu_seconds=9.5))
        ledger.set_video_metadata(entry("a", "one"))
        video = ledger_dir / "a.mp4"
        video.write_bytes(b"video")
        ledger.mark_video_ready("a", "one", str(video), usage=Usage(gpu_seconds=30.25))
        ledger.set_video_metadata(entry("b", "one"))
        ledger.mark_video_failed("b", "one", "OOM: y")  # no usage reported: nothing added
    with Exporter(ledger_dir) as exporter:
        found = samples(exporter.render())
    assert found["video_ledger_gpu_seconds_total", (("outcome", "ready"),)] == 30.25
    assert found["video_ledger_gpu_seconds_total", (("outcome", "failed"),)] == 9.5


def test_an_idle_connection_holds_up_neither_scrapes_nor_the_stop(ledger_dir: Path) -> None:
    _record(ledger_dir)
    port = _free_port()
    server = _metrics(ledger_dir, "--serve", f"127.0.0.1:{port}")
    try:
        _scrape(port)
        with socket.create_connection(("127.0.0.1", port)):  # connected, sends nothing
            assert samples(_scrape(port, timeout=10))["video_ledger_head_seq", ()] == 7
            server.terminate()
            assert server.wait(timeout=5) == 0  # at once, the idle client still connected
    finally:
        server.kill()
        server.wait()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_serve_listens_on_an_ipv6_address(ledger_dir: Path) -> None:
    if not _ipv6_loopback():
        import pytest

        pytest.skip("no IPv6 loopback here")
    _record(ledger_dir)
    port = _free_port()
    server = _metrics(ledger_dir, "--serve", f"[::1]:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5) as answer:
                    assert "video_ledger_head_seq 7" in answer.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server never answered"
                time.sleep(0.05)
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0


def test_textfile_refuses_a_busy_interval_and_clears_a_dead_writers_temp_file(
    ledger_dir: Path, tmp_path: Path, run_cli: object
) -> None:
    from ledger.cli import main

    _record(ledger_dir)
    target = tmp_path / "v.prom"
    assert main(["--dir", str(ledger_dir), "metrics", "--textfile", str(target), "--interval", "0"]) == 2
    leftover = tmp_path / "v.prom.tmp-0123456789ab"
    leftover.write_text("half")
    writer = _metrics(ledger_dir, "--textfile", str(target))
    try:
        _until(lambda: target.exists())
    finally:
        writer.terminate()
        assert writer.wait(timeout=30) == 0
    assert not leftover.exists()
