"""Nothing in a log line, however crafted, makes the reader run code or touch files outside the ledger."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from ledger import CorruptLogError, Ledger
from ledger.events import GENESIS_HASH, line_hash

CRAFTED = [
    {
        "type": "pending",
        "spotId": "../../../../tmp/owned",
        "eraId": "/etc/passwd",
        "prompt": "__import__('os')",
    },
    {
        "type": "generating",
        "spotId": "a",
        "eraId": "b",
        "prompt": "{{7*7}} $(rm -rf /) `id`",
        "localPath": "../../x",
    },
    {"type": "ready", "spotId": "a", "eraId": "b", "localPath": "/dev/zero", "size": 1, "sha256": "0" * 64},
]


def _forge(directory: Path, payloads: list[dict[str, object]]) -> None:
    """Write payloads as a log whose every crc and hash is right: only the content is hostile."""
    import json

    prev, lines = GENESIS_HASH, []
    for seq, payload in enumerate(payloads, start=1):
        fields = {"type": payload["type"], "v": 1, "seq": seq, "ts": f"2026-11-24T09:00:0{seq}.000000Z"}
        fields |= {k: v for k, v in payload.items() if k != "type"}
        fields["prev"] = prev
        body = json.dumps(fields, separators=(",", ":")).encode()[:-1]
        line = b'%s,"crc":"%08x"}' % (body, zlib.crc32(body))
        lines.append(line + b"\n")
        prev = line_hash(line)
    directory.mkdir(parents=True)
    (directory / "events.jsonl").write_bytes(b"".join(lines))


def test_crafted_lines_are_data_only(tmp_path: Path) -> None:
    directory = tmp_path / "sandbox" / "ledger"
    _forge(directory, CRAFTED)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with Ledger(directory) as ledger:
        entries = ledger.get_all_video_metadata()
        ledger.rebuild()
        report = ledger.verify()
        files = ledger.verify_files()
        list(ledger.history())
        ledger.stats()
    assert report.ok, report
    assert {e.spot_id for e in entries} == {"../../../../tmp/owned", "a"}
    assert not Path("/tmp/owned").exists()
    created = sorted(str(p) for p in tmp_path.rglob("*") if str(p) not in before)
    assert all(Path(p).parent == directory for p in created), created
    assert files.problems == [f"a/b: /dev/zero: an absolute path, outside the root {directory} (not read)"], (
        "checked, not trusted, and nothing outside the ledger read"
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "pending", "spotId": "a", "eraId": "b", "prompt": [[[[[[[[[[[[]]]]]]]]]]]]},
        {"type": "pending", "spotId": "a", "eraId": "b", "prompt": "p", "v": 99},
        {"type": "no-such-type", "spotId": "a", "eraId": "b"},
        {"type": "pending", "spotId": "", "eraId": "b", "prompt": "p"},
        {"type": "pending", "spotId": "a", "eraId": "b", "prompt": 10**400},
    ],
)
def test_hostile_lines_with_valid_framing_are_a_typed_error(
    tmp_path: Path, payload: dict[str, object]
) -> None:
    directory = tmp_path / "ledger"
    _forge(directory, [payload, {"type": "pending", "spotId": "z", "eraId": "z", "prompt": "p"}])
    with pytest.raises(CorruptLogError, match="line 1"):
        list(Ledger(directory, readonly=True).history())
    assert not Ledger(directory, readonly=True).verify().ok


def test_files_are_not_world_writable_and_links_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    with Ledger(directory) as ledger:
        ledger.set_video_metadata({"spotId": "s", "eraId": "e", "prompt": "p", "status": "pending"})
    for path in directory.iterdir():
        assert not path.stat().st_mode & 0o002, path
    target = tmp_path / "elsewhere.json"
    target.write_text("[]\n")
    (directory / "generated-videos.json").unlink()
    os.symlink(target, directory / "generated-videos.json")
    with pytest.raises(Exception, match="symbolic link"):
        Ledger(directory)
    with Ledger(directory, follow_symlinks=True) as ledger:  # when the user asks for it
        ledger.rebuild()
    assert "s" in target.read_text()
