"""Disclosure inside the file: a signed C2PA manifest saying the video is AI-generated, and by what.

With the optional extra (``pip install 'video-ledger[c2pa]'``: c2pa-python, and cryptography with it) a
:class:`C2paSigner`, configured by the pipeline with its certificate chain and key files, embeds in an MP4
a manifest with

- a ``c2pa.created`` action whose digital source type is IPTC's ``trainedAlgorithmicMedia``, the model as
  its software agent, and the attempt's provenance as its parameters;
- an ``org.video-ledger.entry`` assertion naming the ledger entry (``spotId``, ``eraId``) and attempt.

:func:`read_disclosure` reads it back and validates it (signature, the file's hash, and the certificate
chain when trust anchors are given); :func:`check_disclosure` says what is wrong with a file for an entry.
Everything runs offline: no timestamp authority unless one is configured, no remote manifests, no OCSP.
Without the extra, each call raises :class:`C2paMissingError`, which says what to install.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import io
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

import msgspec

from ledger.errors import InvalidEntryError, LedgerError, MissingExtraError
from ledger.events import Provenance

__all__ = (
    "C2PA_EXTRA",
    "ENTRY_LABEL",
    "TRAINED_ALGORITHMIC_MEDIA",
    "C2paMissingError",
    "C2paSigner",
    "Disclosure",
    "DisclosureError",
    "check_disclosure",
    "make_development_ca",
    "manifest_for",
    "read_disclosure",
    "require_c2pa",
)

C2PA_EXTRA: Final = "pip install 'video-ledger[c2pa]'"
TRAINED_ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
"""IPTC's digital source type for media created by a model trained on sampled content."""
ENTRY_LABEL: Final = "org.video-ledger.entry"
"""The label of the assertion that names the ledger entry and attempt."""
MP4: Final = "video/mp4"
Algorithm = Literal["ed25519", "es256", "es384", "es512", "ps256", "ps384", "ps512"]
_CLAIM_GENERATOR: Final = {"name": "video-ledger", "version": "0.1.0"}
_OFFLINE: Final = {"remote_manifest_fetch": False, "ocsp_fetch": False}


class C2paMissingError(MissingExtraError):
    """C2PA disclosure needs the ``c2pa`` extra, which is not installed; nothing was signed or read."""


class DisclosureError(LedgerError):
    """A manifest could not be embedded (a bad key or certificate, a file that is not an MP4) or read.
    A file being signed is left exactly as it was."""


def require_c2pa() -> None:
    """Raise :class:`C2paMissingError` unless the ``c2pa`` extra is installed."""
    _c2pa()


def _c2pa() -> ModuleType:
    try:
        return importlib.import_module("c2pa")
    except ImportError:
        raise C2paMissingError(f"C2PA disclosure needs the c2pa extra: {C2PA_EXTRA}") from None


