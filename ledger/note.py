"""Signed notes and checkpoints: the C2SP ``signed-note``, ``tlog-checkpoint`` and ``tlog-cosignature``
formats, with Ed25519 keys.

A *note* is UTF-8 text ending in a newline, a blank line, then signature lines ``— NAME BASE64`` where the
base64 holds a 4-byte key id and the signature. A *checkpoint* is a note whose text is the log's origin,
its tree size (decimal), its root (base64) and optional extension lines. A key is named by its *verifier
key* ``NAME+HEXID+BASE64(TYPE || PUBLIC KEY)``; the key id is the first 4 bytes of
``SHA-256(NAME || 0x0A || TYPE || PUBLIC KEY)``. Two types are used: ``0x01`` (Ed25519 over the note text:
the log's own key) and ``0x04`` (an Ed25519 *cosignature*: a witness signs ``cosignature/v1``, a ``time``
line and the note text, and its signature starts with that time, 8 bytes big-endian).

Private keys are kept as ``PRIVATE+KEY+NAME+HEXID+BASE64(TYPE || SEED)`` (Go's
``golang.org/x/mod/sumdb/note`` format for type ``0x01``). Signing and checking need the ``cryptography``
package (``pip install 'video-ledger[sign]'``); without it :class:`~ledger.errors.SigningUnavailableError`
says so. Parsing needs nothing. Every encoding is checked to be the one canonical spelling, so no byte of a
note, key or signature can change without the check failing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.errors import NoteError, SigningUnavailableError

__all__ = (
    "COSIGNATURE",
    "ED25519",
    "Checkpoint",
    "Note",
    "Signer",
    "Verifier",
    "cosign",
    "generate_key",
    "key_id",
    "open_note",
    "parse_note",
    "sign",
)

ED25519: Final = 0x01
"""The signature type of a log's Ed25519 key (signed note)."""
COSIGNATURE: Final = 0x04
"""The signature type of a witness's timestamped Ed25519 cosignature (tlog-cosignature v1)."""
_TYPES: Final = (ED25519, COSIGNATURE)
_DASH: Final = "\u2014 "
MAX_SIGNATURES: Final = 100
"""A note with more signature lines is refused (the spec asks verifiers to accept at least 16)."""
MAX_NOTE_BYTES: Final = 1 << 20
_NAME = re.compile(r"[^\s+]+")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_INSTALL: Final = (
    "signing and checking notes needs the cryptography package: pip install 'video-ledger[sign]'"
)


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 in its one canonical spelling (padding, no stray bits), or :class:`NoteError`."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None
    if base64.b64encode(data).decode() != text:
        raise NoteError(f"{what} is not canonical base64")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _check_name(name: str, what: str = "key name") -> str:
    if not _NAME.fullmatch(name):
        raise NoteError(f"{what} {name!r} must be non-empty, without spaces or '+'")
    return name


def key_id(name: str, kind: int, public: bytes) -> int:
    """``SHA-256(name || 0x0A || kind || public)[:4]``, big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningUnavailableError(_INSTALL) from None
    return ed25519


@dataclass(frozen=True)
class Verifier:
    """A public key that checks signatures: its name, type (:data:`ED25519` or :data:`COSIGNATURE`) and
    32-byte Ed25519 key. :meth:`parse` reads a verifier key; ``str()`` writes one."""

    name: str
    kind: int
    public: bytes

    @property
    def id(self) -> int:
        return key_id(self.name, self.kind, self.public)

    def __str__(self) -> str:
        return f"{self.name}+{self.id:08x}+{_b64(bytes([self.kind]) + self.public)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """The verifier key ``NAME+HEXID+BASE64(TYPE || KEY)``; :class:`~ledger.errors.NoteError` if it is
        malformed, of another type, or its id does not match its name and key."""
        parts = vkey.strip("\n").split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is NAME+HEXID+BASE64 (three parts joined by '+')")
        name, hexid, b64 = parts
        _check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hexid):
            raise NoteError("a verifier key's id is 8 lowercase hex digits")
        data = _b64decode(b64, "the verifier key")
        if len(data) != 33 or data[0] not in _TYPES:
            raise NoteError("the verifier key is not an Ed25519 key (type 0x01 or 0x04, 32 bytes)")
        verifier = cls(name, data[0], data[1:])
        if verifier.id != int(hexid, 16):
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """Whether ``signature`` (without its key id) signs note ``text``: ``None`` if not; else the
        cosignature's time (0 for a plain signature)."""
        ed25519 = _ed25519()
        from cryptography.exceptions import InvalidSignature

        stamp = 0
        message = text
        if self.kind == COSIGNATURE:
            if len(signature) != 72:
                return None
            (stamp,) = struct.unpack(">Q", signature[:8])
            if stamp >= 1 << 63:
                return None
            message, signature = _cosigned(text, stamp), signature[8:]
        if len(signature) != 64:
            return None
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return None
        return stamp


