"""A hypothesis state machine drives several writers and readers, I/O faults and reopenings against a
simple model of the entries; the ledger must agree with the model after every step."""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger import IllegalTransitionError, Ledger, LedgerError, SnapshotUpdateError, VideoMetadata
from ledger.projector import encode_snapshot
from projections.entries import fold

from .faults import FaultyOps
from .test_lifecycle import LEGAL

KEYS = [("colosseum", "rome"), ("akropolis", "athens"), ("petra", "nabataean")]
Model = dict[tuple[str, str], tuple[str, str]]  # key -> (status, prompt)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.directory = self.tmp / "ledger"
        self.handles = [Ledger(self.directory), Ledger(self.directory, projection="deferred")]
        self.model: Model = {}

    def teardown(self) -> None:
        for handle in self.handles:
            handle.close()
        shutil.rmtree(self.tmp)

    def _entry(self, key: tuple[str, str], status: str, prompt: str) -> VideoMetadata:
        if status in ("ready", "failed") and key in self.model:
            prompt = self.model[key][1]  # an attempt keeps its prompt
        return VideoMetadata(
            spot_id=key[0], era_id=key[1], prompt=prompt, status=status,  # type: ignore[arg-type]
            local_path="v.mp4" if status == "ready" else None, error="boom" if status == "failed" else None,
        )  # fmt: skip

    def _expected(self, key: tuple[str, str], entry: VideoMetadata) -> Model | None:
        """The model after this change, or None if the lifecycle forbids it."""
        before = self.model.get(key)
        after = dict(self.model)
        if before == (entry.status, entry.prompt):
            return after  # the same state: nothing recorded, nothing refused
        if (None if before is None else before[0], entry.status) not in LEGAL:
            return None
        after[key] = (entry.status, entry.prompt)
        return after

    def _actual(self) -> Model:
        return {
            e.key: (e.status, e.prompt)
            for e in Ledger(self.directory, readonly=True).get_all_video_metadata()
        }

    @rule(
        handle=st.integers(0, 1),
        key=st.sampled_from(KEYS),
        status=st.sampled_from(["pending", "generating", "ready", "failed"]),
        prompt=st.sampled_from(["first", "second"]),
    )
    def write(self, handle: int, key: tuple[str, str], status: str, prompt: str) -> None:
        entry = self._entry(key, status, prompt)
        expected = self._expected(key, entry)
        try:
            self.handles[handle].set_video_metadata(entry)
        except IllegalTransitionError:
            assert expected is None, f"refused a legal change {self.model.get(key)} -> {status}"
            return
        assert expected is not None, f"accepted an illegal change {self.model.get(key)} -> {status}"
        self.model = expected

    @rule(
        key=st.sampled_from(KEYS),
        status=st.sampled_from(["pending", "generating", "ready", "failed"]),
        k=st.integers(1, 20),
        err=st.sampled_from([errno.EIO, errno.ENOSPC, "short"]),
    )
    def write_with_a_fault(self, key: tuple[str, str], status: str, k: int, err: int | str) -> None:
        entry = self._entry(key, status, "faulty")
        expected = self._expected(key, entry)
        ops = FaultyOps(k, err=err)
        faulty = Ledger(self.directory, ops=ops)
        ops.arm()
        try:
            faulty.set_video_metadata(entry)
            outcome = "acknowledged"
        except IllegalTransitionError:
            outcome = "refused"
        except SnapshotUpdateError:
            outcome = "recorded"
        except LedgerError:
            outcome = "failed"
        faulty.close()
        actual = self._actual()
        if outcome == "refused":
            assert expected is None
        elif outcome in ("acknowledged", "recorded"):
            assert expected is not None and actual == expected
            self.model = expected
        else:  # not acknowledged: the change is there or not, nothing else
            assert actual in (self.model, expected), (actual, self.model, expected)
            self.model = actual

    @rule(handle=st.integers(0, 1))
    def reopen(self, handle: int) -> None:
        self.handles[handle].close()
        self.handles[handle] = Ledger(self.directory, projection="deferred" if handle else "inline")

    @rule(handle=st.integers(0, 1))
    def read(self, handle: int) -> None:
        got = {e.key: (e.status, e.prompt) for e in self.handles[handle].get_all_video_metadata()}
        assert got == self.model

    @precondition(lambda self: True)
    @invariant()
    def log_and_snapshot_agree(self) -> None:
        reader = Ledger(self.directory, readonly=True)
        assert reader.verify().problem in (None,) or "snapshot" in (reader.verify().problem or "")
        events = list(reader.history())
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert {k: (e.status, e.prompt) for k, e in fold(events).items()} == self.model
        snapshot = self.directory / "generated-videos.json"
        if snapshot.exists():
            assert snapshot.read_bytes().startswith(b"[")


def test_rebuild_after_the_machine_matches_the_snapshot_kept_current(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l") as ledger:
        ledger.set_video_metadata(VideoMetadata(spot_id="s", era_id="e", prompt="p", status="pending"))
        kept = ledger.snapshot_path.read_bytes()
        ledger.rebuild()
        assert ledger.snapshot_path.read_bytes() == kept == encode_snapshot(fold(ledger.history()))


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