@dataclass(frozen=True)
class C2paSigner:
    """What signs the manifests: a PEM certificate chain (the signing certificate first, then its
    intermediates; not the root), the PEM private key of the signing certificate, its algorithm, and
    optionally an RFC 3161 timestamp authority's URL (``None``: no timestamp, no network)."""

    certificate_chain: Path
    private_key: Path
    algorithm: Algorithm = "ed25519"
    timestamp_url: str | None = None

    def embed(
        self,
        path: str | os.PathLike[str],
        *,
        spot_id: str,
        era_id: str,
        attempt: int | None,
        provenance: Provenance | None = None,
    ) -> None:
        """Sign the MP4 at ``path`` in place with :func:`manifest_for` the entry and attempt.

        The signed file replaces the old one whole (written beside it, fsynced, renamed): a crash leaves
        one or the other. Raises :class:`DisclosureError` (nothing changed) or :class:`C2paMissingError`.
        """
        c2pa = _c2pa()
        target = Path(path)
        manifest = manifest_for(spot_id, era_id, attempt, provenance, title=target.name)
        try:
            info = c2pa.C2paSignerInfo(
                alg=self.algorithm.encode(),
                sign_cert=self.certificate_chain.read_bytes(),
                private_key=self.private_key.read_bytes(),
                ta_url=None if self.timestamp_url is None else self.timestamp_url.encode(),
            )
        except OSError as exc:
            raise DisclosureError(f"cannot read the signer's files: {exc}") from None
        context = c2pa.Context.from_dict(
            {  # the signed file is validated before it replaces the old one (a key not of its certificate)
                "verify": {**_OFFLINE, "verify_after_sign": True, "verify_trust": False},
                "builder": {"thumbnail": {"enabled": False}},
            }
        )
        try:
            with (
                _replacing(target) as (source, dest),
                c2pa.Signer.from_info(info) as signer,
                c2pa.Builder(manifest, context) as builder,
            ):
                builder.sign(signer, MP4, source, dest)
        except (c2pa.C2paError, ValueError, OSError) as exc:
            raise DisclosureError(f"cannot sign {target.name}: {exc}") from None


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[tuple[io.BufferedReader, io.BufferedRandom]]:
    """The file at ``target`` open for reading, and a new file beside it to write its replacement in,
    which takes its place (fsynced, renamed, the directory fsynced) when the block ends without error
    and is removed otherwise. Streams: a video of any size is never held in memory."""
    temp = target.with_name(f".{target.name}.signing-{secrets.token_hex(6)}")
    try:
        with open(target, "rb") as source, open(temp, "x+b") as dest:
            yield source, dest
            dest.flush()
            os.fsync(dest.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def manifest_for(
    spot_id: str, era_id: str, attempt: int | None, provenance: Provenance | None, *, title: str
) -> dict[str, Any]:
    """The C2PA manifest definition (c2pa-python's JSON form) for a video of entry ``(spot_id, era_id)``
    made by ``attempt`` with ``provenance``."""
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
    if provenance is not None:
        model = provenance.model
        if model is not None:
            action["softwareAgent"] = msgspec.to_builtins(model)
        given = msgspec.to_builtins(provenance)
        given.pop("model", None)
        if "parameters" in given:  # canonical JSON text in the log; an object in the manifest
            given["parameters"] = msgspec.json.decode(given["parameters"])
        if given:
            action["parameters"] = given
    entry: dict[str, Any] = {"spotId": spot_id, "eraId": era_id}
    if attempt is not None:
        entry["attempt"] = attempt
    return {
        "claim_generator_info": [_CLAIM_GENERATOR],
        "title": title,
        "format": MP4,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [action]}},
            {"label": ENTRY_LABEL, "data": entry},
        ],
    }


class Disclosure(msgspec.Struct, kw_only=True, rename="camel"):
    """A file's C2PA manifest as read back and validated."""

    state: str
    """c2pa's validation state: ``Trusted`` (valid, and its chain leads to a given trust anchor),
    ``Valid`` (signature and hashes hold; no trust anchor given, or none matched), or ``Invalid``."""
    failures: list[str] = []
    """The validation failure codes (``assertion.bmffHash.mismatch``: the file changed after signing)."""
    ai_generated: bool = False
    """Whether a ``c2pa.created`` action says ``trainedAlgorithmicMedia``."""
    software_agent: dict[str, Any] | None = None
    """The model, as the ``c2pa.created`` action names it."""
    parameters: dict[str, Any] | None = None
    """The provenance the action carries: seed, parameters, prompt template and digest, inputs."""
    entry: dict[str, Any] | None = None
    """The ``org.video-ledger.entry`` assertion: ``spotId``, ``eraId``, ``attempt``."""
    signer: str | None = None
    """The signing certificate's common name."""


def read_disclosure(
    path: str | os.PathLike[str], *, trust_anchors: str | os.PathLike[str] | None = None
) -> Disclosure | None:
    """The manifest embedded in the MP4 at ``path``, validated (``None``: the file has none).

    ``trust_anchors`` is a PEM file of root certificates: given, a manifest whose chain leads to none of
    them is not ``Trusted``; not given, the chain is not judged and a sound manifest is ``Valid``.
    """
    c2pa = _c2pa()
    verify: dict[str, Any] = dict(_OFFLINE)
    settings: dict[str, Any] = {"verify": verify}
    if trust_anchors is None:
        verify["verify_trust"] = False
    else:
        settings["trust"] = {"trust_anchors": Path(trust_anchors).read_text()}
    try:
        with (
            open(path, "rb") as stream,
            c2pa.Reader(MP4, stream, context=c2pa.Context.from_dict(settings)) as r,
        ):
            state = r.get_validation_state() or "Invalid"
            results = r.get_validation_results() or {}
            manifest = r.get_active_manifest() or {}
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError as exc:
        raise DisclosureError(f"cannot read the manifest of {Path(path).name}: {exc}") from None
    failures = [item.get("code", "?") for item in results.get("activeManifest", {}).get("failure", [])]
    return _disclosure(state, failures, manifest)


