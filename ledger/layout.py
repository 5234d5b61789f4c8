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
    "TREE_INDEX_NAME",
    "TREE_KEYS_NAME",
    "TREE_NAME",
    "TREE_NOTE_NAME",
    "WATCH_LOCK_NAME",
    "Layout",
    "default_directory",
)

DIR_ENV: Final = "VIDEO_LEDGER_DIR"
LOG_NAME: Final = "events.jsonl"
SNAPSHOT_NAME: Final = "generated-videos.json"
CHECKPOINT_NAME: Final = "checkpoint.json"
SNAPSHOT_LOCK_NAME: Final = "snapshot.lock"
TREE_NAME: Final = "merkle.tree"
TREE_INDEX_NAME: Final = "merkle.index"
TREE_KEYS_NAME: Final = "merkle.keys"
TREE_NOTE_NAME: Final = "merkle.note"
WATCH_LOCK_NAME: Final = "watch.lock"
"""Held (shared) by every running ``watch`` for its whole life: ``status`` tells whether one runs."""


_OWN_NAMES: Final = (
    LOG_NAME,
    CHECKPOINT_NAME,
    SNAPSHOT_LOCK_NAME,
    WATCH_LOCK_NAME,
    TREE_NAME,
    TREE_INDEX_NAME,
    TREE_KEYS_NAME,
    TREE_NOTE_NAME,
)
"""The ledger's own files; ``events.jsonl.*`` and ``checkpoint.json.*`` are theirs too (companions, temp
files)."""


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

    def snapshot_problem(self) -> str | None:
        """Why ``snapshot`` cannot be this ledger's snapshot, if it cannot: it names one of the ledger's own
        files (``--snapshot DIR/events.jsonl``), which the projector would replace with a JSON array, or a
        name the ledger gives its own temp files (``checkpoint.json.tmp-…``), which the next write would
        delete as a dead projector's leftover."""
        name = self.snapshot.name
        if name not in _OWN_NAMES and not name.startswith((LOG_NAME + ".", CHECKPOINT_NAME + ".")):
            return None
        if name.startswith(CHECKPOINT_NAME + "."):
            return (
                f"the snapshot {self.snapshot} is named like a temp file of the ledger's {CHECKPOINT_NAME}, "
                "which a writer deletes as a dead projector's leftover; name the file the app reads"
            )
        return (
            f"the snapshot {self.snapshot} would be a ledger's own {name}, which the snapshot would "
            "overwrite; name the file the app reads"
        )

    @property
    def log(self) -> Path:
        return self.directory / LOG_NAME

    def holds_log(self) -> bool:
        """Whether ``events.jsonl`` is there (a symbolic link counts: whether one may be followed is
        checked where the log is opened)."""
        return self.log.exists() or self.log.is_symlink()

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT_NAME

    @property
    def watch_lock(self) -> Path:
        return self.directory / WATCH_LOCK_NAME

    @property
    def snapshot_lock(self) -> Path:
        return self.directory / SNAPSHOT_LOCK_NAME
