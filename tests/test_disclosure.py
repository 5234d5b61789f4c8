"""C2PA disclosure inside the file: signed with a CA made here, read back, validated, refused when off."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from ledger.disclosure import (
    C2PA_EXTRA,
    TRAINED_ALGORITHMIC_MEDIA,
    C2paMissingError,
    C2paSigner,
    DisclosureError,
    check_disclosure,
    make_development_ca,
    manifest_for,
    read_disclosure,
)
from ledger.events import InputRef, ModelRef, Provenance
from ledger.mp4 import write_mp4
from ledger.provenance import canonical_json

pytest.importorskip("c2pa", reason=f"the c2pa extra: {C2PA_EXTRA}")

PROVENANCE = Provenance(
    model=ModelRef(name="wan2.1-t2v", version="14B", weights_digest="sha256:" + "ab" * 32),
    seed=1234,
    parameters=canonical_json({"steps": 30, "guidance": 6.5}),
    prompt_sha256="cd" * 32,
    inputs=(InputRef(role="reference-image", sha256="ef" * 32),),
)


@pytest.fixture(params=["ed25519", "es256"])
def ca(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[C2paSigner, Path]:
    return make_development_ca(tmp_path / f"ca-{request.param}", algorithm=request.param)


def _video(directory: Path, payload: bytes = b"frames " * 200) -> Path:
    path = directory / "videos" / "colosseum.mp4"
    write_mp4(path, payload)
    return path


def test_a_signed_video_says_it_is_ai_generated_by_which_model_for_which_entry(
    ca: tuple[C2paSigner, Path], tmp_path: Path
) -> None:
    signer, root = ca
    video = _video(tmp_path)
    before = video.read_bytes()
    signer.embed(video, spot_id="colosseum", era_id="rome-80ad", attempt=7, provenance=PROVENANCE)
    assert video.read_bytes() != before and len(video.read_bytes()) > len(before)
    assert sorted(p.name for p in video.parent.iterdir()) == ["colosseum.mp4"]  # no temp file left
    found = read_disclosure(video, trust_anchors=root)
    assert found is not None
    assert (found.state, found.failures) == ("Trusted", [])
    assert found.ai_generated
    assert found.entry == {"spotId": "colosseum", "eraId": "rome-80ad", "attempt": 7}
    assert found.software_agent == {
        "name": "wan2.1-t2v",
        "version": "14B",
        "weightsDigest": "sha256:" + "ab" * 32,
    }
    assert found.parameters == {
        "seed": 1234,
        "parameters": {"guidance": 6.5, "steps": 30},
        "promptSha256": "cd" * 32,
        "inputs": [{"role": "reference-image", "sha256": "ef" * 32}],
    }
    assert found.signer == "video-ledger signer"
    assert check_disclosure(video, "colosseum", "rome-80ad", 7, trust_anchors=root) is None
    assert check_disclosure(video, "colosseum", "rome-80ad", None) is None  # Valid: no anchors to judge by


def test_a_manifest_for_another_entry_or_attempt_is_named(
    ca: tuple[C2paSigner, Path], tmp_path: Path
) -> None:
    signer, root = ca
    video = _video(tmp_path)
    signer.embed(video, spot_id="colosseum", era_id="rome-80ad", attempt=7)
    assert check_disclosure(video, "petra", "rome-80ad", 7, trust_anchors=root) == (
        "C2PA manifest names entry colosseum/rome-80ad, not this one"
    )
    assert check_disclosure(video, "colosseum", "rome-80ad", 9, trust_anchors=root) == (
        "C2PA manifest names attempt 7, not 9"
    )
    found = read_disclosure(video, trust_anchors=root)
    assert found is not None and found.software_agent is None and found.parameters is None


def test_a_video_changed_after_signing_is_invalid(ca: tuple[C2paSigner, Path], tmp_path: Path) -> None:
    signer, root = ca
    video = _video(tmp_path)
    signer.embed(video, spot_id="colosseum", era_id="rome-80ad", attempt=7)
    data = bytearray(video.read_bytes())
    data[data.rindex(b"frames")] ^= 0x20  # one byte of the payload
    video.write_bytes(bytes(data))
    found = read_disclosure(video, trust_anchors=root)
    assert found is not None and found.state == "Invalid"
    assert "assertion.bmffHash.mismatch" in found.failures
    problem = check_disclosure(video, "colosseum", "rome-80ad", 7, trust_anchors=root)
    assert problem is not None and problem.startswith("C2PA manifest is Invalid (assertion.bmffHash.mismatch")


def test_a_chain_that_leads_to_no_given_anchor_is_not_trusted(
    ca: tuple[C2paSigner, Path], tmp_path: Path
) -> None:
    signer, _ = ca
    _, other_root = make_development_ca(tmp_path / "other")
    video = _video(tmp_path)
    signer.embed(video, spot_id="colosseum", era_id="rome-80ad", attempt=1)
    found = read_disclosure(video, trust_anchors=other_root)
    assert found is not None and found.state == "Valid" and "signingCredential.untrusted" in found.failures
    problem = check_disclosure(video, "colosseum", "rome-80ad", 1, trust_anchors=other_root)
    assert problem == "C2PA manifest is Valid (signingCredential.untrusted)"


def test_an_unsigned_video_has_no_manifest(tmp_path: Path) -> None:
    video = _video(tmp_path)
    assert read_disclosure(video) is None
    assert check_disclosure(video, "colosseum", "rome-80ad", 1) == "no C2PA manifest"


def test_a_signer_whose_key_is_not_its_certificates_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    signer, _ = make_development_ca(tmp_path / "a")
    other, _ = make_development_ca(tmp_path / "b")
    mismatched = C2paSigner(signer.certificate_chain, other.private_key)
    video = _video(tmp_path)
    before = hashlib.sha256(video.read_bytes()).hexdigest()
    with pytest.raises(DisclosureError, match=r"cannot sign colosseum\.mp4"):
        mismatched.embed(video, spot_id="colosseum", era_id="rome-80ad", attempt=1)
    assert hashlib.sha256(video.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in video.parent.iterdir()) == ["colosseum.mp4"]
    with pytest.raises(DisclosureError, match=r"cannot read the signer.s files: .*missing\.pem"):
        C2paSigner(tmp_path / "missing.pem", signer.private_key).embed(
            video, spot_id="s", era_id="e", attempt=1
        )
    not_mp4 = tmp_path / "videos" / "notes.mp4"
    not_mp4.write_bytes(b"plain text, not a container")
    with pytest.raises(DisclosureError, match=r"cannot sign notes\.mp4"):
        signer.embed(not_mp4, spot_id="s", era_id="e", attempt=1)
    assert not_mp4.read_bytes() == b"plain text, not a container"


def test_the_manifest_definition() -> None:
    manifest = manifest_for("s", "e", 3, PROVENANCE, title="s.mp4")
    actions = manifest["assertions"][0]
    assert actions["label"] == "c2pa.actions"
    (created,) = actions["data"]["actions"]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"]["name"] == "wan2.1-t2v"
    assert manifest["assertions"][1] == {
        "label": "org.video-ledger.entry",
        "data": {"spotId": "s", "eraId": "e", "attempt": 3},
    }


def test_without_the_extra_every_call_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, _ = make_development_ca(tmp_path / "ca")
    video = _video(tmp_path)
    monkeypatch.setitem(sys.modules, "c2pa", None)  # what an interpreter without the package does
    monkeypatch.setitem(sys.modules, "cryptography.x509", None)
    with pytest.raises(C2paMissingError, match=r"pip install 'video-ledger\[c2pa\]'"):
        signer.embed(video, spot_id="s", era_id="e", attempt=1)
    with pytest.raises(C2paMissingError, match=r"pip install 'video-ledger\[c2pa\]'"):
        read_disclosure(video)
    with pytest.raises(C2paMissingError, match=r"pip install 'video-ledger\[c2pa\]'"):
        make_development_ca(tmp_path / "again")
