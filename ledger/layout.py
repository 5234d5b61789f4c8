"""Where the files of a ledger directory are (``docs/format.md`` describes each)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = (
    "CHECKPOINT_NAME",
    "DIR_ENV",
    "LOG_NAME",
    "SNAPSHOT_LOCK_NAME",
    "SNAPSHOT_NAME",
    "Layout",
    "default_directory",
)

DIR_ENV: Final = "VIDEO_LEDGER_DIR"
LOG_NAME: Final = "events.jsonl"
SNAPSHOT_NAME: Final = "generated-videos.json"
CHECKPOINT_NAME: Final = "checkpoint.json"
SNAPSHOT_LOCK_NAME: Final = "snapshot.lock"


def default_directory() -> Path:
    """``$VIDEO_LEDGER_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(DIR_ENV) or "data")


@dataclass(frozen=True, slots=True)
class Layout:
    """The paths of one ledger directory; ``snapshot`` may live elsewhere (the app's own folder)."""

    directory: Path
    snapshot: Path

    @classmethod
    def of(
        cls, directory: str | os.PathLike[str] | None, snapshot: str | os.PathLike[str] | None = None, *,
        follow_symlinks: bool = False,
    ) -> Layout:  # fmt: skip
        base = Path(directory) if directory is not None else default_directory()
        target = Path(snapshot) if snapshot is not None else base / SNAPSHOT_NAME
        if follow_symlinks:
            target = Path(os.path.realpath(target))
        return cls(base, target)

    @property
    def log(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT_NAME

    @property
    def snapshot_lock(self) -> Path:
        return self.directory / SNAPSHOT_LOCK_NAME
