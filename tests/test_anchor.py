"""Anchoring the hash chain: verify prints the head ``SEQ:HASH``; ``--expect-head`` checks a kept head.

A whole log rewritten with every crc and ``prev`` recomputed passes every check a log can make of itself;
a head kept where the ledger's host cannot rewrite it catches it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import msgspec
import pytest

from ledger import InvalidEntryError, Ledger
from ledger.events import GENESIS_HASH, decode_event, encode_line, line_hash

from .conftest import Run, entry, recent_clock

HEAD = re.compile(r"^head: (\d+):([0-9a-f]{64})$", re.M)


def _ledger(directory: Path, n: int = 4) -> None:
    with Ledger(directory, clock=recent_clock()) as ledger:  # later writers use the real clock
        for i in range(n):
            ledger.set_video_metadata(entry(f"spot{i}", "era", status="pending", prompt=f"prompt {i}"))


def _rewrite_whole_log(directory: Path) -> None:
    """Change event 2's prompt and recompute every line after it (crc and prev), then the snapshot."""
    log = directory / "events.jsonl"
    out, prev = [], GENESIS_HASH
    for line in log.read_bytes().splitlines():
        event = decode_event(line)
        if event.seq == 2:
            event = msgspec.structs.replace(event, prompt="forged")
        new = encode_line(msgspec.structs.replace(event, prev=prev))
        out.append(new)
        prev = line_hash(new[:-1])
    log.write_bytes(b"".join(out))
    (directory / "events.jsonl.sync.lock").unlink()  # the forger's log is a new file
    (directory / "checkpoint.json").unlink()
    Ledger(directory).rebuild()


def test_verify_prints_the_head_the_next_line_will_name(run_cli: Run, ledger_dir: Path) -> None:
    _ledger(ledger_dir)
    code, out, _ = run_cli("verify")
    assert code == 0
    match = HEAD.search(out)
    assert match is not None, out
    last = (ledger_dir / "events.jsonl").read_bytes().splitlines()[-1]
    assert (int(match[1]), match[2]) == (4, hashlib.sha256(last).hexdigest())
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("next", "era", status="pending"))
    assert decode_event((ledger_dir / "events.jsonl").read_bytes().splitlines()[-1]).prev == match[2]
    new_last = (ledger_dir / "events.jsonl").read_bytes().splitlines()[-1]
    assert Ledger(ledger_dir, readonly=True).verify().head == f"5:{hashlib.sha256(new_last).hexdigest()}"


def test_a_rewritten_log_passes_verify_but_not_its_kept_head(run_cli: Run, ledger_dir: Path) -> None:
    _ledger(ledger_dir)
    kept = Ledger(ledger_dir, readonly=True).verify().head
    assert kept is not None and kept.startswith("4:")
    _rewrite_whole_log(ledger_dir)
    assert Ledger(ledger_dir, readonly=True).verify().ok, "the forgery passes every check of its own"
    code, out, _ = run_cli("verify", "--expect-head", kept)
    assert code == 1
    assert out.startswith("FAILED") and "event 4" in out and "rewritten" in out
    code, out, _ = run_cli("verify", "--expect-head", "1:" + kept.split(":")[1])
    assert code == 1, "event 1 does not have event 4's hash"


def test_a_kept_head_still_holds_after_the_log_grew(run_cli: Run, ledger_dir: Path) -> None:
    _ledger(ledger_dir, n=2)
    kept = Ledger(ledger_dir, readonly=True).verify().head
    assert kept is not None
    with Ledger(ledger_dir) as ledger:
        for i in range(40):  # over 1 MiB: the walk reads it in several runs, the kept line in the first
            ledger.set_video_metadata(entry(f"more{i}", "era", status="pending", prompt="p" * 30_000))
    assert (ledger_dir / "events.jsonl").stat().st_size > 1 << 20
    for head in (kept, f"0:{GENESIS_HASH}", Ledger(ledger_dir, readonly=True).verify().head):
        code, out, _ = run_cli("verify", "--expect-head", str(head))
        assert code == 0, out
    code, out, _ = run_cli("verify", "--expect-head", "43:" + kept.split(":")[1])
    assert code == 1 and "ends at event 42" in out


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "4",
        "4:",
        "x:" + "0" * 64,
        "4:" + "0" * 63,
        "4:" + "g" * 64,
        "\u0664:" + "0" * 64,
        "-1:" + "0" * 64,
    ],
)
def test_a_malformed_head_is_bad_usage_and_opens_nothing(run_cli: Run, ledger_dir: Path, bad: str) -> None:
    code, _, err = run_cli("verify", f"--expect-head={bad}")
    assert code == 2
    assert len(err.splitlines()) == 1 and "SEQ:HASH" in err
    assert not ledger_dir.exists()
    Ledger(ledger_dir.parent / "other").close()  # a read-only open needs a ledger (NoLedgerError)
    with pytest.raises(InvalidEntryError):
        Ledger(ledger_dir.parent / "other", readonly=True).verify(expect_head=bad)


def _documented_commands() -> list[str]:
    """The shell commands of docs/guarantees.md, *Anchoring the chain*, in order."""
    text = (Path(__file__).parent.parent / "docs" / "guarantees.md").read_text()
    section = text.split("## Anchoring the chain", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [block.strip().removeprefix("*/15 * * * * ") for block in blocks]


def test_the_documented_cron_keeps_no_head_of_a_rewritten_log(ledger_dir: Path, tmp_path: Path) -> None:
    """The docs' commands, run as written (the other machine is a local file): the cron line keeps a head
    only while the log holds the last one kept, so after a rewrite it keeps none and the auditor's check of
    the last kept head fails. (The line the docs gave before kept every head: 15 minutes after a rewrite,
    the rewritten log's head, which then passed the audit.)"""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    seed, cron, audit = _documented_commands()
    audit_host = tmp_path / "audit-host"
    audit_host.mkdir()
    prelude = 'video-ledger() { "$PY" -m ledger "$@"; }\nssh() { shift; sh -c "$*"; }\n'
    env = os.environ | {"PY": sys.executable, "PYTHONPATH": str(ROOT)}

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        script = prelude + command.replace("/srv/ledger", str(ledger_dir))
        return subprocess.run(
            ["bash", "-c", script], cwd=audit_host, env=env, capture_output=True, text=True, timeout=60
        )

    def kept() -> list[str]:
        return (audit_host / "ledger-heads").read_text().splitlines()

    _ledger(ledger_dir)
    assert sh(seed).returncode == 0 and [h[:2] for h in kept()] == ["4:"]
    with Ledger(ledger_dir) as ledger:
        ledger.set_video_metadata(entry("more", "era", status="pending"))
    done = sh(cron)
    assert done.stdout == "" and [h[:2] for h in kept()] == ["4:", "5:"], done
    assert sh(audit).returncode == 0
    _rewrite_whole_log(ledger_dir)
    for _ in range(2):  # every later run too
        done = sh(cron)
        assert done.stdout.startswith("FAILED") and "rewritten" in done.stdout, done
        assert [h[:2] for h in kept()] == ["4:", "5:"], "no head of the rewritten log is kept"
    assert sh(audit).returncode == 1