def _cosigned(text: bytes, stamp: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % stamp + text


@dataclass(frozen=True)
class Signer:
    """A private key that signs notes (:data:`ED25519`) or cosigns checkpoints (:data:`COSIGNATURE`)."""

    name: str
    kind: int
    seed: bytes = field(repr=False)

    @property
    def verifier(self) -> Verifier:
        ed25519 = _ed25519()
        public = ed25519.Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return Verifier(self.name, self.kind, public)

    def __str__(self) -> str:
        return f"PRIVATE+KEY+{self.name}+{self.verifier.id:08x}+{_b64(bytes([self.kind]) + self.seed)}"

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """The private key ``PRIVATE+KEY+NAME+HEXID+BASE64(TYPE || SEED)``; :class:`NoteError` if it is
        malformed or its id does not match."""
        parts = skey.strip("\n").split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a private key is PRIVATE+KEY+NAME+HEXID+BASE64")
        name, hexid, b64 = parts[2:]
        _check_name(name)
        data = _b64decode(b64, "the private key")
        if len(data) != 33 or data[0] not in _TYPES:
            raise NoteError("the private key is not an Ed25519 key (type 0x01 or 0x04, 32 bytes)")
        signer = cls(name, data[0], data[1:])
        if not re.fullmatch(r"[0-9a-f]{8}", hexid) or signer.verifier.id != int(hexid, 16):
            raise NoteError("the private key's id does not match its name and key")
        return signer

    def signature(self, text: bytes, stamp: int | None = None) -> bytes:
        """The signature line's bytes (key id first) over note ``text``; a cosignature is stamped with
        ``stamp`` (seconds since the epoch; now by default)."""
        ed25519 = _ed25519()
        key = ed25519.Ed25519PrivateKey.from_private_bytes(self.seed)
        head = struct.pack(">I", self.verifier.id)
        if self.kind == COSIGNATURE:
            stamp = int(time.time()) if stamp is None else stamp
            signed: bytes = key.sign(_cosigned(text, stamp))
            return head + struct.pack(">Q", stamp) + signed
        signed = key.sign(text)
        return head + signed


def generate_key(name: str, kind: int = ED25519) -> Signer:
    """A new random Ed25519 key named ``name``."""
    _check_name(name)
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return Signer(name, kind, seed)


@dataclass(frozen=True)
class Note:
    """A note as opened: its text and its signature lines ``(name, key id, signature)``; ``verified``
    names the keys (of those it was opened with) whose signature checked, with the cosignature times."""

    text: bytes
    signatures: tuple[tuple[str, int, bytes], ...]
    verified: dict[Verifier, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        lines = [
            f"{_DASH}{name} {_b64(struct.pack('>I', kid) + sig)}\n" for name, kid, sig in self.signatures
        ]
        return self.text + b"\n" + "".join(lines).encode()


def _decode(data: bytes) -> str:
    """``data`` as a note's characters: at most :data:`MAX_NOTE_BYTES` of UTF-8, no control characters
    but newlines."""
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("a note is UTF-8") from None
    if _CONTROL.search(text):
        raise NoteError("a note holds no control characters but newlines")
    return text


def parse_note(data: bytes) -> Note:
    """A note's text and signature lines, parsed and NOT checked (:func:`open_note` checks them):
    :class:`~ledger.errors.NoteError` if it is not a note."""
    text = _decode(data)
    cut = text.rfind("\n\n")
    if cut < 0 or not text.endswith("\n"):
        raise NoteError("a note is text, a blank line and signature lines, each ending in a newline")
    body, lines = text[: cut + 1], text[cut + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        name, space, b64 = line.removeprefix(_DASH).partition(" ")
        if not line.startswith(_DASH) or not space:
            raise NoteError("a signature line is '\u2014 NAME BASE64'")
        _check_name(name)
        raw = _b64decode(b64, "a signature")
        if len(raw) < 5:
            raise NoteError("a signature is a 4-byte key id and at least one byte")
        signatures.append((name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return Note(body.encode(), tuple(signatures))


def open_note(data: bytes, verifiers: Sequence[Verifier], *, need: int = 1) -> Note:
    """Parse a signed note and check its signatures by the keys ``verifiers``: signatures by other keys
    (another name or id) are ignored; a signature by a known key that does not check, or signatures by
    fewer than ``need`` of them (one by default; ``len(verifiers)``: all), raise
    :class:`~ledger.errors.NoteError`."""
    note = parse_note(data)
    known = {(v.name, v.id): v for v in verifiers}
    for name, kid, sig in note.signatures:
        verifier = known.get((name, kid))
        if verifier is None:
            continue
        if verifier in note.verified:
            raise NoteError(f"two signatures by {name} in one note")
        stamp = verifier.verify(note.text, sig)
        if stamp is None:
            raise NoteError(
                f"the signature by {name} does not check: the note or the key is not the one signed"
            )
        note.verified[verifier] = stamp
    if not note.verified:
        names = ", ".join(sorted({v.name for v in verifiers})) or "no key"
        raise NoteError(f"the note carries no signature by {names}")
    if len(note.verified) < need:
        missing = ", ".join(sorted(v.name for v in verifiers if v not in note.verified))
        raise NoteError(f"the note carries no signature by {missing}")
    return note


def sign(text: bytes, signer: Signer, *, stamp: int | None = None) -> bytes:
    """A signed note of ``text`` (UTF-8, ending in a newline) with one signature by ``signer``."""
    body = _decode(text)
    if not body.endswith("\n") or body.endswith("\n\n") or body == "\n":
        raise NoteError("a note's text ends in one newline, after a line that is not empty")
    sig = signer.signature(text, stamp)
    return Note(text, ((signer.name, signer.verifier.id, sig[4:]),)).encode()


def cosign(data: bytes, signer: Signer, *, stamp: int | None = None) -> bytes:
    """``data``, a signed note, with ``signer``'s signature added (any earlier one of its replaced)."""
    note = parse_note(data)
    sig = signer.signature(note.text, stamp)
    kid = signer.verifier.id
    others = tuple(s for s in note.signatures if (s[0], s[1]) != (signer.name, kid))
    return Note(note.text, (*others, (signer.name, kid, sig[4:]))).encode()


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's ``origin``, its tree ``size`` and ``root``, and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> bytes:
        """The note text: ``origin``, ``size``, ``base64(root)`` and each extension, one per line."""
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode()

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        """A checkpoint's note text (as :attr:`Note.text`); :class:`NoteError` if it is not one."""
        lines = text.decode("utf-8").split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint is at least three non-empty lines: origin, tree size, root hash")
        origin, size, b64, *extensions = lines[:-1]
        if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size):
            raise NoteError("a checkpoint's tree size is a decimal number without leading zeros")
        root = _b64decode(b64, "the checkpoint's root hash")
        if len(root) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        return cls(origin, int(size), root, tuple(extensions))

    def extension(self, prefix: str) -> str | None:
        """The rest of the first extension line that starts with ``prefix`` (``None``: none does)."""
        for line in self.extensions:
            if line.startswith(prefix):
                return line[len(prefix) :]
        return None
