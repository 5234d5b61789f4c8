"""The layers stay clean: event types and pure folds <- stores <- projector, watcher <- store API <- CLI;
nothing imports the CLI, and no module imports one listed after it in the README's Layout."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

# module -> the project modules it may import
BASE = {"ledger.errors"}
ALLOWED = {
    "ledger.errors": set(),
    "ledger.events": BASE,
    "ledger.schema": {"ledger.events"},
    "ledger.fileops": BASE,
    "ledger.layout": set(),
    "ledger.lifecycle": BASE | {"ledger.events"},
    "ledger.provenance": BASE | {"ledger", "ledger.events", "ledger.lifecycle"},
    "ledger.reuse": BASE
    | {
        "ledger",
        "ledger.events",
        "ledger.lifecycle",
        "ledger.provenance",
        "ledger.requests",
        "projections",
        "projections.provenance",
    },
    "ledger.mp4": BASE,
    "ledger.places": BASE,
    "ledger.retry": BASE | {"ledger.events"},
    "ledger.queue": BASE | {"ledger.events", "ledger.retry"},
    "ledger.heartbeat": BASE,
    "ledger.merkle": BASE,
    "ledger.note": BASE,
    "ledger.backend": BASE | {"ledger.events"},
    "ledger.memory": BASE | {"ledger.events", "ledger.backend"},
    "ledger.logfile": BASE | {"ledger.events", "ledger.fileops", "ledger.backend"},
    "ledger.syncstate": BASE | {"ledger.fileops", "ledger.logfile"},
    "ledger.scan": BASE | {"ledger.events", "ledger.backend", "ledger.logfile", "ledger.syncstate"},
    "ledger.recovery": BASE
    | {"ledger.backend", "ledger.fileops", "ledger.logfile", "ledger.scan", "ledger.syncstate"},
    "ledger.groupcommit": BASE
    | {
        "ledger.events",
        "ledger.backend",
        "ledger.fileops",
        "ledger.logfile",
        "ledger.recovery",
        "ledger.syncstate",
    },
    "ledger.log": BASE
    | {
        "ledger.events",
        "ledger.fileops",
        "ledger.backend",
        "ledger.logfile",
        "ledger.syncstate",
        "ledger.scan",
        "ledger.recovery",
        "ledger.groupcommit",
    },
    "ledger.postgres": BASE | {"ledger.events", "ledger.backend"},
    # which store a spec names (psycopg and ledger.postgres imported only for a URL), and copying between two
    "ledger.stores": BASE
    | {"ledger.backend", "ledger.fileops", "ledger.layout", "ledger.log", "ledger.postgres"},
    "ledger.copy": BASE | {"ledger.backend", "ledger.events", "ledger.stores"},
    # C2PA disclosure (c2pa-python imported only when used); its missing-extra error is the stores' one
    "ledger.disclosure": BASE | {"ledger.events", "ledger.stores"},
    "projections": set(),
    "projections.entries": {"ledger.events"},
    "projections.files": {"ledger.events"},
    "projections.timeline": {"ledger.events"},
    "projections.provenance": {"ledger.events"},
    "projections.stats": {"ledger.events", "projections", "projections.provenance", "projections.timeline"},
    "projections.history": {"ledger.events"},
    "ledger.model": BASE | {"ledger.events", "ledger.backend", "projections", "projections.entries"},
    "ledger.tree": BASE
    | {"ledger.merkle", "ledger.backend", "ledger.events", "ledger.fileops", "ledger.layout"},
    # the edge where the entries view meets the disk, and the live side: ledger modules over the stores
    "ledger.projector": BASE
    | {
        "ledger.events",
        "ledger.backend",
        "ledger.fileops",
        "ledger.model",
        "ledger.tree",
        "projections",
        "projections.entries",
    },
    "ledger.proofs": BASE
    | {
        "ledger.events",
        "ledger.fileops",
        "ledger.layout",
        "ledger.merkle",
        "ledger.note",
        "ledger.projector",
        "ledger.tree",
        "projections",
        "projections.entries",
    },
    "ledger.watch": BASE
    | {
        "ledger.events",
        "ledger.fileops",
        "ledger.backend",
        "ledger.layout",
        "ledger",
        "ledger.log",
        "ledger.model",
        "ledger.projector",
        "ledger.stores",
    },
    # the rooms of the store API: pure planning, the video files, imports, the write engine, the audit
    "ledger.requests": BASE | {"ledger", "ledger.events", "ledger.lifecycle"},
    "ledger.media": BASE
    | {
        "ledger",
        "ledger.disclosure",
        "ledger.events",
        "ledger.fileops",
        "projections",
        "projections.entries",
        "projections.files",
    },
    "ledger.pipeline": BASE
    | {
        "ledger.events",
        "ledger.heartbeat",
        "ledger.media",
        "ledger.provenance",
        "projections",
        "projections.provenance",
    },
    "ledger.importing": BASE | {"ledger", "ledger.events", "ledger.fileops", "ledger.lifecycle"},
    "ledger.writer": BASE
    | {
        "ledger",
        "ledger.backend",
        "ledger.events",
        "ledger.fileops",
        "ledger.projector",
        "ledger.requests",
        "ledger.stores",
        "projections",
        "projections.entries",
        "projections.stats",
    },
    "ledger.audit": BASE
    | {
        "ledger",
        "ledger.backend",
        "ledger.events",
        "ledger.lifecycle",
        "ledger.projector",
        "projections",
        "projections.entries",
        "projections.stats",
    },
    # the work loop: claims, leases, requeue and the policy, planned here and committed by the writer
    "ledger.claiming": BASE
    | {
        "ledger",
        "ledger.backend",
        "ledger.events",
        "ledger.fileops",
        "ledger.layout",
        "ledger.lifecycle",
        "ledger.pipeline",
        "ledger.provenance",
        "ledger.queue",
        "ledger.requests",
        "ledger.retry",
        "ledger.writer",
        "projections",
        "projections.stats",
    },
    # the façade: wiring and one call into a room per method; no backend, file operations or log
    "ledger.provenance_api": BASE
    | {
        "ledger",
        "ledger.events",
        "ledger.media",
        "ledger.projector",
        "ledger.provenance",
        "ledger.requests",
        "ledger.reuse",
        "ledger.stores",
        "ledger.writer",
        "projections",
        "projections.provenance",
        "projections.stats",
    },
    "ledger.store": BASE
    | {
        "ledger",
        "ledger.audit",
        "ledger.claiming",
        "ledger.queue",
        "ledger.retry",
        "ledger.events",
        "ledger.importing",
        "ledger.layout",
        "ledger.media",
        "ledger.pipeline",
        "ledger.projector",
        "ledger.proofs",
        "ledger.requests",
        "ledger.stores",
        "ledger.watch",
        "ledger.writer",
        "projections",
        "projections.entries",
        "projections.history",
        "projections.stats",
        "projections.timeline",
        "projections.provenance",
        "ledger.provenance",
        "ledger.provenance_api",
    },
    "ledger.default": BASE
    | {
        "ledger",
        "ledger.audit",
        "ledger.events",
        "ledger.layout",
        "ledger.pipeline",
        "ledger.store",
        "ledger.stores",
    },
    # on top: the demo and the CLI go through the store API only (no log, file operations or projector)
    "ledger.demo": BASE
    | {
        "ledger.disclosure",
        "ledger.events",
        "ledger.mp4",
        "ledger.pipeline",
        "ledger.places",
        "ledger.provenance",
        "ledger.retry",
        "ledger.store",
    },
    # the health view: the checkpoint, the snapshot's statuses, the log after the checkpoint
    "ledger.health": BASE
    | {
        "ledger.backend",
        "ledger.events",
        "ledger.fileops",
        "ledger.layout",
        "ledger.log",
        "ledger.projector",
        "ledger.queue",
        "ledger.stores",
    },
    "projections.metrics": {"ledger.events"},
    # the metrics exporter: the health gauges, the counters fold, a server or a file
    "ledger.metrics": BASE
    | {"ledger", "ledger.backend", "ledger.fileops", "ledger.health", "projections", "projections.metrics"},
    # the report page: library reads, then one atomic write of the page
    "ledger.report": BASE
    | {"ledger.events", "ledger.fileops", "ledger.store", "projections", "projections.timeline"},
    "ledger.cliparse": BASE | {"ledger.layout", "ledger.retry", "ledger.stores"},
    "ledger.output": BASE
    | {
        "ledger.health",
        "ledger",
        "ledger.copy",
        "ledger.demo",
        "ledger.report",
        "ledger.events",
        "ledger.layout",
        "ledger.pipeline",
        "ledger.queue",
        "ledger.requests",
        "ledger.retry",
        "ledger.store",
        "ledger.stores",
        "projections",
        "projections.provenance",
        "projections.stats",
        "ledger.proofs",
    },
    "ledger.cli": BASE
    | {
        "ledger.metrics",
        "ledger.health",
        "ledger",
        "ledger.cliparse",
        "ledger.copy",
        "ledger.demo",
        "ledger.events",
        "ledger.importing",
        "ledger.places",
        "ledger.requests",
        "ledger.layout",
        "ledger.output",
        "ledger.report",
        "ledger.schema",
        "ledger.store",
        "ledger.stores",
        "ledger.note",
        "ledger.proofs",
        "ledger.provenance",
    },
}


BACKEND_SIDE = {"ledger.backend", "ledger.fileops", "ledger.log", "ledger.memory", "ledger.postgres"}

# every room is held to its size: no class over 500 lines, no function over 60, Ledger at most 450
SIZED = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("ledger/*.py"), *ROOT.glob("projections/*.py")])


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in ("ledger", "projections")}


SOURCES = sorted([*ROOT.glob("ledger/*.py"), *ROOT.glob("projections/*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_follow_the_layers(path: Path) -> None:
    name = _module_name(path)
    imported = {
        m for m in _imports(path) if m in {_module_name(p) for p in SOURCES} | {"ledger", "projections"}
    }
    if name not in ALLOWED:  # the CLI and the package faces sit on top
        on_top = ("ledger", "ledger.__main__")  # the package's face and the three-line entry point
        assert name in on_top, f"{name} has no place in the layers"
    else:
        assert imported <= ALLOWED[name], f"{name} imports {sorted(imported - ALLOWED[name])}"
    if name not in ("ledger.__main__",):
        assert "ledger.cli" not in imported, "nothing imports the CLI"


def test_the_facade_imports_no_backend_file_operations_or_log() -> None:
    imported = _imports(ROOT / "ledger" / "store.py")
    assert not imported & BACKEND_SIDE, sorted(imported & BACKEND_SIDE)


@pytest.mark.parametrize("name", SIZED)
def test_each_room_is_small(name: str) -> None:
    tree = ast.parse((ROOT / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            size = node.end_lineno - node.lineno + 1
            limit = 450 if node.name == "Ledger" else 500 if isinstance(node, ast.ClassDef) else 60
            assert size <= limit, f"{name}: {node.name} is {size} lines, more than {limit}"


@pytest.mark.parametrize(
    "first", ["ledger.projector", "projections.entries", "ledger", "ledger.log", "ledger.cli"]
)
def test_every_module_imports_first_in_a_fresh_interpreter(first: str) -> None:
    code = f"import {first}; import ledger, ledger.projector; print(ledger.Ledger.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_main_module_is_three_lines() -> None:
    assert len((ROOT / "ledger" / "__main__.py").read_text().strip().splitlines()) == 3


def test_the_package_exports_only_what_a_user_needs() -> None:
    import ledger

    assert set(ledger.__all__) == {n for n in dir(ledger) if not n.startswith("_")} - {
        "backend",
        "claiming",
        "cli",
        "cliparse",
        "copy",
        "disclosure",
        "errors",
        "events",
        "fileops",
        "groupcommit",
        "health",
        "heartbeat",
        "layout",
        "lifecycle",
        "audit",
        "default",
        "demo",
        "places",
        "importing",
        "log",
        "logfile",
        "memory",
        "metrics",
        "model",
        "media",
        "mp4",
        "merkle",
        "note",
        "output",
        "proofs",
        "tree",
        "pipeline",
        "postgres",
        "projector",
        "provenance",
        "provenance_api",
        "queue",
        "recovery",
        "report",
        "requests",
        "retry",
        "reuse",
        "scan",
        "schema",
        "store",
        "stores",
        "syncstate",
        "watch",
        "writer",
    }
    assert (ROOT / "ledger" / "py.typed").exists()


def test_the_readme_layout_names_every_module() -> None:
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    for path in SOURCES:
        if path.name != "__init__.py":
            name = path.relative_to(ROOT).as_posix()
            assert f"`{name}`" in layout, f"README's Layout does not name {name}"


def test_every_module_imports_only_modules_the_readme_lists_before_it() -> None:
    """The README's Layout is the layering: bottom to top, so no two modules import each other, and the
    pure folds in ``projections/`` import nothing of the ledger but its event types."""
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    order: dict[str, int] = {}
    for path in SOURCES:
        if path.name != "__init__.py":
            order[_module_name(path)] = layout.index(f"`{path.relative_to(ROOT).as_posix()}`")
    for path in SOURCES:
        name = _module_name(path)
        if name not in order:
            continue
        for imported in _imports(path) & order.keys():
            assert order[imported] < order[name], f"{name} imports {imported}, listed after it in README"
        if name.startswith("projections."):
            assert {".".join(m.split(".")[:2]) for m in _imports(path) if m.startswith("ledger")} <= {
                "ledger.events",
                "ledger.lifecycle",
            }
