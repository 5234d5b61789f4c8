"""The provenance view and the stats by model, era and spot: pure folds over the events."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.events import (
    GENESIS_HASH,
    EventType,
    Failed,
    Generating,
    Imported,
    InputRef,
    ModelRef,
    Pending,
    Provenance,
    Ready,
    Usage,
    decode_event,
)
from ledger.provenance import text_sha256
from projections import timeline as timeline_view
from projections.provenance import complete, current_videos, fingerprint, made_by, provenance, reusable
from projections.stats import NO_MODEL, stats, stats_by

GOLDEN = sorted((Path(__file__).parent / "golden").glob("v*"))


def _golden(name: str) -> list[EventType]:
    return [
        decode_event(line)
        for line in (Path(__file__).parent / "golden" / name / "events.jsonl").read_bytes().splitlines()
    ]


def _log(*makers: object) -> list[EventType]:
    """Events with seq 1, 2, ... and times a second apart, from (type, spot, era, fields) tuples."""
    events: list[EventType] = []
    for seq, (cls, spot, era, fields) in enumerate(makers, 1):  # type: ignore[misc]
        ts = f"2026-12-04T10:00:{seq:02d}.000000Z"
        events.append(cls(2, seq, ts, spot, era, GENESIS_HASH, **fields))
    return events


def test_every_attempt_of_an_entry_the_current_one_first() -> None:
    records = provenance(_golden("v2-provenance"), "colosseum", "rome-80ad")
    # a format-2 log: each attempt is numbered as its entry, job.attempt and takeover= name it (its seq)
    assert [(r.attempt, r.seq, r.outcome) for r in records] == [(4, 4, "ready"), (2, 2, "failed")]
    current, first = records
    assert current.worker is not None and current.worker.name == "gpu-b"
    assert current.provenance is not None and current.provenance.seed == 987654321  # completed at ready
    assert current.provenance.model is not None and current.provenance.model.name == "wan2.1-t2v"
    assert (current.local_path, current.size) == ("videos/colosseum-rome-80ad.mp4", 1493)
    assert first.provenance is not None and first.provenance.seed == 1234
    assert first.error == "RuntimeError: CUDA out of memory" and first.usage is not None
    assert first.usage.gpu_type == "NVIDIA A100-SXM4-80GB"
    assert provenance(_golden("v2-provenance"), "nowhere", "never") == []
    running = provenance(_golden("v2-provenance"), "akropolis", "athens-430bc")
    assert [(r.outcome, r.ended) for r in running] == [(None, None)]


@pytest.mark.parametrize("golden", GOLDEN, ids=[g.name for g in GOLDEN])
def test_the_view_numbers_attempts_as_the_timeline_does(golden: Path) -> None:
    events = _golden(golden.name)
    for spot, era in {(e.spot_id, e.era_id) for e in events}:
        story = timeline_view.timeline(events, spot, era)
        records = provenance(events, spot, era)
        assert [(a.number, a.started, a.outcome) for a in story.attempts] == [
            (r.attempt, r.started, r.outcome) for r in reversed(records)
        ]


def test_fields_given_at_ready_complete_the_record_given_at_the_start() -> None:
    start = Provenance(model=ModelRef(name="m", version="1"), seed=5, parameters='{"a":1}')
    assert complete(start, None) is start
    assert complete(None, start) is start
    assert complete(start, Provenance(seed=9)) == Provenance(model=start.model, seed=9, parameters='{"a":1}')
    newer = ModelRef(name="m", version="1.1")
    assert complete(start, Provenance(model=newer)) == Provenance(model=newer, seed=5, parameters='{"a":1}')


def test_stats_by_model_counts_attempts_gpu_time_and_the_share_spent_on_failures() -> None:
    wan = {"prompt": "p", "provenance": Provenance(model=ModelRef(name="wan", version="2.1"))}
    ltx = Provenance(model=ModelRef(name="ltx"))
    old = "2025-01-01T00:00:00.000000Z"
    events = _log(
        (Pending, "s1", "e1", {"prompt": "p"}),
        (Generating, "s1", "e1", wan),
        (
            Failed,
            "s1",
            "e1",
            {"error": "x", "usage": Usage(gpu_seconds=30.0, wall_seconds=31.0)},
        ),
        (Generating, "s1", "e1", wan),
        (Ready, "s1", "e1", {"local_path": "v", "usage": Usage(gpu_seconds=90.0, cost=2.0, currency="EUR")}),
        (Generating, "s2", "e1", {"prompt": "p"}),  # the model is named only at ready
        (Ready, "s2", "e1", {"local_path": "w", "provenance": ltx, "usage": Usage(gpu_seconds=10.0)}),
        (Generating, "s3", "e2", wan),
        (Failed, "s3", "e2", {"error": "reaped", "attempt": 8}),  # no usage: reaped
        (Generating, "s3", "e2", {"prompt": "p"}),  # still running, no model
        (Imported, "s4", "e2", {"status": "ready", "prompt": "p", "local_path": "x", "created_at": old}),
    )
    by_model = {g.key: g for g in stats_by(events, "model")}
    assert list(by_model) == [NO_MODEL, "ltx", "wan@2.1"]
    wan = by_model["wan@2.1"]
    assert (wan.attempts, wan.ready, wan.failed, wan.running, wan.without_usage) == (3, 1, 2, 0, 1)
    assert wan.success_rate == pytest.approx(1 / 3)
    assert (wan.gpu_seconds, wan.failed_gpu_seconds) == (120.0, 30.0)
    assert wan.failed_gpu_share == pytest.approx(0.25)
    assert (wan.wall_seconds, wan.cost) == (31.0, {"EUR": 2.0})
    other = by_model["ltx"]
    assert (other.attempts, other.ready, other.gpu_seconds, other.failed_gpu_share) == (1, 1, 10.0, 0.0)
    none = by_model[NO_MODEL]
    assert (none.attempts, none.running, none.success_rate, none.failed_gpu_share) == (1, 1, None, None)
    by_era = {g.key: (g.attempts, g.ready, g.failed, g.running) for g in stats_by(events, "era")}
    assert by_era == {"e1": (3, 2, 1, 0), "e2": (2, 0, 1, 1)}
    by_spot = {g.key: g.attempts for g in stats_by(events, "spot")}
    assert by_spot == {"s1": 2, "s2": 1, "s3": 2}  # the import is no attempt


@pytest.mark.parametrize("golden", GOLDEN, ids=[g.name for g in GOLDEN])
@pytest.mark.parametrize("by", ["model", "era", "spot"])
def test_every_grouping_counts_each_attempt_once(golden: Path, by: str) -> None:
    events = _golden(golden.name)
    overall = stats(events)
    groups = stats_by(events, by)  # type: ignore[arg-type]
    imported_attempts = sum(1 for e in events if isinstance(e, Imported) and e.status != "pending")
    assert sum(g.attempts for g in groups) == overall.attempts - imported_attempts
    assert sum(g.ready for g in groups) == overall.ready_attempts
    assert sum(g.failed for g in groups) == overall.failed_attempts


def _made(model: ModelRef | None, seed: int | None = 7, **more: object) -> dict[str, object]:
    return {"prompt": "p", "provenance": Provenance(model=model, seed=seed, **more)}  # type: ignore[arg-type]


WAN1, WAN2 = ModelRef(name="wan", version="1"), ModelRef(name="wan", version="2")


def test_made_by_names_the_entries_whose_current_video_that_model_made() -> None:
    events = _log(
        (Generating, "a", "e", _made(WAN1)),
        (Ready, "a", "e", {"local_path": "a.mp4"}),
        (Generating, "b", "e", _made(WAN2)),
        (Ready, "b", "e", {"local_path": "b.mp4"}),
        (Generating, "c", "e", _made(WAN1)),
        (Ready, "c", "e", {"local_path": "c.mp4"}),
        (Pending, "c", "e", {"prompt": "again"}),  # requeued: no current video
        (Generating, "d", "e", _made(WAN1)),
        (Failed, "d", "e", {"error": "x"}),
        (Generating, "f", "e", {"prompt": "p"}),  # the model named at ready
        (Ready, "f", "e", {"local_path": "f.mp4", "provenance": Provenance(model=WAN1)}),
        (Generating, "g", "e", _made(WAN1)),
        (Ready, "g", "e", {"local_path": "g.mp4"}),
        (Generating, "g", "e", _made(WAN2)),  # regenerating: not ready now
    )
    assert [(r.spot_id, r.local_path) for r in made_by(events, "wan", "1")] == [
        ("a", "a.mp4"),
        ("f", "f.mp4"),
    ]
    assert [r.spot_id for r in made_by(events, "wan")] == ["a", "b", "f"]
    assert made_by(events, "wan", "3") == [] and made_by(events, "ltx") == []
    assert set(current_videos(events)) == {("a", "e"), ("b", "e"), ("f", "e")}


def test_a_video_is_reusable_by_the_same_model_seed_parameters_prompt_and_inputs() -> None:
    ref = InputRef(role="image", sha256="11" * 32)
    events = _log(
        (Generating, "a", "e", _made(WAN1, parameters='{"s":1}', inputs=(ref,))),
        (Ready, "a", "e", {"local_path": "a.mp4", "sha256": "aa" * 32}),
        (Generating, "b", "e", _made(WAN1, seed=None)),  # no seed: not reproducible
        (Ready, "b", "e", {"local_path": "b.mp4"}),
        (Generating, "c", "e", _made(WAN1, parameters='{"s":1}', inputs=(ref,))),
        (Ready, "c", "e", {"local_path": "c.mp4"}),
        (Pending, "c", "e", {"prompt": "p"}),  # replaced: its video may be gone
    )
    found = reusable(events, text_sha256)
    (key,) = found
    assert found[key].spot_id == "a"
    assert key == fingerprint(
        Provenance(model=WAN1, seed=7, parameters='{"s":1}', inputs=(ref,)), text_sha256("p")
    )
    assert fingerprint(Provenance(model=WAN1, seed=7), text_sha256("p")) != fingerprint(
        Provenance(model=WAN1, seed=8), text_sha256("p")
    )
    assert fingerprint(Provenance(model=WAN1, seed=7), text_sha256("p")) != fingerprint(
        Provenance(model=WAN1, seed=7), text_sha256("q")
    )
    assert fingerprint(Provenance(model=None, seed=7), "x") is None
