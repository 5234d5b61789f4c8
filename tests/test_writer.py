"""The write engine: a handle that has appended skips the look for the app's own file alone at each
commit, and a log removed under it is still not made anew beside the snapshot (the commit meets a
conflict, and what the snapshot holds that the log does not is refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger, UnimportedSnapshotError, VideoMetadata


def _entry(spot: str) -> VideoMetadata:
    return VideoMetadata(spot_id=spot, era_id="e", prompt="p", status="pending")


@pytest.mark.parametrize("projection", ["inline", "deferred"])
@pytest.mark.parametrize("checkpoint_too", [True, False], ids=["log removed", "log and checkpoint removed"])
def test_a_log_removed_under_an_open_handle_is_not_made_anew_beside_the_snapshot(
    tmp_path: Path, projection: str, checkpoint_too: bool
) -> None:
    directory = tmp_path / "ledger"
    with Ledger(directory) as first:
        first.set_video_metadata(_entry("a"))  # the snapshot holds it
    ledger = Ledger(directory, projection=projection)  # type: ignore[arg-type]
    ledger.set_video_metadata(_entry("b"))
    ledger.set_video_metadata(_entry("c"))  # a commit after one the store took: the check is skipped
    os.unlink(directory / "events.jsonl")
    if checkpoint_too:
        os.unlink(directory / "checkpoint.json")
    snapshot = (directory / "generated-videos.json").read_bytes()
    expected = UnimportedSnapshotError if checkpoint_too else CorruptLogError
    with pytest.raises(expected):
        ledger.set_video_metadata(_entry("d"))
    assert not (directory / "events.jsonl").exists()
    assert (directory / "generated-videos.json").read_bytes() == snapshot
    ledger.close()
