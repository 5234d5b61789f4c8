"""The work state file beside the checkpoint (``checkpoint.json.work``): a fresh handle's first claim starts
from it, reading only the log after it, when the store holds its place exactly; anything in doubt (torn,
damaged, another log's, a log replaced or cut short) is passed over and the log read whole."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ledger import Ledger, RetryPolicy
from ledger.claiming import WORK_STATE_NAME, Claims
from ledger.events import crc32
from ledger.queue import decode_state, encode_state

from .conftest import FakeClock

QUEUED = 2100  # past the fold that saves the state (2048 records)


def _queue(directory: Path, clock: FakeClock, count: int = QUEUED) -> None:
    with Ledger(directory, clock=clock, projection="deferred") as ledger:
        ledger.set_retry_policy(RetryPolicy(max_attempts=3, backoff=5))
        ledger.set_many(
            [{"spotId": f"s{i:05d}", "eraId": "e", "prompt": "p", "status": "pending"} for i in range(count)]
        )
        for _ in range(3):  # a running attempt with a lease, a failed one in its backoff, a ready one
            job = ledger.claim(worker="w", lease=600)
            assert job is not None
        with Ledger(directory, clock=clock) as other:
            other.mark_video_failed("s00001", "e", "oom", attempt=1)
            other.mark_video_ready("s00002", "e", "videos/x.mp4", attempt=1)


def _fresh(directory: Path, clock: FakeClock) -> Claims:
    claims = Ledger(directory, clock=clock, projection="deferred").claims
    claims.seed()
    return claims


def test_a_fresh_handle_starts_from_the_state_the_first_full_read_saved(tmp_path: Path) -> None:
    clock = FakeClock()
    _queue(tmp_path, clock)
    state = tmp_path / WORK_STATE_NAME
    assert state.exists(), "the handle that read the whole log saved what it folded"
    with Ledger(tmp_path, clock=clock, readonly=True) as full:
        full._claims = Claims(full._writer, full)
        full._claims._seeded = True  # no state: the whole log, folded
        full._claims.sync()
        folded = full._claims
        fresh = _fresh(tmp_path, clock)
        saved_at = fresh.head.seq
        assert 0 < saved_at <= folded.head.seq
        fresh.sync()
        assert fresh.head[:3] == folded.head[:3]
        assert fresh.index.works == folded.index.works
        assert (fresh.index.policy, fresh.index.policy_seq) == (folded.index.policy, folded.index.policy_seq)
        now = "9999-01-01T00:00:00.000000Z"
        assert fresh.index.top(now, 50) == folded.index.top(now, 50), "the same order of claims"
        assert fresh.index.expired(now) == folded.index.expired(now) == [("s00000", "e")]
        assert fresh.index.top(now, 5, spot="s00001") == [("s00001", "e")], "a filter's queue built on demand"


@pytest.mark.parametrize("damage", ["flipped", "cut", "empty", "another-format", "bad-policy"])
def test_a_damaged_state_is_passed_over(tmp_path: Path, damage: str) -> None:
    clock = FakeClock()
    _queue(tmp_path, clock)
    state = tmp_path / WORK_STATE_NAME
    data = state.read_bytes()
    if damage == "flipped":
        data = data[:-40] + bytes([data[-40] ^ 1]) + data[-39:]
    elif damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "another-format":
        data = data.replace(b'"v":1', b'"v":9', 1)
    else:  # whole, its CRC-32 right, but a policy of 0 attempts, which no log can hold
        _, _, body = data.partition(b"\n")
        body = body.replace(b"[3,5.0,", b"[0,5.0,", 1)
        data = b'{"v":1,"size":%d,"crc32":"%08x"}\n' % (len(body), crc32(body)) + body
    state.write_bytes(data)
    assert decode_state(data) is None
    fresh = _fresh(tmp_path, clock)
    assert fresh.head.seq == 0 and not fresh.index.works, "nothing of it trusted"
    with Ledger(tmp_path, clock=clock) as ledger:
        job = ledger.claim()
        assert job is not None and (job.spot_id, job.attempt) == ("s00003", 1), "the log read whole"


def test_a_state_whose_place_the_store_does_not_hold_is_passed_over(tmp_path: Path) -> None:
    """Another log in the same directory (same length, other records), and a log cut short."""
    clock = FakeClock()
    _queue(tmp_path / "a", clock)
    _queue(tmp_path / "b", FakeClock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)))
    (tmp_path / "b" / WORK_STATE_NAME).write_bytes((tmp_path / "a" / WORK_STATE_NAME).read_bytes())
    assert _fresh(tmp_path / "b", clock).head.seq == 0, "its record at that seq has another hash"
    with Ledger(tmp_path / "b", readonly=True) as ledger:
        claims = ledger.claims
        claims.sync()
        assert claims.index.work(("s00001", "e")) is not None and claims.head.seq > QUEUED

    restored = decode_state((tmp_path / "a" / WORK_STATE_NAME).read_bytes())
    assert restored is not None
    index, place = restored
    beyond = (place[0] + 10, place[1], place[2], place[3])
    (tmp_path / "a" / WORK_STATE_NAME).write_bytes(encode_state(index, beyond))
    assert _fresh(tmp_path / "a", clock).head.seq == 0, "past the log's end"


def test_a_state_that_cannot_be_written_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / WORK_STATE_NAME).mkdir()  # a directory where the file would go: the rename fails
    _queue(tmp_path, FakeClock())
    assert "could not save the work state" in caplog.text
    with Ledger(tmp_path) as ledger:
        assert ledger.claim() is not None