def _disclosure(state: str, failures: list[str], manifest: dict[str, Any]) -> Disclosure:
    found = Disclosure(state=state, failures=failures)
    for assertion in manifest.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data", {})
        if label == ENTRY_LABEL:
            found.entry = data
        elif label.startswith("c2pa.actions"):
            for action in data.get("actions", []):
                if action.get("action") == "c2pa.created":
                    found.ai_generated |= action.get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA
                    found.software_agent = action.get("softwareAgent", found.software_agent)
                    found.parameters = action.get("parameters", found.parameters)
    found.signer = manifest.get("signature_info", {}).get("common_name")
    return found


def check_disclosure(
    path: str | os.PathLike[str],
    spot_id: str,
    era_id: str,
    attempt: int | None,
    *,
    trust_anchors: str | os.PathLike[str] | None = None,
) -> str | None:
    """What is wrong with the disclosure in the file at ``path`` for entry ``(spot_id, era_id)`` made by
    ``attempt`` (``None``: any attempt), in words, or ``None`` when its manifest validates (and, with
    ``trust_anchors``, is trusted), says AI-generated, and names that entry and attempt."""
    try:
        found = read_disclosure(path, trust_anchors=trust_anchors)
    except DisclosureError as exc:
        return str(exc)
    if found is None:
        return "no C2PA manifest"
    wanted = "Trusted" if trust_anchors is not None else "Valid"
    if found.state not in (wanted, "Trusted"):
        return f"C2PA manifest is {found.state} ({', '.join(found.failures) or 'no reason given'})"
    if not found.ai_generated:
        return "C2PA manifest does not say the video is AI-generated (trainedAlgorithmicMedia)"
    entry = found.entry or {}
    named = (entry.get("spotId"), entry.get("eraId"))
    if named != (spot_id, era_id):
        return f"C2PA manifest names entry {named[0]}/{named[1]}, not this one"
    if attempt is not None and entry.get("attempt") != attempt:
        return f"C2PA manifest names attempt {entry.get('attempt')}, not {attempt}"
    return None


def make_development_ca(
    directory: str | os.PathLike[str], *, algorithm: Literal["ed25519", "es256"] = "ed25519", days: int = 30
) -> tuple[C2paSigner, Path]:
    """A throwaway certificate authority in ``directory`` for development and tests: a root, an
    intermediate and a signing certificate. Returns the signer and the root's PEM file (the trust anchor
    to read with). Not for published videos: anyone can make one."""
    x509, hashes, serialization, keys = _crypto()
    root_key, middle_key, leaf_key = (keys(algorithm) for _ in range(3))
    now = dt.datetime.now(dt.UTC)

    def certificate(name: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> Any:
        def subject(common: str) -> Any:
            oid = x509.oid.NameOID
            return x509.Name([x509.NameAttribute(oid.ORGANIZATION_NAME, "video-ledger development"),
                              x509.NameAttribute(oid.COMMON_NAME, common)])  # fmt: skip

        usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "encipher_only", "decipher_only"), False)  # fmt: skip
        built = (
            x509.CertificateBuilder().subject_name(subject(name)).issuer_name(subject(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False)
        )  # fmt: skip
        if not ca:  # C2PA signing certificates carry an extended key usage it accepts
            email = x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION
            built = built.add_extension(x509.ExtendedKeyUsage([email]), critical=False)
        return built.sign(issuer_key, None if algorithm == "ed25519" else hashes.SHA256())

    root = certificate("development root", root_key, "development root", root_key, ca=True)
    middle = certificate("development intermediate", middle_key, "development root", root_key, ca=True)
    leaf = certificate("video-ledger signer", leaf_key, "development intermediate", middle_key, ca=False)
    pem = serialization.Encoding.PEM
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "root.pem").write_bytes(root.public_bytes(pem))
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + middle.public_bytes(pem))
    key_file = folder / "signer.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return C2paSigner(folder / "chain.pem", key_file, algorithm), folder / "root.pem"


def _crypto() -> tuple[Any, Any, Any, Any]:
    try:
        x509 = importlib.import_module("cryptography.x509")
        importlib.import_module("cryptography.x509.oid")
        hashes = importlib.import_module("cryptography.hazmat.primitives.hashes")
        serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
        ed25519 = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")
        ec = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    except ImportError:
        raise C2paMissingError(f"a development CA needs the c2pa extra: {C2PA_EXTRA}") from None

    def keys(algorithm: str) -> Any:
        if algorithm == "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
        if algorithm == "es256":
            return ec.generate_private_key(ec.SECP256R1())
        raise InvalidEntryError(f"a development CA signs with ed25519 or es256, not {algorithm!r}")

    return x509, hashes, serialization, keys
