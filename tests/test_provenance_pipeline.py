"""Provenance, worker and usage through the write path, the pipeline, the C2PA signer and the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from ledger import Ledger
from ledger.errors import IllegalTransitionError, InvalidEntryError
from ledger.events import Failed, Generating, ModelRef, Provenance, Ready, Usage, Worker, decode_event
from ledger.mp4 import write_mp4
from ledger.provenance import canonical_json, text_sha256

from .conftest import Run

WAN = ModelRef(name="wan2.1-t2v", version="14B", weights_digest="sha256:" + "ab" * 32)
GIVEN = Provenance(
    model=WAN, seed=42, parameters='{"steps": 30, "guidance": 6.5}', prompt_template="{p}, cinematic",
    prompt_sha256=text_sha256("the Colosseum, cinematic"),
)  # fmt: skip


def _events(directory: Path) -> list[object]:
    return [decode_event(line) for line in (directory / "events.jsonl").read_bytes().splitlines()]


def _video(directory: Path, name: str = "colosseum.mp4") -> Path:
    path = directory / "videos" / name
    write_mp4(path, b"frames" * 300)
    return path


def test_an_attempt_records_what_made_it_who_ran_it_and_what_it_cost(ledger_dir: Path) -> None:
    worker = Worker(name="gpu-a", pid=7)
    with (
        Ledger(ledger_dir) as ledger,
        ledger.generation("colosseum", "rome-80ad", "the Colosseum", provenance=GIVEN, worker=worker) as job,
    ):
        time.sleep(0.05)
        job.ready(
            _video(ledger_dir),
            usage=Usage(gpu_seconds=12.5, gpu_type="A100"),
            provenance=Provenance(seed=43),
        )
    started, ready = _events(ledger_dir)
    assert isinstance(started, Generating) and isinstance(ready, Ready)
    assert started.provenance == msgspec.structs.replace(
        GIVEN, parameters=canonical_json({"steps": 30, "guidance": 6.5})
    )
    assert started.worker == Worker(name="gpu-a", pid=7)
    assert ready.provenance == Provenance(seed=43)
    assert ready.usage is not None and (ready.usage.gpu_seconds, ready.usage.gpu_type) == (12.5, "A100")
    assert (
        ready.usage.wall_seconds is not None and 0.05 <= ready.usage.wall_seconds < 5
    )  # measured by the job
    with Ledger(ledger_dir, readonly=True) as ledger:
        (current,) = ledger.provenance("colosseum", "rome-80ad")
    assert (
        current.provenance is not None and current.provenance.seed == 43 and current.provenance.model == WAN
    )
    assert (current.outcome, current.size, current.sha256) == ("ready", ready.size, ready.sha256)


def test_a_failed_attempt_carries_the_usage_the_worker_reported_and_its_wall_time(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        _failing(ledger, "a", Usage(gpu_seconds=3.0, gpu_type="A100"), provenance=GIVEN)
        with ledger.generation("b", "e", "p") as job:
            entry = job.failed(
                "rejected by the safety filter", usage=Usage(gpu_seconds=9.0, wall_seconds=10.0)
            )
        assert entry.status == "failed" and job.done
    events = _events(ledger_dir)
    failed = [e for e in events if isinstance(e, Failed)]
    assert [(e.error, e.usage.gpu_seconds if e.usage else None) for e in failed] == [
        ("RuntimeError: CUDA out of memory", 3.0),
        ("rejected by the safety filter", 9.0),
    ]
    assert failed[0].usage is not None and failed[0].usage.wall_seconds is not None
    assert failed[1].usage is not None and failed[1].usage.wall_seconds == 10.0  # the worker's own figure
    assert len(events) == 4, "job.failed ends the attempt: the block records nothing more"


def test_every_job_records_its_wall_time(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger, ledger.generation("a", "e", "p") as job:
        job.ready(_video(ledger_dir))
    ready = _events(ledger_dir)[-1]
    assert isinstance(ready, Ready) and ready.usage is not None and ready.usage.wall_seconds is not None
    assert (ready.usage.gpu_seconds, ready.provenance) == (None, None)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ("begin", r"provenance\.promptSha256 'nope' is not a SHA-256"),
        ("worker", r"worker\.name"),
        ("ready", r"usage\.gpuSeconds is nan"),
        ("failed", r"usage\.currency is given without usage\.cost"),
    ],
)
def test_a_bad_record_is_refused_and_nothing_is_written(ledger_dir: Path, call: str, match: str) -> None:
    with Ledger(ledger_dir) as ledger:
        n = ledger.begin_attempt("a", "e", "p").attempt
        calls: dict[str, Callable[[], object]] = {
            "begin": lambda: ledger.begin_attempt("b", "e", "p", provenance=Provenance(prompt_sha256="nope")),
            "worker": lambda: ledger.begin_attempt("b", "e", "p", worker=Worker(name="a\nb")),
            "ready": lambda: ledger.mark_video_ready(
                "a", "e", "v", attempt=n, usage=Usage(gpu_seconds=math.nan)
            ),
            "failed": lambda: ledger.mark_video_failed("a", "e", "x", attempt=n, usage=Usage(currency="EUR")),
        }
        before = (ledger_dir / "events.jsonl").read_bytes()
        with pytest.raises(InvalidEntryError, match=match):
            calls[call]()
        assert (ledger_dir / "events.jsonl").read_bytes() == before


def test_generate_and_store_video_takes_the_usage_the_generator_returns(ledger_dir: Path) -> None:
    def generate() -> tuple[Path, Usage]:
        return _video(ledger_dir), Usage(gpu_seconds=20.0, cost=0.1, currency="EUR")

    with Ledger(ledger_dir) as ledger:
        entry = ledger.generate_and_store_video(
            "a", "e", "p", generate, provenance=GIVEN, worker=Worker(name="w")
        )
        assert entry.status == "ready"
        (record,) = ledger.provenance("a", "e")
    assert record.usage is not None and (record.usage.gpu_seconds, record.usage.cost) == (20.0, 0.1)
    assert record.worker == Worker(name="w") and record.provenance is not None
    assert record.provenance.model == WAN


def test_an_idempotent_retry_records_nothing_and_a_stale_finisher_nothing_either(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        first = ledger.begin_attempt("a", "e", "p", provenance=GIVEN)
        ledger.mark_video_failed("a", "e", "x", attempt=first.attempt)
        ledger.begin_attempt("a", "e", "p")
        before = (ledger_dir / "events.jsonl").read_bytes()
        with pytest.raises(IllegalTransitionError):
            ledger.mark_video_ready("a", "e", "v.mp4", attempt=first.attempt, usage=Usage(gpu_seconds=1.0))
        assert (ledger_dir / "events.jsonl").read_bytes() == before


def test_stats_by_over_the_ledger(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as ledger:
        for spot, fails in (("a", True), ("b", False)):
            started = ledger.begin_attempt(spot, "e", "p", provenance=Provenance(model=WAN))
            if fails:
                ledger.mark_video_failed(
                    spot, "e", "x", attempt=started.attempt, usage=Usage(gpu_seconds=1.0)
                )
            else:
                ledger.mark_video_ready(
                    spot, "e", "v.mp4", attempt=started.attempt, usage=Usage(gpu_seconds=3.0)
                )
        (group,) = ledger.stats_by("model")
        assert (group.key, group.attempts, group.failed_gpu_share) == ("wan2.1-t2v@14B", 2, 0.25)
        with pytest.raises(InvalidEntryError, match="give one of model, era, spot"):
            ledger.stats_by("worker")  # type: ignore[arg-type]


@pytest.fixture
def c2pa() -> object:
    return pytest.importorskip("c2pa", reason="the c2pa extra: pip install 'video-ledger[c2pa]'")


def _failing(ledger: Ledger, spot: str, usage: Usage, **options: object) -> None:
    """An attempt whose block raises after its worker reported ``usage``."""
    with (
        contextlib.suppress(RuntimeError),
        ledger.generation(spot, "rome-80ad", "p", **options) as job,  # type: ignore[arg-type]
    ):
        job.usage = usage
        raise RuntimeError("CUDA out of memory")


def test_a_signed_attempt_records_the_digest_of_the_file_as_finally_written(
    ledger_dir: Path, tmp_path: Path, c2pa: object
) -> None:
    from ledger.disclosure import make_development_ca, read_disclosure
    from ledger.pipeline import file_digest

    signer, root = make_development_ca(tmp_path / "ca")
    video = _video(ledger_dir)
    unsigned = file_digest(video)
    with Ledger(ledger_dir) as ledger:
        with ledger.generation("colosseum", "rome-80ad", "p", provenance=GIVEN, signer=signer) as job:
            job.ready(video, provenance=Provenance(seed=43))
        ready = _events(ledger_dir)[-1]
        assert isinstance(ready, Ready) and (ready.size, ready.sha256) == file_digest(video) != unsigned
        found = read_disclosure(video, trust_anchors=root)
        assert found is not None and found.state == "Trusted"
        assert found.entry == {"spotId": "colosseum", "eraId": "rome-80ad", "attempt": job.attempt}
        assert found.parameters is not None and found.parameters["seed"] == 43  # the completed provenance
        assert found.software_agent == {
            "name": "wan2.1-t2v",
            "version": "14B",
            "weightsDigest": WAN.weights_digest,
        }
        assert ledger.verify_files(c2pa=True, trust_anchors=root).problems == []
        _, other_root = make_development_ca(tmp_path / "other")
        (problem,) = ledger.verify_files(c2pa=True, trust_anchors=other_root).problems
        assert problem.endswith(
            ": videos/colosseum.mp4: C2PA manifest is Valid (signingCredential.untrusted)"
        )


def test_verify_c2pa_names_unsigned_files(ledger_dir: Path, tmp_path: Path, c2pa: object) -> None:
    from ledger.disclosure import make_development_ca

    signer, root = make_development_ca(tmp_path / "ca")
    with Ledger(ledger_dir) as ledger:
        with ledger.generation("a", "e", "p") as job:
            job.ready(_video(ledger_dir, "a.mp4"))  # no signer
        with ledger.generation("b", "e", "p", signer=signer) as job:
            job.ready(_video(ledger_dir, "b.mp4"))
        assert ledger.verify_files().problems == []
        assert ledger.verify_files(c2pa=True, trust_anchors=root).problems == [
            "a/e: videos/a.mp4: no C2PA manifest"
        ]


def test_the_cli_shows_provenance_and_stats_by_model(
    run_cli: Run, ledger_dir: Path, tmp_path: Path, c2pa: object
) -> None:
    from ledger.disclosure import make_development_ca

    signer, root = make_development_ca(tmp_path / "ca")
    with Ledger(ledger_dir) as ledger:
        _failing(ledger, "colosseum", Usage(gpu_seconds=30.0, gpu_type="A100"), provenance=GIVEN)
        with ledger.generation(
            "colosseum",
            "rome-80ad",
            "p",
            provenance=GIVEN,
            worker=Worker(name="gpu-b", host="render-2"),
            signer=signer,
        ) as job:
            job.ready(
                _video(ledger_dir), usage=Usage(gpu_seconds=90.0, gpu_type="A100", cost=0.2, currency="USD")
            )
    code, out, err = run_cli("provenance", "colosseum", "rome-80ad")
    assert (code, err) == (0, "")
    assert out.index("attempt 2 (event 3)") < out.index("attempt 1 (event 1)")  # the current one first
    assert "  model:      wan2.1-t2v 14B (weights sha256:" in out
    assert '  parameters: {"guidance":6.5,"steps":30}\n' in out
    assert "  worker:     gpu-b on render-2\n" in out
    assert (
        "GPU 90.0 s on A100, cost 0.2 USD" in out
        and "  error:      RuntimeError: CUDA out of memory\n" in out
    )
    code, out, _ = run_cli("provenance", "colosseum", "rome-80ad", "--json")
    records = json.loads(out)
    assert [r["attempt"] for r in records] == [2, 1] and records[0]["usage"]["gpuSeconds"] == 90.0
    code, out, _ = run_cli("stats", "--by", "model")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == [
        "model",
        "attempts",
        "ready",
        "failed",
        "running",
        "success",
        "GPU-s",
        "on",
        "failed",
        "wall-s",
    ]
    assert row.split()[:8] == ["wan2.1-t2v@14B", "2", "1", "1", "0", "50.0%", "120.0", "25.0%"]
    code, out, _ = run_cli("stats", "--by", "spot", "--json")
    assert json.loads(out)[0]["key"] == "colosseum" and json.loads(out)[0]["failedGpuShare"] == 0.25
    code, out, _ = run_cli("verify", "--files", "--c2pa", "--c2pa-trust", str(root))
    assert code == 0 and "files: 1 checked, 0 problems" in out
    assert run_cli("provenance", "nowhere", "never")[0] == 1
    code, _, err = run_cli("verify", "--c2pa")
    assert code == 2 and "--c2pa go with --files" in err
    code, _, err = run_cli("stats", "--by", "gpu")
    assert code == 2 and "invalid choice" in err


def test_verify_c2pa_without_the_extra_says_how_to_get_it(
    run_cli: Run, ledger_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger(ledger_dir) as ledger, ledger.generation("a", "e", "p") as job:
        job.ready(_video(ledger_dir))
    monkeypatch.setitem(sys.modules, "c2pa", None)  # what an interpreter without the package does
    code, out, err = run_cli("verify", "--files", "--c2pa")
    assert code == 1
    assert "pip install 'video-ledger[c2pa]'" in err and "files:" not in out
