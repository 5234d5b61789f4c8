"""The minimal MP4 writer: a well-formed ISO base media file, box by box."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ledger.errors import InvalidEntryError
from ledger.mp4 import boxes, mp4_bytes, write_mp4

CONTAINERS = {"moov", "trak", "mdia", "minf", "dinf", "stbl"}


def _tree(data: bytes, offset: int = 0, end: int | None = None) -> list[tuple[str, object]]:
    """The boxes as a tree, every child checked to fit inside its parent."""
    end = len(data) if end is None else end
    found: list[tuple[str, object]] = []
    for kind, at, size in boxes(data[offset:end]):
        start = offset + at
        found.append((kind, _tree(data, start + 8, start + size) if kind in CONTAINERS else size))
    return found


def test_the_file_is_ftyp_moov_mdat_with_one_video_track() -> None:
    data = mp4_bytes(b"placeholder frames", width=640, height=360, seconds=2.5)
    tree = _tree(data)
    assert [kind for kind, _ in tree] == ["ftyp", "moov", "mdat"]
    assert data[4:12] == b"ftypisom"
    moov = dict(tree)["moov"]
    assert [kind for kind, _ in moov] == ["mvhd", "trak"]  # type: ignore[union-attr]
    trak = dict(moov)["trak"]  # type: ignore[arg-type]
    assert [kind for kind, _ in trak] == ["tkhd", "mdia"]  # type: ignore[union-attr]
    mdia = dict(trak)["mdia"]  # type: ignore[arg-type]
    assert [kind for kind, _ in mdia] == ["mdhd", "hdlr", "minf"]  # type: ignore[union-attr]
    stbl = dict(dict(mdia)["minf"])["stbl"]  # type: ignore[arg-type]
    assert [kind for kind, _ in stbl] == ["stsd", "stts", "stsc", "stsz", "stco"]  # type: ignore[union-attr]
    mvhd = data.index(b"mvhd")
    timescale, duration = struct.unpack_from(">II", data, mvhd + 4 + 4 + 8)
    assert (timescale, duration) == (1000, 2500)
    tkhd = data.index(b"tkhd")
    width, height = struct.unpack_from(">II", data, tkhd + 4 + 4 + 20 + 8 + 8 + 36)
    assert (width >> 16, height >> 16) == (640, 360)
    assert data[data.index(b"hdlr") + 12 : data.index(b"hdlr") + 16] == b"vide"
    assert data.endswith(b"mdat" + b"placeholder frames")


def test_write_mp4_makes_the_directory_and_returns_the_size(tmp_path: Path) -> None:
    target = tmp_path / "videos" / "a.mp4"
    size = write_mp4(target, b"x" * 100)
    assert size == target.stat().st_size == len(mp4_bytes(b"x" * 100))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ({"width": 0}, "1 to 65535 pixels"),
        ({"height": 1 << 16}, "1 to 65535 pixels"),
        ({"seconds": -1.0}, "not one this writer can make"),
        ({"seconds": 5e6}, "not one this writer can make"),
    ],
)
def test_shapes_the_container_cannot_hold_are_refused(shape: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidEntryError, match=match):
        mp4_bytes(b"", **shape)  # type: ignore[arg-type]


def test_boxes_refuse_bytes_that_are_not_whole_boxes() -> None:
    data = mp4_bytes(b"abc")
    with pytest.raises(InvalidEntryError, match="does not fit"):
        list(boxes(data[:-1]))
    with pytest.raises(InvalidEntryError, match="stray bytes"):
        list(boxes(data + b"\0\0\0"))
    large = struct.pack(">I4sQ", 1, b"free", 16)  # a 64-bit size
    assert list(boxes(large)) == [("free", 0, 16)]
    assert list(boxes(struct.pack(">I4s", 0, b"mdat") + b"to the end")) == [("mdat", 0, 18)]
