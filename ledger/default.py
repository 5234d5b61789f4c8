"""The default ledger and the task card's module-level functions, each acting on it.

The default ledger is the one in :func:`~ledger.layout.default_directory` (``$VIDEO_LEDGER_DIR``, else
``./data``), or the directory ``$VIDEO_LEDGER_STORE`` names, as on the command line: opened once per
directory and process, and again once a handle stops accepting writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Unpack

from ledger import pipeline
from ledger.audit import VerifyReport
from ledger.events import EventType, Provenance, Usage, VideoMetadata, Worker
from ledger.layout import default_directory
from ledger.pipeline import Job, Signer
from ledger.store import HistoryFilters, Ledger, RebuildReport
from ledger.stores import is_url, store_spec

__all__ = (
    "claim",
    "default_ledger",
    "generate_and_store_video",
    "generation",
    "get_all_video_metadata",
    "get_video_metadata",
    "history",
    "mark_video_failed",
    "mark_video_ready",
    "reap",
    "rebuild",
    "set_video_metadata",
    "verify",
)

_defaults: dict[Path, Ledger] = {}
_defaults_mutex = threading.Lock()


def default_ledger() -> Ledger:
    """The ledger in :func:`default_directory` (or the directory ``$VIDEO_LEDGER_STORE`` names, as on the
    command line), opened once per directory and process."""
    spec = store_spec(None)
    directory = (Path(spec) if spec is not None and not is_url(spec) else default_directory()).absolute()
    with _defaults_mutex:
        ledger = _defaults.get(directory)
        if ledger is None or ledger.unusable is not None:
            ledger = _defaults[directory] = Ledger(directory)
        return ledger


def get_all_video_metadata() -> list[VideoMetadata]:
    """:meth:`Ledger.get_all_video_metadata` on the default ledger."""
    return default_ledger().get_all_video_metadata()


def get_video_metadata(spot_id: str, era_id: str) -> VideoMetadata | None:
    """:meth:`Ledger.get_video_metadata` on the default ledger."""
    return default_ledger().get_video_metadata(spot_id, era_id)


def set_video_metadata(entry: VideoMetadata | Mapping[str, Any]) -> VideoMetadata:
    """:meth:`Ledger.set_video_metadata` on the default ledger."""
    return default_ledger().set_video_metadata(entry)


def mark_video_failed(
    spot_id: str, era_id: str, error: str, *, attempt: int | None = None, usage: Usage | None = None
) -> VideoMetadata:
    """:meth:`Ledger.mark_video_failed` on the default ledger."""
    return default_ledger().mark_video_failed(spot_id, era_id, error, attempt=attempt, usage=usage)


def history(
    spot_id: str | None = None, era_id: str | None = None, **filters: Unpack[HistoryFilters]
) -> Iterator[EventType]:
    """:meth:`Ledger.history` on the default ledger."""
    return default_ledger().history(spot_id, era_id, **filters)


def rebuild() -> RebuildReport:
    """:meth:`Ledger.rebuild` on the default ledger."""
    return default_ledger().rebuild()


def verify(*, expect_head: str | None = None) -> VerifyReport:
    """:meth:`Ledger.verify` on the default ledger."""
    return default_ledger().verify(expect_head=expect_head)


def mark_video_ready(
    spot_id: str,
    era_id: str,
    local_path: str,
    *,
    size: int | None = None,
    sha256: str | None = None,
    attempt: int | None = None,
    **records: Unpack[pipeline.EndRecords],
) -> VideoMetadata:
    """:meth:`Ledger.mark_video_ready` on the default ledger (``records``: ``provenance``, ``usage``)."""
    return default_ledger().mark_video_ready(
        spot_id, era_id, local_path, size=size, sha256=sha256, attempt=attempt, **records
    )


def generation(
    spot_id: str,
    era_id: str,
    prompt: str,
    *,
    local_path: str | None = None,
    takeover: int | None = None,
    **options: Unpack[pipeline.AttemptOptions],
) -> contextlib.AbstractContextManager[pipeline.Job]:
    """:meth:`Ledger.generation` on the default ledger (``options``: ``provenance``, ``worker``, ``signer``,
    ``regenerate``)."""
    return default_ledger().generation(
        spot_id, era_id, prompt, local_path=local_path, takeover=takeover, **options
    )


def generate_and_store_video(
    spot_id: str,
    era_id: str,
    prompt: str,
    generate: Callable[[], pipeline.Generated],
    *,
    local_path: str | Callable[[Path], str] | None = None,
    **options: Unpack[pipeline.StoreOptions],
) -> VideoMetadata:
    """:meth:`Ledger.generate_and_store_video` on the default ledger (``options``: those of
    :func:`generation`, and ``reuse``)."""
    return default_ledger().generate_and_store_video(
        spot_id, era_id, prompt, generate, local_path=local_path, **options
    )


def claim(
    *,
    worker: str | Worker | None = None,
    lease: float | str | None = None,
    spot: str | None = None,
    era: str | None = None,
    provenance: Provenance | None = None,
    signer: Signer | None = None,
) -> Job | None:
    """:meth:`Ledger.claim` on the default ledger: the next job, or ``None``."""
    return default_ledger().claim(
        worker=worker, lease=lease, spot=spot, era=era, provenance=provenance, signer=signer
    )


def reap(older_than: dt.timedelta | None = None, *, now: dt.datetime | None = None) -> list[VideoMetadata]:
    """:meth:`Ledger.reap` on the default ledger."""
    return default_ledger().reap(older_than, now=now)
