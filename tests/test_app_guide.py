"""docs/app-guide.md: its JavaScript loader and watcher run under node against a real ledger being written.

The JavaScript is taken from the guide itself (its first ```js block), so the page cannot drift from what is
tested. Without node the tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ledger import Ledger

from .conftest import PYTHON, ROOT, entry, js_from_doc, need_tool

GUIDE = ROOT / "docs" / "app-guide.md"
NODE = shutil.which("node")

# Prints one JSON line per view the watcher delivers, and one per error it reports; ends on SIGTERM.
HARNESS = """
import { watchVideos, loadVideos } from "./videos.mjs";
const [mode, file] = process.argv.slice(2);
if (mode === "load") {
  const { entries } = await loadVideos(file);
  console.log(JSON.stringify(entries));
} else {
  const stop = watchVideos(
    file,
    (entries) => console.log(JSON.stringify({ view: entries })),
    (err) => console.log(JSON.stringify({ error: String(err) })),
  );
  console.log(JSON.stringify({ watching: file }));
  process.on("SIGTERM", () => { stop(); process.exit(0); });
}
"""


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    need_tool("node", "the app guide's tests")
    return js_from_doc(GUIDE, tmp_path / "js", "videos.mjs", HARNESS)


def _load_with_node(js: Path, snapshot: Path) -> object:
    assert NODE is not None
    out = subprocess.run(
        [NODE, "harness.mjs", "load", str(snapshot)], cwd=js, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Watcher:
    """The guide's watchVideos running under node; its lines arrive on a queue, so waits can time out."""

    def __init__(self, js: Path, snapshot: Path) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, "harness.mjs", "watch", str(snapshot)], cwd=js, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[dict[str, object] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert "watching" in self._next(time.monotonic() + 20)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _next(self, deadline: float) -> dict[str, object]:
        try:
            message = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the watcher said nothing in time") from None
        assert message is not None, "the watcher ended"
        assert "error" not in message, message
        return message

    def wait_for(self, want: object, timeout: float = 10.0) -> list[object]:
        """Every view delivered until one equal to ``want``."""
        views: list[object] = []
        deadline = time.monotonic() + timeout
        while not views or views[-1] != want:
            views.append(self._next(deadline)["view"])
        return views

    def stop(self) -> list[dict[str, object]]:
        """End it; what it said and nobody read."""
        self.proc.terminate()
        self.proc.wait(timeout=30)
        rest: list[dict[str, object]] = []
        while (message := self.lines.get(timeout=10)) is not None:
            rest.append(message)
        return rest


def test_a_new_ledger_directory_already_has_an_empty_array(tmp_path: Path, node_dir: Path) -> None:
    subprocess.run([PYTHON, "-m", "ledger", "--dir", str(tmp_path / "d"), "init"], check=True, timeout=60)
    assert _load_with_node(node_dir, tmp_path / "d" / "generated-videos.json") == []


def test_the_loader_reads_every_entry_as_the_ledger_has_it(ledger: Ledger, node_dir: Path) -> None:
    ledger.set_video_metadata(entry("acropolis", "founding", status="pending"))
    ledger.set_video_metadata(entry("colosseum", "decline"))
    ledger.set_video_metadata(entry("colosseum", "decline", status="ready"))
    ledger.set_video_metadata(entry("petra", "nabataean"))
    ledger.mark_video_failed("petra", "nabataean", "out of memory")
    snapshot = ledger.snapshot_path
    loaded = _load_with_node(node_dir, snapshot)
    assert loaded == json.loads(snapshot.read_bytes())
    assert isinstance(loaded, list)
    by_key = {(e["spotId"], e["eraId"]): e for e in loaded}
    assert by_key["colosseum", "decline"]["localPath"] == "videos/colosseum-decline.mp4"
    assert "error" not in by_key["colosseum", "decline"]  # absent, never null
    assert by_key["petra", "nabataean"]["error"] == "out of memory"
    assert all(v is not None for e in loaded for v in e.values())


WRITER = """
import sys, time
from ledger import Ledger, VideoMetadata
ledger = Ledger(sys.argv[1])
for i in range(int(sys.argv[3])):
    spot, era = f"{sys.argv[2]}-{i % 7}", f"era-{i % 3}"
    change = VideoMetadata(spot_id=spot, era_id=era, prompt=f"take {i}", status="generating")
    ledger.set_video_metadata(change)
    time.sleep(float(sys.argv[4]))
"""


def test_the_watcher_follows_a_ledger_being_written(ledger_dir: Path, node_dir: Path) -> None:
    Ledger(ledger_dir).close()
    snapshot = ledger_dir / "generated-videos.json"
    watcher = Watcher(node_dir, snapshot)
    try:
        writers = [
            subprocess.Popen([PYTHON, "-c", WRITER, str(ledger_dir), name, "20", "0.005"], cwd=ROOT)
            for name in ("north", "south")
        ]
        for w in writers:
            assert w.wait(timeout=120) == 0
        final = json.loads(snapshot.read_bytes())
        assert len(final) == 40  # 20 entries per writer, 40 changes in all
        views = watcher.wait_for(final)
    finally:
        rest = watcher.stop()
    assert not [m for m in rest if "error" in m]
    assert views[-1] == final
    assert all(isinstance(v, list) for v in views)


def test_a_watch_on_the_directory_sees_every_rewrite(ledger_dir: Path, node_dir: Path) -> None:
    Ledger(ledger_dir).close()
    snapshot = ledger_dir / "generated-videos.json"
    watcher = Watcher(node_dir, snapshot)
    try:
        assert watcher.wait_for([]) == [[]]
        with Ledger(ledger_dir) as ledger:
            for i in range(12):
                ledger.set_video_metadata(entry(f"spot-{i}", "era"))
                views = watcher.wait_for(json.loads(snapshot.read_bytes()))
                assert len(views) == 1  # this rewrite, and no other, was seen
    finally:
        assert not [m for m in watcher.stop() if "error" in m]
