"""The proof commands (keygen, checkpoint, verify --previous, consistency, prove, verify-proof): a session
through ``main`` as a user types it, their errors and exit codes, and one run as a real process."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from ledger.merkle import leaf_hash, root

from .conftest import ROOT, Run


def _fill(run_cli: Run, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        code, _, err = run_cli("set", f"spot-{i % 3}", "era", "--status", "pending", "--prompt", f"p{i}")
        assert code == 0, err


def test_a_proof_session(run_cli: Run, ledger_dir: Path, tmp_path: Path) -> None:
    key = tmp_path / "ledger.key"
    code, vkey, err = run_cli("keygen", "videos.example.com/ledger", "--out", str(key))
    assert code == 0, err
    vkey = vkey.strip()
    assert vkey.startswith("videos.example.com/ledger+") and stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert run_cli("keygen", "videos.example.com/ledger", "--out", str(key))[0] == 1  # never overwritten

    _fill(run_cli, 8)
    old = tmp_path / "old.note"
    code, note, err = run_cli("checkpoint", "--key", str(key), "--out", str(old))
    assert code == 0, err
    assert note.splitlines()[:2] == ["videos.example.com/ledger", "8"] and old.read_text() == note
    assert "snapshot-sha256 " in note

    _fill(run_cli, 5, start=8)
    code, out, err = run_cli("verify", "--previous", str(old), "--key", vkey)
    assert (code, err) == (0, ""), err
    assert out.startswith("ok: the log (13 records") and "at 8 records" in out
    code, out, _ = run_cli("verify", "--previous", str(old), "--key", vkey, "--json")
    assert json.loads(out)["previousSize"] == 8 and json.loads(out)["size"] == 13
    code, out, _ = run_cli("verify", "--previous", str(old), "--key", vkey, "--expect-head", "1:" + "0" * 64)
    assert code == 1 and out.startswith("ok: the log (13 records") and "FAILED" in out  # both checks ran

    code, out, _ = run_cli("consistency", "8", "13", "--json")
    proof = json.loads(out)
    lines = (ledger_dir / "events.jsonl").read_bytes().split(b"\n")[:-1]

    assert base64.b64decode(proof["newRoot"]) == root([leaf_hash(x) for x in lines])
    assert run_cli("consistency", "8", "13")[1].splitlines()[0].startswith("old 8 ")

    bundle = tmp_path / "spot-1.proof.json"
    code, out, err = run_cli("prove", "spot-1", "era", "--key", str(key), "--out", str(bundle))
    assert code == 0, err
    assert out.startswith("proved 4 records of spot-1/era (events 2, 5, 8, 11)") and "at 13 records" in out
    code, out, err = run_cli("verify-proof", str(bundle), "--key", vkey)
    assert code == 0, err
    assert "spot-1" in out and "proven: events 2, 5, 8, 11 are in the log of videos.example.com/ledger" in out
    code, out, _ = run_cli("verify-proof", str(bundle), "--key", vkey, "--json")
    assert json.loads(out)["entry"]["prompt"] == "p10" and json.loads(out)["size"] == 13
    code, out, _ = run_cli("prove", "spot-2", "era", "--json")  # against the last checkpoint signed here
    assert code == 0 and json.loads(out)["spotId"] == "spot-2"

    # a tampered bundle: one line's prompt changed
    data = bundle.read_text().replace("p10", "pX0")
    bundle.write_text(data)
    code, out, err = run_cli("verify-proof", str(bundle), "--key", vkey)
    assert (code, out) == (1, "") and "does not lead to the root" in err


def test_a_witness_through_the_cli(run_cli: Run, tmp_path: Path) -> None:
    log_key, witness = tmp_path / "log.key", tmp_path / "w.key"
    vkey = run_cli("keygen", "log.example", "--out", str(log_key))[1].strip()
    wkey = run_cli("keygen", "witness.example/w", "--out", str(witness), "--witness")[1].strip()
    _fill(run_cli, 4)
    assert run_cli("checkpoint", "--key", str(log_key))[0] == 0
    code, out, err = run_cli("checkpoint", "--key", str(witness), "--cosign", "--log-key", vkey)
    assert code == 0, err
    assert out.count("\u2014 ") == 2 and (tmp_path / "w.key.witnessed").exists()
    _fill(run_cli, 2, start=4)
    run_cli("checkpoint", "--key", str(log_key))
    assert run_cli("checkpoint", "--key", str(witness), "--cosign", "--log-key", vkey)[0] == 0
    bundle = tmp_path / "b.json"
    assert run_cli("prove", "spot-0", "era", "--out", str(bundle))[0] == 0
    assert run_cli("verify-proof", str(bundle), "--key", vkey, "--key", wkey)[0] == 0
    code, _, err = run_cli(
        "verify-proof", str(bundle), "--key", vkey, "--key", wkey.replace("witness", "wetness")
    )
    assert code == 1 and "verifier key's id does not match" in err


def test_usage_errors_exit_2_and_refusals_exit_1(run_cli: Run, ledger_dir: Path, tmp_path: Path) -> None:
    key = tmp_path / "k"
    vkey = run_cli("keygen", "log.example", "--out", str(key))[1].strip()
    _fill(run_cli, 3)
    assert run_cli("verify", "--previous", "x.note")[0] == 2  # no --key
    assert run_cli("prove", "spot-0", "era")[0] == 2  # neither --out nor --json
    assert run_cli("consistency", "3", "2")[0] == 2
    assert run_cli("checkpoint", "--key", str(key), "--log-key", vkey)[0] == 2  # --log-key without --cosign
    code, _, err = run_cli("prove", "spot-0", "era", "--json")
    assert code == 1 and "no checkpoint was signed" in err
    code, _, err = run_cli("consistency", "2", "9")
    assert code == 1 and "holds 3 records, not 9" in err
    note = tmp_path / "n"
    run_cli("checkpoint", "--key", str(key), "--out", str(note))
    # the log rolled back: fewer records than the signed checkpoint
    shutil.copy(ledger_dir / "events.jsonl", tmp_path / "full.jsonl")
    lines = (ledger_dir / "events.jsonl").read_bytes().split(b"\n")
    (ledger_dir / "events.jsonl").write_bytes(b"\n".join(lines[:2]) + b"\n")
    (ledger_dir / "events.jsonl.sync.lock").unlink(missing_ok=True)
    (ledger_dir / "checkpoint.json").unlink()
    code, out, err = run_cli("verify", "--previous", str(note), "--key", vkey)
    assert code == 1 and "rolled back" in err and out == ""
    code, _, err = run_cli("verify-proof", str(note), "--key", vkey)
    assert code == 1 and "not a proof bundle" in err


def test_the_commands_as_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VIDEO_LEDGER_STORE", None)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ledger", "--dir", str(tmp_path / "d"), *argv],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip

    vkey = cli("keygen", "log.example", "--out", str(tmp_path / "k")).stdout.strip()
    assert cli("set", "a", "b", "--status", "pending", "--prompt", "p").returncode == 0
    done = cli("prove", "a", "b", "--key", str(tmp_path / "k"), "--out", str(tmp_path / "p.json"))
    assert done.returncode == 0, done.stderr
    checked = cli("verify-proof", str(tmp_path / "p.json"), "--key", vkey)
    assert checked.returncode == 0 and "proven: events 1 " in checked.stdout, checked.stderr


def test_verify_previous_full_rebuilds_the_tree_from_the_log(
    run_cli: Run, ledger_dir: Path, tmp_path: Path
) -> None:
    key = tmp_path / "k"
    vkey = run_cli("keygen", "log.example", "--out", str(key))[1].strip()
    _fill(run_cli, 6)
    note = tmp_path / "n"
    run_cli("checkpoint", "--key", str(key), "--out", str(note))
    _fill(run_cli, 3, start=6)
    (ledger_dir / "merkle.tree").unlink()
    (ledger_dir / "merkle.keys").write_bytes(b"")
    code, out, err = run_cli("verify", "--previous", str(note), "--key", vkey, "--full")
    assert (code, err) == (0, "") and out.startswith("ok: the log (9 records")
    assert run_cli("verify", "--full")[0] == 2  # --full goes with --previous
