"""The task card's module-level functions (``ledger.default``): the directory they use, and each takes what
the ``Ledger`` method it calls takes, so the card's API is never behind the handle's."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import ledger
from ledger import Ledger, default
from ledger.errors import AlreadyReadyError, MissingExtraError
from ledger.events import ModelRef, Provenance, Usage, Worker

from .conftest import entry


def test_module_level_twins_use_the_directory_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_LEDGER_DIR", str(tmp_path / "env-ledger"))
    ledger.set_video_metadata(entry(status="generating"))
    ledger.mark_video_failed("colosseum", "rome-80ad", "boom")
    assert ledger.get_video_metadata("colosseum", "rome-80ad").status == "failed"  # type: ignore[union-attr]
    assert len(ledger.get_all_video_metadata()) == 1
    assert [e.seq for e in ledger.history()] == [1, 2]
    assert ledger.verify().ok
    assert ledger.rebuild().events == 2
    assert (tmp_path / "env-ledger" / "events.jsonl").exists()


def test_module_level_default_is_data_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIDEO_LEDGER_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    ledger.set_video_metadata(entry(status="pending"))
    assert (tmp_path / "data" / "generated-videos.json").exists()


@pytest.mark.parametrize(
    "name",
    ["mark_video_failed", "mark_video_ready", "generation", "generate_and_store_video", "claim", "reap"],
)
def test_each_module_function_takes_every_argument_its_method_takes(name: str) -> None:
    method = inspect.signature(getattr(Ledger, name))
    function = inspect.signature(getattr(default, name))
    expected = [(p.name, p.kind, p.default) for p in method.parameters.values() if p.name != "self"]
    assert [(p.name, p.kind, p.default) for p in function.parameters.values()] == expected

    def types(function: object) -> dict[str, object]:
        hints = inspect.get_annotations(function)  # type: ignore[arg-type]
        return {k: v for k, v in hints.items() if k not in ("self", "return")}

    assert types(getattr(default, name)) == types(getattr(Ledger, name)), (
        "the same types (the **records and **options TypedDicts included)"
    )


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("VIDEO_LEDGER_STORE", raising=False)
    monkeypatch.setenv("VIDEO_LEDGER_DIR", str(tmp_path / "data"))
    yield tmp_path / "data"
    default.default_ledger().close()


def test_provenance_usage_worker_and_regenerate_through_the_module_functions(here: Path) -> None:
    made = Provenance(model=ModelRef(name="wan", version="2.1"), seed=42, parameters='{"steps":30}')
    video = here / "videos" / "a.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"\x00" * 64)
    with ledger.generation("s", "e", "p", provenance=made, worker=Worker(name="gpu-1")) as job:
        job.ready(video, usage=Usage(gpu_seconds=3.5, gpu_type="L4"))
    with pytest.raises(AlreadyReadyError):
        ledger.generation("s", "e", "p").__enter__()
    with ledger.generation("s", "e", "p", regenerate=True) as again:
        again.failed("out of memory", usage=Usage(gpu_seconds=1.0))
    ledger.set_video_metadata({"spotId": "t", "eraId": "e", "prompt": "p", "status": "generating"})
    ledger.mark_video_ready(
        "t", "e", "videos/a.mp4", provenance=Provenance(seed=7), usage=Usage(gpu_seconds=2.0), attempt=1
    )
    records = default.default_ledger().provenance("s", "e")
    assert [r.outcome for r in records] == ["failed", "ready"], "the current attempt first"
    first = records[1]
    assert first.provenance == made and first.worker is not None and first.worker.name == "gpu-1"
    assert first.usage is not None and first.usage.gpu_seconds == 3.5 and first.usage.gpu_type == "L4"
    assert records[0].usage is not None and records[0].usage.gpu_seconds == 1.0
    [t] = default.default_ledger().provenance("t", "e")
    assert t.provenance == Provenance(seed=7) and t.usage == Usage(gpu_seconds=2.0)


def test_claim_through_the_module_function(here: Path) -> None:
    ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "pending"})
    job = default.claim(worker="shell-1", lease="90s")
    assert job is not None and (job.spot_id, job.era_id, job.attempt, job.lease) == ("s", "e", 1, 90.0)
    with job:
        job.failed("no GPU")
    assert default.claim() is None, "the default policy's backoff has not passed"
    [record] = default.default_ledger().provenance("s", "e")
    assert record.worker is not None and record.worker.name == "shell-1"


def test_missing_extra_error_is_one_of_the_ledger_errors() -> None:
    from ledger import errors, stores
    from ledger.disclosure import C2paMissingError

    assert "MissingExtraError" in errors.__all__ and issubclass(MissingExtraError, errors.LedgerError)
    assert stores.MissingExtraError is MissingExtraError, "ledger.stores named it first: it still does"
    assert issubclass(C2paMissingError, MissingExtraError)


def test_the_package_exports_every_module_level_function() -> None:
    assert set(default.__all__) <= set(ledger.__all__)
    assert all(getattr(ledger, name) is getattr(default, name) for name in default.__all__)
