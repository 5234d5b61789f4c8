"""``set``'s provenance, usage and worker options: what generation()/ready/failed take in Python, recorded
on the events the API records them on, refused (nothing written) on any other status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import Ledger

from .conftest import Run, files_state

DIGEST = "ab" * 32


def test_a_shell_worker_records_what_made_its_video_and_what_it_cost(run_cli: Run, ledger_dir: Path) -> None:
    assert run_cli("set", "a", "e", "--status", "pending", "--prompt", "pa", "-q")[0] == 0
    code, out, err = run_cli(
        "set", "a", "e", "--status", "generating", "--model", "wan", "--model-version", "2.1",
        "--weights-digest", "sha256:" + "cd" * 32, "--seed", "42", "--parameters", '{"steps": 30, "cfg": 6}',
        "--prompt-template", "{spot} in {era}", "--input", f"reference-image={DIGEST}", "--worker", "sh1",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["entry"]["status"] == "generating"
    code, out, err = run_cli(
        "set", "a", "e", "--status", "ready", "--local-path", "videos/a.mp4", "--attempt", "1",
        "--gpu-seconds", "12.5", "--gpu-type", "L4", "--cost", "0.02", "--currency", "EUR", "--seed", "43",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run_cli("provenance", "a", "e", "--json")
    [record] = json.loads(out)
    assert record["prompt"] == "pa", "the entry's current prompt, as set keeps it"
    assert record["worker"]["name"] == "sh1" and record["worker"]["pid"] > 0
    made = record["provenance"]
    assert made["model"] == {"name": "wan", "version": "2.1", "weightsDigest": "sha256:" + "cd" * 32}
    assert made["seed"] == 43, "ready's fields complete (and override) the start's"
    assert made["parameters"] == '{"cfg":6,"steps":30}', "canonical JSON"
    assert made["promptTemplate"] == "{spot} in {era}"
    assert made["inputs"] == [{"role": "reference-image", "sha256": DIGEST}]
    assert record["usage"] == {"gpuSeconds": 12.5, "gpuType": "L4", "cost": 0.02, "currency": "EUR"}
    assert run_cli("stats", "--by", "model")[1].splitlines()[1].startswith("wan")

    run_cli("set", "b", "e", "--status", "generating", "--prompt", "pb", "--model", "wan", "-q")
    code, _, err = run_cli("set", "b", "e", "--status", "failed", "--error", "OOM", "--gpu-seconds", "3")
    assert code == 0, err
    with Ledger(ledger_dir, readonly=True) as ledger:
        [failed] = ledger.provenance("b", "e")
    assert failed.outcome == "failed" and failed.usage is not None and failed.usage.gpu_seconds == 3.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "pending", "--model", "wan"], "--model go with --status generating or ready"),
        (
            ["--status", "failed", "--error", "x", "--seed", "1"],
            "--seed go with --status generating or ready",
        ),
        (["--status", "generating", "--gpu-seconds", "1"], "--gpu-seconds go with --status ready or failed"),
        (["--status", "ready", "--local-path", "v", "--worker", "w"], "--worker go with --status generating"),
        (
            ["--status", "generating", "--model-version", "2"],
            "--model-version and --weights-digest go with --model",
        ),
        (["--status", "ready", "--gpu-seconds", "1"], "--status ready needs --local-path"),
        (["--status", "failed", "--gpu-seconds", "1"], "--status failed needs --error"),
        (
            ["--status", "generating", "--model", "wan", "--parameters", "[1]"],
            "parameters must be a JSON object",
        ),
        (["--status", "generating", "--model", "wan", "--input", "x"], "is not ROLE=SHA256"),
        (["--status", "generating", "--model", "wan", "--input", "x=zz"], "provenance.inputs[0].sha256"),
    ],
)
def test_a_record_on_an_event_that_does_not_carry_it_is_refused_and_nothing_written(
    run_cli: Run, ledger_dir: Path, args: list[str], message: str
) -> None:
    run_cli("set", "a", "e", "--status", "pending", "--prompt", "pa", "-q")
    before = files_state(ledger_dir)
    code, out, err = run_cli("set", "a", "e", *args)
    assert (code, out) == (2, ""), err
    assert message in err and err.count("\n") == 1, err
    assert files_state(ledger_dir) == before


def test_provenance_on_a_live_attempt_is_refused_not_joined(run_cli: Run, ledger_dir: Path) -> None:
    """Provenance names one attempt: ``set --status generating --model ...`` starts one, and never joins
    a live attempt (as ``set --status generating`` without it does, recording nothing)."""
    run_cli("set", "a", "e", "--status", "generating", "--prompt", "pa", "-q")
    before = files_state(ledger_dir)
    code, _, err = run_cli("set", "a", "e", "--status", "generating", "--model", "wan")
    assert code == 2 and "attempt 1 is live" in err, err
    assert files_state(ledger_dir) == before
