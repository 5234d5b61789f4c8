"""docs/proofs.md: its JavaScript verifier, run under node (Web Crypto's SHA-256 and Ed25519) against real
bundles the ledger proved, and against tampered ones. Without node the tests skip, and fail under
``CI=true``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.note import Verifier, generate_key, sign
from ledger.proofs import encode_bundle, verify_bundle

from .conftest import ROOT, FakeClock, entry, js_from_doc, need_tool

PAGE = ROOT / "docs" / "proofs.md"
NODE = shutil.which("node")

HARNESS = """
import { readFileSync } from "node:fs";
import { verifyBundle } from "./verify-proof.mjs";
const [file, vkey] = process.argv.slice(2);
try {
  const { checkpoint, events, status } = await verifyBundle(JSON.parse(readFileSync(file, "utf8")), vkey);
  console.log(JSON.stringify({ size: checkpoint.size, origin: checkpoint.origin,
    seqs: events.map((e) => e.seq), status }));
} catch (err) {
  console.error(String(err));
  process.exit(1);
}
"""


@pytest.fixture
def js(tmp_path: Path) -> Path:
    need_tool("node", "the JavaScript verifier's tests")
    return js_from_doc(PAGE, tmp_path / "js", "verify-proof.mjs", HARNESS)


def _node(js: Path, bundle: bytes, vkey: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    (js / "bundle.json").write_bytes(bundle)
    return subprocess.run(
        [NODE, "harness.mjs", "bundle.json", vkey], cwd=js, capture_output=True, text=True, timeout=60
    )


def _proved(tmp_path: Path) -> tuple[bytes, str]:
    key = generate_key("videos.example.com/ledger")
    with Ledger(tmp_path / "ledger", clock=FakeClock()) as ledger:
        for i in range(40):
            ledger.set_video_metadata(entry(f"spot-{i % 7}", "era", status="pending", prompt=f"p{i}"))
        job = ledger.begin_attempt("spot-3", "era", "a prompt, café")
        ledger.mark_video_ready("spot-3", "era", "videos/spot-3.mp4", attempt=job.attempt)
        data = encode_bundle(ledger.proofs().prove("spot-3", "era", signer=key))
    return data, str(key.verifier)


def test_the_javascript_verifier_accepts_a_real_bundle(tmp_path: Path, js: Path) -> None:
    data, vkey = _proved(tmp_path)
    proven = verify_bundle(data, [Verifier.parse(vkey)])
    done = _node(js, data, vkey)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {
        "size": proven.checkpoint.size,
        "origin": "videos.example.com/ledger",
        "seqs": [e.seq for e in proven.events],
        "status": "ready",
    }


def test_the_javascript_verifier_refuses_a_tampered_bundle(tmp_path: Path, js: Path) -> None:
    data, vkey = _proved(tmp_path)
    bundle = json.loads(data)
    first = bundle["records"][0]

    def tampered(**change: object) -> bytes:
        return json.dumps({**bundle, **change}).encode()

    line = dict(first, line=first["line"].replace('"p3"', '"p9"'))
    hashes = list(first["proof"])
    hashes[0] = hashes[0].replace(hashes[0][1], "A" if hashes[0][1] != "A" else "B", 1)
    note = bundle["checkpoint"]
    size = int(note.split("\n")[1])
    bigger = note.replace(f"\n{size}\n", f"\n{size + 1}\n", 1)
    text = bigger[: bigger.rindex("\n\n") + 1].encode()
    cases = {
        "a line changed": tampered(records=[line, *bundle["records"][1:]]),
        "a proof hash changed": tampered(records=[dict(first, proof=hashes), *bundle["records"][1:]]),
        "another size, same root": tampered(checkpoint=bigger),
        "signed by another key of the same name": tampered(
            checkpoint=sign(text, generate_key("videos.example.com/ledger")).decode()
        ),
        "another entry's records": tampered(spotId="spot-4"),
        "a moved index": tampered(records=[dict(first, index=first["index"] + 1), *bundle["records"][1:]]),
    }
    for what, changed in cases.items():
        done = _node(js, changed, vkey)
        assert done.returncode == 1, (what, done.stdout)
        assert done.stderr.startswith("Error: "), (what, done.stderr)
    assert _node(js, data, vkey.replace("+", "+0", 1)).returncode == 1  # another key id
