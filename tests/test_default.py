"""The task card's module-level functions (``ledger.default``): the directory they use."""

from __future__ import annotations

from pathlib import Path

import pytest

import ledger as ledger_module

from .conftest import entry


def test_module_level_twins_use_the_directory_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_LEDGER_DIR", str(tmp_path / "env-ledger"))
    ledger_module.set_video_metadata(entry(status="generating"))
    ledger_module.mark_video_failed("colosseum", "rome-80ad", "boom")
    assert ledger_module.get_video_metadata("colosseum", "rome-80ad").status == "failed"  # type: ignore[union-attr]
    assert len(ledger_module.get_all_video_metadata()) == 1
    assert [e.seq for e in ledger_module.history()] == [1, 2]
    assert ledger_module.verify().ok
    assert ledger_module.rebuild().events == 2
    assert (tmp_path / "env-ledger" / "events.jsonl").exists()


def test_module_level_default_is_data_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIDEO_LEDGER_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    ledger_module.set_video_metadata(entry(status="pending"))
    assert (tmp_path / "data" / "generated-videos.json").exists()
