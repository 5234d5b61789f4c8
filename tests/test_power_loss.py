"""Simulated power loss at every file operation of log creation, an append and a projection.

``tests.powerloss.PowerLossOps`` runs the ledger for real while modelling what is durable; the power is cut
before operation k, for every k, and each of several random crash states (unsynced writes kept, dropped or
garbled; names created since the last directory fsync present or not) is written to a fresh directory and
recovered. Every time: every event acknowledged after its fsync is there, nothing unsubmitted appears,
seq is contiguous, the snapshot after recovery is the replay of the log, recovery twice changes nothing
more, and no temp files are left.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import pytest

from ledger import Ledger, VideoMetadata
from ledger.events import Pending, decode_event, encode_line, line_hash
from ledger.projector import encode_snapshot
from projections.entries import fold

from .conftest import FakeClock, Tally, files_state
from .faults import temp_leftovers
from .powerloss import PowerCut, PowerLossOps, materialize

Attempt = tuple[str, str]  # (spotId, status)


def _entry(spot: str, status: str) -> VideoMetadata:
    return VideoMetadata(
        spot_id=spot, era_id="era", prompt="p", status=status,  # type: ignore[arg-type]
        local_path="v.mp4" if status == "ready" else None,
    )  # fmt: skip


class Scenario:
    def __init__(
        self,
        name: str,
        before: list[Attempt],
        during: list[Attempt],
        *,
        deferred_before: bool = False,
        staged: list[Attempt] | None = None,
    ):
        self.name, self.before, self.during, self.deferred_before = name, before, during, deferred_before
        self.staged = staged or []
        """Events left in the staging file by writers still waiting for a group commit's leader."""

    @property
    def attempted(self) -> list[Attempt]:
        return self.before + self.staged + self.during

    def setup(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        if not self.before:
            return
        with Ledger(
            directory, clock=FakeClock(), projection="deferred" if self.deferred_before else "inline"
        ) as ledger:
            for spot, status in self.before:
                ledger.set_video_metadata(_entry(spot, status))
        lines = (directory / "events.jsonl").read_bytes().splitlines()
        staged = b""
        for spot, status in self.staged:  # as a writer stages lines that continue the log and its chain
            last = decode_event(lines[-1])
            lines.append(
                encode_line(Pending(1, last.seq + 1, last.ts, spot, "era", line_hash(lines[-1]), prompt="p"))[
                    :-1
                ]
            )
            assert status == "pending"
            staged += lines[-1] + b"\n"
        if staged:
            (directory / "events.jsonl.staged").write_bytes(staged)

    def run(self, directory: Path, ops: PowerLossOps, acknowledged: list[tuple[int, Attempt]]) -> None:
        clock = FakeClock()
        clock.now = clock.now.replace(hour=10)  # after the setup's events
        ledger = Ledger(directory, clock=clock, ops=ops)
        for attempt in self.during:
            ledger.set_video_metadata(_entry(*attempt))
            assert ledger.last_seq is not None
            acknowledged.append((ledger.last_seq, attempt))
        if self.name == "projection":
            ledger.rebuild()


SCENARIOS = {
    "creation": Scenario("creation", [], [("a", "generating")]),
    "append": Scenario(
        "append", [("a", "generating"), ("b", "pending")], [("a", "ready"), ("b", "generating")]
    ),
    "group commit": Scenario(  # opening moves the staged lines into the log (one write, one fsync)
        "group commit", [("a", "generating")], [("a", "ready")], staged=[("c", "pending"), ("d", "pending")]
    ),
    "projection": Scenario(
        "projection", [("a", "generating"), ("b", "pending"), ("a", "ready")], [], deferred_before=True
    ),
}


def check_recovered(
    directory: Path, acknowledged: list[tuple[int, Attempt]], attempted: list[Attempt], where: str
) -> None:
    snapshot = directory / "generated-videos.json"
    if snapshot.exists():  # before any recovery: the app may read it right after the power comes back
        json.loads(snapshot.read_bytes())
    Ledger(directory).close()  # recovery: what any writer does when it opens the directory
    recovered = files_state(directory)
    Ledger(directory).close()
    assert files_state(directory) == recovered, f"{where}: recovery twice changed more"
    events = list(Ledger(directory, readonly=True).history())
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), where
    got = [(e.spot_id, e.type) for e in events]
    assert got == attempted[: len(got)], f"{where}: something unsubmitted appeared"
    for seq, attempt in acknowledged:
        assert seq <= len(got) and got[seq - 1] == attempt, f"{where}: acknowledged event {seq} lost"
    report = Ledger(directory, readonly=True).verify()
    assert report.ok and report.torn is None, (where, report)
    assert (directory / "generated-videos.json").read_bytes() == encode_snapshot(fold(events)), where
    assert temp_leftovers(directory) == [], where


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_power_loss_at_every_operation(name: str, tmp_path: Path, long_run: bool) -> None:
    scenario = SCENARIOS[name]
    states_per_cut = 40 if long_run else 3
    tally = Tally(f"power loss: {name}")
    probe = tmp_path / "probe"
    scenario.setup(probe)
    ops = PowerLossOps(probe)
    scenario.run(probe, ops, [])
    ops.check_mirror()
    total = ops.count
    rng = random.Random(f"power-{name}")
    attempted = scenario.attempted
    for k in range(1, total + 2):
        directory = tmp_path / f"k{k}"
        scenario.setup(directory)
        cut = PowerLossOps(directory, cut_at=k)
        acknowledged: list[tuple[int, Attempt]] = []
        with pytest.raises(PowerCut) if k <= total else contextlib.nullcontext():
            scenario.run(directory, cut, acknowledged)
        for m in range(states_per_cut):
            state_dir = tmp_path / f"k{k}-s{m}"
            materialize(cut.crash_state(rng), state_dir)
            check_recovered(state_dir, acknowledged, attempted, where=f"{name} cut before op {k}, state {m}")
            tally.add("crash states")
            tally.add("acknowledged events checked", len(acknowledged))
        tally.add("cut points")
    tally.report()
    assert tally.counts["crash states"] >= (total + 1) * states_per_cut


def test_the_model_sees_every_operation(tmp_path: Path) -> None:
    """The power-loss model mirrors the real files exactly: no operation bypasses the seam."""
    for name, scenario in SCENARIOS.items():
        directory = tmp_path / name
        scenario.setup(directory)
        ops = PowerLossOps(directory)
        scenario.run(directory, ops, [])
        ops.check_mirror()
