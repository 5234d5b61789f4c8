"""Recall (requeue every entry whose current video a model made) and reuse (take a video made with the
same provenance instead of generating)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import InvalidEntryError
from ledger.events import AttemptRef, ModelRef, Pending, Provenance, Ready, decode_event
from ledger.mp4 import write_mp4

from .conftest import Run

WAN1, WAN2, LTX = ModelRef(name="wan", version="1"), ModelRef(name="wan", version="2"), ModelRef(name="ltx")


def _made(
    ledger: Ledger, directory: Path, spot: str, model: ModelRef, *, fail: bool = False, seed: int = 7
) -> None:
    with ledger.generation(
        spot, "e", f"{spot} at dawn", provenance=Provenance(model=model, seed=seed)
    ) as job:
        if fail:
            job.failed("x")
        else:
            path = directory / "videos" / f"{spot}.mp4"
            write_mp4(path, spot.encode() * 50)
            job.ready(path)


def _events(directory: Path) -> list[object]:
    return [decode_event(line) for line in (directory / "events.jsonl").read_bytes().splitlines()]


@pytest.fixture
def recalled(ledger_dir: Path) -> Ledger:
    ledger = Ledger(ledger_dir)
    for spot, model in (("a", WAN1), ("b", WAN2), ("c", LTX)):
        _made(ledger, ledger_dir, spot, model)
    _made(ledger, ledger_dir, "d", WAN1, fail=True)  # failed: no current video
    return ledger


def test_a_dry_run_lists_what_a_recall_would_requeue_and_records_nothing(
    recalled: Ledger, ledger_dir: Path
) -> None:
    before = (ledger_dir / "events.jsonl").read_bytes()
    assert [r.spot_id for r in recalled.requeue_model("wan", version="1", dry_run=True)] == ["a"]
    assert [r.spot_id for r in recalled.requeue_model("wan", dry_run=True)] == ["a", "b"]
    assert recalled.requeue_model("wan", version="3", dry_run=True) == []
    assert (ledger_dir / "events.jsonl").read_bytes() == before


def test_a_recall_puts_the_entries_back_to_pending_with_the_reason_in_their_history(
    recalled: Ledger, ledger_dir: Path
) -> None:
    (record,) = recalled.requeue_model("wan", version="1")
    entry = recalled.get_video_metadata("a", "e")
    assert entry is not None and (entry.status, entry.local_path, entry.prompt) == (
        "pending",
        None,
        "a at dawn",
    )
    last = _events(ledger_dir)[-1]
    assert (
        isinstance(last, Pending)
        and last.reason == f"recalled: its video was made by wan@1 (attempt {record.seq})"
    )
    others = {e.spot_id: e.status for e in recalled.get_all_video_metadata()}
    assert others == {"a": "pending", "b": "ready", "c": "ready", "d": "failed"}
    assert recalled.requeue_model("wan", version="1") == []  # nothing left: records nothing more
    with pytest.raises(InvalidEntryError, match=r"provenance\.model\.name"):
        recalled.requeue_model("a\nb")


def test_the_cli_recalls_a_model(run_cli: Run, recalled: Ledger) -> None:
    recalled.close()
    code, out, err = run_cli("requeue", "--model", "wan", "--dry-run")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["spotId", "eraId", "attempt", "model", "localPath"]
    assert out.endswith("would put back 2 entries to pending\n")
    code, out, _ = run_cli("requeue", "--model", "wan", "--version", "2")
    assert code == 0 and out.endswith("put back 1 entry to pending\n") and "wan@2" in out
    code, out, _ = run_cli("history", "b", "e")
    assert "reason='recalled: its video was made by wan@2 (attempt" in out
    assert run_cli("requeue", "--version", "2")[0] == 2  # --model is required


def test_an_attempt_with_the_same_provenance_takes_the_video_instead_of_generating(
    ledger_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def generate(spot: str) -> Callable[[], Path]:
        def run() -> Path:
            calls.append(spot)
            path = ledger_dir / "videos" / f"{spot}.mp4"
            write_mp4(path, spot.encode() * 50)
            return path

        return run

    same = Provenance(model=WAN1, seed=7, parameters='{"steps":30}')
    with Ledger(ledger_dir) as ledger:
        first = ledger.generate_and_store_video("a", "e", "dawn", generate("a"), provenance=same, reuse=True)
        reused = ledger.generate_and_store_video("b", "e", "dawn", generate("b"), provenance=same, reuse=True)
        assert calls == ["a"], "the second attempt took the first one's video"
        assert (reused.status, reused.local_path) == ("ready", first.local_path)
        ready = _events(ledger_dir)[-1]
        assert isinstance(ready, Ready) and ready.reuses == AttemptRef(
            spot_id="a", era_id="e", attempt=first.attempt
        )
        (record,) = ledger.provenance("b", "e")
        assert record.reuses == ready.reuses and record.provenance == same and record.sha256 is not None
        (group,) = ledger.stats_by("model")
        assert (group.attempts, group.ready, group.reused) == (2, 2, 1)
        other_seed = Provenance(model=WAN1, seed=8, parameters='{"steps":30}')
        ledger.generate_and_store_video("c", "e", "dawn", generate("c"), provenance=other_seed, reuse=True)
        ledger.generate_and_store_video("d", "e", "dusk", generate("d"), provenance=same, reuse=True)
        assert calls == ["a", "c", "d"], "another seed or another prompt is another video"
        (ledger_dir / "videos" / "a.mp4").write_bytes(b"changed")
        with caplog.at_level(logging.WARNING, logger="ledger"):
            ledger.generate_and_store_video("f", "e", "dawn", generate("f"), provenance=same, reuse=True)
        assert calls[-1] == "f" and "not reusing b/e: videos/a.mp4: size is 7 bytes" in caplog.text
        assert ledger.generate_and_store_video("g", "e", "dawn", generate("g"), provenance=same) is not None
        assert calls[-1] == "g", "reuse only when the caller asks for it"
        with pytest.raises(InvalidEntryError, match="names a model and a seed"):
            ledger.reuse("h", "e", "dawn", provenance=Provenance(model=WAN1))
        with pytest.raises(InvalidEntryError, match="needs the provenance"):
            ledger.generate_and_store_video("h", "e", "dawn", generate("h"), reuse=True)


def test_a_reused_signed_video_passes_verify_c2pa(ledger_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("c2pa", reason="the c2pa extra: pip install 'video-ledger[c2pa]'")
    from ledger.disclosure import make_development_ca

    signer, root = make_development_ca(tmp_path / "ca")
    same = Provenance(model=WAN1, seed=7)
    path = ledger_dir / "videos" / "a.mp4"
    with Ledger(ledger_dir) as ledger:
        with ledger.generation("a", "e", "dawn", provenance=same, signer=signer) as job:
            write_mp4(path, b"frames" * 50)
            job.ready(path)
        assert ledger.reuse("b", "e", "dawn", provenance=same) is not None
        assert ledger.reuse("c", "e", "dawn", provenance=same) is not None  # takes b's, which is a's
        last = _events(ledger_dir)[-1]
        assert isinstance(last, Ready) and last.reuses is not None and last.reuses.spot_id == "a"
        assert ledger.verify_files(c2pa=True, trust_anchors=root).problems == []
