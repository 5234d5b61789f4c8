"""The lifecycle table and the rules beside it, through the store API (nothing written on refusal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import TRANSITIONS, IllegalTransitionError, InvalidEntryError, Ledger
from ledger.events import STATUSES
from ledger.lifecycle import is_legal

from .conftest import entry, files_state

# The table from docs/lifecycle.md, written out independently of the code.
LEGAL = {
    (None, "pending"),
    (None, "generating"),
    ("pending", "pending"),
    ("pending", "generating"),
    ("generating", "ready"),
    ("generating", "failed"),
    ("ready", "pending"),
    ("ready", "generating"),
    ("failed", "pending"),
    ("failed", "generating"),
}
PATHS = {  # how to bring an entry to each status legally
    None: [],
    "pending": ["pending"],
    "generating": ["generating"],
    "ready": ["generating", "ready"],
    "failed": ["generating", "failed"],
}


def test_table_in_code_matches_the_documented_table() -> None:
    assert {(a, b) for a in TRANSITIONS for b in TRANSITIONS[a]} == LEGAL
    doc = (Path(__file__).parent.parent / "docs" / "lifecycle.md").read_text()
    for before, after in LEGAL:
        assert f"| {before or '(new)'} | {after} |" in doc


@pytest.mark.parametrize("before", [None, *STATUSES])
@pytest.mark.parametrize("after", STATUSES)
def test_every_transition_is_allowed_or_refused_as_the_table_says(
    ledger: Ledger, ledger_dir: Path, before: str | None, after: str
) -> None:
    for status in PATHS[before]:
        ledger.set_video_metadata(entry(status=status))
    # a different prompt, path or error makes a same-status request a real change, not a no-op
    change = {
        "pending": entry(status="pending", prompt="another prompt"),
        "generating": entry(status="generating", prompt="another prompt"),
        "ready": entry(status="ready", local_path="videos/another.mp4"),
        "failed": entry(status="failed", error="another error"),
    }[after]
    legal = (before, after) in LEGAL
    assert is_legal(before, after) == legal  # type: ignore[arg-type]
    state = files_state(ledger_dir)
    if legal:
        assert ledger.set_video_metadata(change).status == after
    else:
        with pytest.raises(IllegalTransitionError) as info:
            ledger.set_video_metadata(change)
        assert info.value.current == before
        assert info.value.requested == after
        assert files_state(ledger_dir) == state, "a refused change writes nothing"


def test_setting_the_state_an_entry_already_has_appends_nothing(ledger: Ledger, ledger_dir: Path) -> None:
    for status in ("pending", "generating", "ready"):
        first = ledger.set_video_metadata(entry(status=status))
        state = files_state(ledger_dir)
        assert ledger.set_video_metadata(entry(status=status)) == first
        assert files_state(ledger_dir) == state
    ledger.set_video_metadata(entry(status="generating"))
    failed = ledger.mark_video_failed("colosseum", "rome-80ad", "boom")
    state = files_state(ledger_dir)
    assert ledger.mark_video_failed("colosseum", "rome-80ad", "boom") == failed
    assert files_state(ledger_dir) == state


def test_timestamps_follow_the_lifecycle(ledger: Ledger) -> None:
    queued = ledger.set_video_metadata(entry(status="pending"))
    assert queued.created_at is not None
    assert queued.completed_at is None
    running = ledger.set_video_metadata(entry(status="generating"))
    assert running.created_at == queued.created_at
    failed = ledger.mark_video_failed("colosseum", "rome-80ad", "timeout")
    assert failed.completed_at is not None
    assert failed.error == "timeout"
    assert failed.created_at == queued.created_at, "createdAt survives retries"
    retry = ledger.set_video_metadata(entry(status="generating"))
    assert retry.completed_at is None, "completedAt is cleared when work starts again"
    assert retry.error is None
    ready = ledger.set_video_metadata(entry(status="ready"))
    assert ready.completed_at is not None
    assert ready.completed_at > failed.completed_at
    assert ready.created_at == queued.created_at


def test_a_pending_entry_can_be_edited_in_place(ledger: Ledger) -> None:
    ledger.set_video_metadata(entry(status="pending", prompt="first"))
    edited = ledger.set_video_metadata(entry(status="pending", prompt="second"))
    assert edited.prompt == "second"
    assert [e.STATUS for e in ledger.history()] == ["pending", "pending"]


def test_a_running_attempt_keeps_its_prompt(ledger: Ledger) -> None:
    ledger.set_video_metadata(entry(status="generating", prompt="first"))
    with pytest.raises(IllegalTransitionError, match="already generating"):
        ledger.set_video_metadata(entry(status="generating", prompt="second"))
    with pytest.raises(IllegalTransitionError, match="cannot change the prompt"):
        ledger.set_video_metadata(entry(status="ready", prompt="second"))


def test_a_failed_attempt_keeps_its_local_path(ledger: Ledger) -> None:
    ledger.set_video_metadata(entry(status="generating", local_path="out/a.mp4"))
    failed = ledger.mark_video_failed("colosseum", "rome-80ad", "oom")
    assert failed.local_path == "out/a.mp4"
    ledger.set_video_metadata(entry(status="generating"))
    with pytest.raises(IllegalTransitionError, match="keeps its localPath"):
        ledger.set_video_metadata(entry(status="failed", error="x", local_path="elsewhere.mp4"))


@pytest.mark.parametrize(
    ("status", "fields", "match"),
    [
        ("ready", {"local_path": None}, "needs localPath"),
        ("failed", {"error": None}, "needs an error"),
        ("generating", {"error": "no"}, "only allowed on a failed entry"),
        ("pending", {"error": "no"}, "only allowed on a failed entry"),
    ],
)
def test_entries_that_are_wrong_in_themselves_are_refused(
    ledger: Ledger, ledger_dir: Path, status: str, fields: dict[str, object], match: str
) -> None:
    ledger.set_video_metadata(entry(status="generating"))
    state = files_state(ledger_dir)
    with pytest.raises(InvalidEntryError, match=match):
        ledger.set_video_metadata(entry(status=status, **fields))
    assert files_state(ledger_dir) == state


def test_passed_timestamps_are_ignored(ledger: Ledger) -> None:
    stored = ledger.set_video_metadata(entry(status="pending", created_at="1999-01-01T00:00:00.000000Z"))
    assert stored.created_at != "1999-01-01T00:00:00.000000Z"
