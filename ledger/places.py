"""The demo's places and eras: the spots and historical eras its stand-in pipeline makes videos of (a
module of its own, so that the command line's ``demo`` options know their bounds without importing the
demo)."""

from __future__ import annotations

__all__ = ("ERAS", "SPOTS")

SPOTS = (
    "colosseum", "acropolis", "forbidden-city", "machu-picchu", "petra", "angkor-wat", "great-pyramid",
    "hagia-sophia", "alhambra", "chichen-itza", "stonehenge", "notre-dame", "taj-mahal", "kyoto-kinkaku-ji",
)  # fmt: skip
ERAS = ("founding", "golden-age", "decline", "rediscovery", "today", "far-future")
