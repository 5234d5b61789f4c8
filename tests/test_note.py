"""Signed notes, checkpoints and cosignatures (ledger/note.py): the C2SP examples verify, and no single
byte of a note, a key or a signature changes without the check failing."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import note
from ledger.errors import NoteError, SigningUnavailableError

from .conftest import ROOT

VECTORS = Path(__file__).parent / "vectors" / "note"


def _flipped(data: bytes) -> list[bytes]:
    """``data`` with each one of its bytes changed (the low bit flipped; a newline becomes a space)."""
    out = []
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= 0x01
        out.append(bytes(changed))
    return out


def test_the_c2sp_example_note_verifies_with_its_key() -> None:
    verifier = note.Verifier.parse((VECTORS / "example.vkey").read_text())
    opened = note.open_note((VECTORS / "example.note").read_bytes(), [verifier])
    assert opened.text == b"This is an example message.\n"
    assert opened.verified == {verifier: 0}
    assert str(verifier) == (VECTORS / "example.vkey").read_text().strip()


def test_the_c2sp_example_checkpoint_parses() -> None:
    data = (VECTORS / "checkpoint.note").read_bytes()
    text = data[: data.rindex(b"\n\n") + 1]
    checkpoint = note.Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.text() == text


def test_every_flipped_byte_of_the_example_note_or_key_is_rejected() -> None:
    vkey = (VECTORS / "example.vkey").read_text().strip()
    data = (VECTORS / "example.note").read_bytes()
    verifier = note.Verifier.parse(vkey)
    for changed in _flipped(data):
        with pytest.raises(NoteError):
            note.open_note(changed, [verifier])
    for changed_key in _flipped(vkey.encode()):
        try:
            other = note.Verifier.parse(changed_key.decode())
        except (NoteError, UnicodeDecodeError):
            continue
        with pytest.raises(NoteError):
            note.open_note(data, [other])


def test_a_signed_checkpoint_round_trips_and_every_flip_is_rejected() -> None:
    signer = note.generate_key("ledger.example/videos")
    checkpoint = note.Checkpoint("ledger.example/videos", 42, bytes(range(32)), ("snapshot-sha256 ab",))
    signed = note.sign(checkpoint.text(), signer)
    opened = note.open_note(signed, [signer.verifier])
    assert note.Checkpoint.parse(opened.text) == checkpoint
    for changed in _flipped(signed):
        with pytest.raises(NoteError):
            note.open_note(changed, [signer.verifier])
    for changed_key in _flipped(str(signer.verifier).encode()):
        try:
            other = note.Verifier.parse(changed_key.decode())
        except (NoteError, UnicodeDecodeError):
            continue
        with pytest.raises(NoteError):
            note.open_note(signed, [other])


def test_a_note_signed_by_another_key_with_the_same_name_is_rejected() -> None:
    mine, theirs = note.generate_key("ledger.example/videos"), note.generate_key("ledger.example/videos")
    signed = note.sign(b"ledger.example/videos\n1\n" + b"A" * 43 + b"=\n", theirs)
    with pytest.raises(NoteError, match=r"no signature by ledger\.example/videos"):
        note.open_note(signed, [mine.verifier])
    # the same key id with another key (a forged id): the signature is checked, and fails
    forged = signed.replace(
        signed.split(b" ")[-1],
        base64.b64encode(mine.verifier.id.to_bytes(4, "big") + b"\x00" * 64) + b"\n",
    )
    with pytest.raises(NoteError, match="does not check"):
        note.open_note(forged, [mine.verifier])


def test_keys_round_trip_in_their_text_forms() -> None:
    signer = note.generate_key("host.example/log")
    assert note.Signer.parse(str(signer)) == signer
    assert note.Verifier.parse(str(signer.verifier)) == signer.verifier
    assert str(signer).startswith("PRIVATE+KEY+host.example/log+")
    for bad in ("", "name+1234", "na me+00000000+AA==", str(signer.verifier).upper()):
        with pytest.raises(NoteError):
            note.Verifier.parse(bad)
    with pytest.raises(NoteError):
        note.generate_key("with space")


def test_a_cosignature_is_timestamped_and_checked_as_tlog_cosignature_v1() -> None:
    log, witness = note.generate_key("log.example"), note.generate_key("witness.example", note.COSIGNATURE)
    signed = note.sign(note.Checkpoint("log.example", 3, b"\x01" * 32).text(), log)
    both = note.cosign(signed, witness, stamp=1_679_315_147)
    opened = note.open_note(both, [log.verifier, witness.verifier])
    assert opened.verified == {log.verifier: 0, witness.verifier: 1_679_315_147}
    assert base64.b64decode(str(witness.verifier).split("+", 2)[2])[0] == 0x04
    # the cosigned message is the spec's: header, time line, then the checkpoint text
    from cryptography.hazmat.primitives.asymmetric import ed25519

    sig = opened.signatures[1][2]
    assert sig[:8] == (1_679_315_147).to_bytes(8, "big")
    ed25519.Ed25519PublicKey.from_public_bytes(witness.verifier.public).verify(
        sig[8:], b"cosignature/v1\ntime 1679315147\n" + opened.text
    )
    for changed in _flipped(both):
        with pytest.raises(NoteError):
            note.open_note(changed, [log.verifier, witness.verifier], need=2)
    with pytest.raises(NoteError, match=r"no signature by witness\.example"):
        note.open_note(signed, [log.verifier, witness.verifier], need=2)


@pytest.mark.parametrize(
    "data",
    [
        b"no blank line\n\xe2\x80\x94 a AAAAAAA=\n",
        b"text\n\n\xe2\x80\x94 a AAAA\n",  # too short a signature
        b"text\n\n- a AAAAAAAA\n",  # not an em dash
        b"te\x07xt\n\n\xe2\x80\x94 a AAAAAAAA\n",
        b"text\n\n\xe2\x80\x94 a AAAAAAAA",  # no final newline
        b"\xff\n\n\xe2\x80\x94 a AAAAAAAA\n",
    ],
)
def test_malformed_notes_are_refused(data: bytes) -> None:
    with pytest.raises(NoteError):
        note.open_note(data, [note.generate_key("a").verifier])


@pytest.mark.parametrize(
    "text", [b"o\n1\n", b"o\n01\nAAAA\n", b"o\n1\nAAAA\n", b"o\n1\n" + b"A" * 43 + b"=\n\n", b"\n1\nx\n"]
)
def test_malformed_checkpoints_are_refused(text: bytes) -> None:
    with pytest.raises(NoteError):
        note.Checkpoint.parse(text)


def test_without_cryptography_signing_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from ledger import note\n"
        "from ledger.errors import SigningUnavailableError\n"
        "try:\n    note.generate_key('a')\n"
        "except SigningUnavailableError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'video-ledger[sign]'" in result.stdout
    assert issubclass(SigningUnavailableError, Exception)


def test_the_checkpoint_in_docs_format_md_verifies_with_the_key_it_names() -> None:
    page = (ROOT / "docs" / "format.md").read_text().split("## Signed checkpoints", 1)[1]
    example = page.split("```text\n", 1)[1].split("```", 1)[0].encode()
    vkey = page.split("signed by the key `", 1)[1].split("`", 1)[0]
    opened = note.open_note(example, [note.Verifier.parse(vkey)])
    assert note.Checkpoint.parse(opened.text).size == 5
