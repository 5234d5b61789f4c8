"""A minimal valid MP4 (ISO base media file) container: ``ftyp``, ``moov``, ``mdat``.

The demo's placeholder videos are written with it so that they are real containers that a C2PA signer can
embed a manifest in (:mod:`ledger.disclosure`) and a player can open: one video track of the given size and
duration with no samples, and the payload in ``mdat`` (bytes no sample refers to, which players skip).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

from ledger.errors import InvalidEntryError

__all__ = ("boxes", "mp4_bytes", "write_mp4")

_TIMESCALE = 1000  # units per second of the movie and track times: milliseconds
# The unity matrix of ISO/IEC 14496-12 (16.16 and 2.30 fixed point), as mvhd and tkhd carry it.
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _track(width: int, height: int, duration: int) -> bytes:
    tkhd = _full_box(
        b"tkhd", 0, 0x000003,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, 1, 0, duration),  # created, modified, track id 1, reserved, duration
        bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),  # reserved; layer, group, volume (video: 0), reserved
        _MATRIX, struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _TIMESCALE, duration, 0x55C4, 0))  # 'und'
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I4s12s", 0, b"vide", bytes(12)), b"VideoHandler\0")
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        *(_full_box(kind, 0, 0, struct.pack(">I", 0)) for kind in (b"stsd", b"stts", b"stsc")),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, _box(b"minf", vmhd, dinf, stbl)))


def mp4_bytes(payload: bytes = b"", *, width: int = 16, height: int = 16, seconds: float = 1.0) -> bytes:
    """The bytes of an MP4 file: one ``width`` by ``height`` video track lasting ``seconds``, with no
    samples, and ``payload`` in its ``mdat`` box.

    Raises :class:`~ledger.errors.InvalidEntryError` for a size or duration the container cannot hold.
    """
    duration = round(seconds * _TIMESCALE)
    if not (0 < width < 1 << 16 and 0 < height < 1 << 16):
        raise InvalidEntryError(f"an MP4 frame is 1 to 65535 pixels a side, not {width} by {height}")
    if not 0 <= duration < 1 << 32:
        raise InvalidEntryError(f"an MP4 of {seconds} seconds is not one this writer can make")
    if len(payload) > (1 << 32) - 9:
        raise InvalidEntryError("an MP4 payload here is less than 4 GiB")
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"mp41")
    mvhd = _full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, _TIMESCALE, duration),  # created, modified, timescale, duration
        struct.pack(">IH", 0x00010000, 0x0100), bytes(10),  # rate 1.0, volume 1.0, reserved
        _MATRIX, bytes(24), struct.pack(">I", 2),  # pre-defined; next track id
    )  # fmt: skip
    moov = _box(b"moov", mvhd, _track(width, height, duration))
    return ftyp + moov + _box(b"mdat", payload)


def write_mp4(
    path: str | os.PathLike[str], payload: bytes = b"", *, width: int = 16, height: int = 16,
    seconds: float = 1.0,
) -> int:  # fmt: skip
    """Write :func:`mp4_bytes` to ``path``, making its directory; returns the file's size."""
    data = mp4_bytes(payload, width=width, height=height, seconds=seconds)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return len(data)


def boxes(data: bytes) -> Iterator[tuple[str, int, int]]:
    """The top-level boxes of an MP4's bytes: ``(type, offset, size)`` of each, in order.

    Raises :class:`~ledger.errors.InvalidEntryError` where the bytes are not a sequence of whole boxes.
    """
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise InvalidEntryError(f"not an MP4: {len(data) - offset} stray bytes at offset {offset}")
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if len(data) - offset < 16:
                raise InvalidEntryError(f"not an MP4: a box header cut short at offset {offset}")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        if size < header or offset + size > len(data):
            raise InvalidEntryError(f"not an MP4: a box of {size} bytes at offset {offset} does not fit")
        yield kind.decode("latin-1"), offset, size
        offset += size
