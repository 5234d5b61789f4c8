"""A short command starts fast: ``import ledger`` imports nothing until a name is asked for, a command
imports only the rooms it uses, and the parser holds only the command given (parsing the same)."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ledger
from ledger.cli import commands
from ledger.cliparse import BadUsage, parse

from .conftest import ROOT

# what a short command must not pay for: the PostgreSQL driver, the proofs and signatures, the metrics
# server, the report page, C2PA (and the disclosure module), the demo's worker processes, the watcher's
# inotify, the package metadata (only --version reads it), the demo, random (temp names come from
# os.urandom), sockets (the host name comes from uname), difflib (only a usage error suggests), and
# nothing a test or a benchmark uses
NOT_NEEDED = (
    "ledger.demo",
    "random",
    "socket",
    "difflib",
    "ledger.postgres",
    "psycopg",
    "ledger.proofs",
    "ledger.note",
    "ledger.metrics",
    "http.server",
    "ledger.report",
    "ledger.schema",
    "ledger.copy",
    "c2pa",
    "cryptography",
    "ledger.disclosure",
    "multiprocessing",
    "watchfiles",
    "importlib.metadata",
    "hypothesis",
    "pytest",
)

_RUN = """
import json, sys
from ledger.cli import main
code = main(sys.argv[1:])
sys.stderr.write("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _run(tmp_path: Path, *argv: str) -> tuple[int, str, set[str]]:
    """The CLI run with ``argv`` in a fresh interpreter: exit code, output, the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", _RUN, "--dir", str(tmp_path / "ledger"), *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    err, _, found = result.stderr.rpartition("\n")
    assert result.returncode == 0, result.stderr
    report = json.loads(found)
    return report["code"], result.stdout + err, set(report["modules"])


def _imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(f"{n}."))


def test_get_set_and_claim_import_only_what_they_need(tmp_path: Path) -> None:
    entry = ("colosseum", "rome-80ad")
    code, out, modules = _run(tmp_path, "set", *entry, "--status", "pending", "--prompt", "p")
    assert code == 0 and "recorded event 1" in out, out
    assert {"ledger.store", "ledger.output", "msgspec"} <= modules  # it did its work
    assert not _imported(modules, NOT_NEEDED), _imported(modules, NOT_NEEDED)
    code, out, modules = _run(tmp_path, "get", *entry, "--json")
    assert code == 0 and json.loads(out)["status"] == "pending", out
    assert not _imported(modules, NOT_NEEDED), _imported(modules, NOT_NEEDED)
    code, out, modules = _run(tmp_path, "claim", "--worker", "gpu-1", "--json")
    assert code == 0 and "colosseum" in out and "rome-80ad" in out, out  # the job it claimed
    assert not _imported(modules, NOT_NEEDED), _imported(modules, NOT_NEEDED)


def test_a_command_that_needs_a_room_imports_it(tmp_path: Path) -> None:
    _run(tmp_path, "init")
    code, out, modules = _run(tmp_path, "metrics")
    assert code == 0 and "ledger_" in out and "ledger.metrics" in modules
    code, out, modules = _run(tmp_path, "keygen", "example.com/log", "--out", str(tmp_path / "k"))
    assert code == 0 and out.startswith("example.com/log+") and "ledger.proofs" in modules


def test_importing_the_package_imports_no_room() -> None:
    code = "import sys, ledger; print(sorted(m for m in sys.modules if m.startswith(('ledger', 'proj'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "['ledger']", result.stdout + result.stderr


def _type_checked_names() -> dict[str, str]:
    """The package's imports under ``TYPE_CHECKING``, name -> module, as the type checker reads them."""
    tree = ast.parse((ROOT / "ledger" / "__init__.py").read_text())
    guarded = [n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    assert len(guarded) >= 1
    return {
        alias.name: node.module
        for node in guarded[0].body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def test_each_public_name_comes_lazily_from_the_module_the_type_checker_reads() -> None:
    typed = _type_checked_names()
    assert set(typed) == set(ledger.__all__)
    assert typed == ledger._WHERE  # type: ignore[attr-defined]
    for name, module in typed.items():
        assert getattr(ledger, name) is getattr(sys.modules.get(module) or __import__(module), name)
    assert set(ledger.__all__) <= set(dir(ledger))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        ledger.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
    namespace: dict[str, object] = {}
    exec("from ledger import *", namespace)
    assert namespace["Ledger"] is ledger.Ledger


ARGVS = [
    ["get", "s", "e"],
    ["--dir", "d", "get", "s", "e", "--json"],
    ["--dir", "list", "get", "s", "e"],  # 'list' is --dir's value; the command is get
    ["--di=d", "--no-project", "set", "s", "e", "--status", "ready", "--local-path", "v.mp4"],
    ["claim", "--worker", "w", "--lease", "10m"],
    ["reap", "--older-than", "-1h"],
    ["get", "s"],
    ["get", "s", "e", "--status", "x"],
    ["--json", "get", "s", "e"],  # get's option before the command
    ["get", "s", "e", "--version"],  # video-ledger's option after it
    ["gett", "s", "e"],
    ["--help", "get"],
    ["--he", "get"],
    ["--version", "get"],
    ["get", "--help"],
    ["list", "--status", "ready", "--csv", "--tsv"],
    ["history", "--since-seq", "-3"],
    ["--dir", "--", "get"],
    [],
]


def _outcome(argv: list[str], *, narrow: bool) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    parser = commands.parser(out, err, argv=argv) if narrow else commands.parser(out, err)
    try:
        found: object = sorted(vars(parse(parser, argv)).items(), key=lambda kv: kv[0])
    except BadUsage as exc:
        found = ("usage", str(exc))
    except SystemExit as exc:
        found = ("exit", exc.code)
    return found, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_parser_of_the_command_given_parses_as_the_parser_of_every_command(argv: list[str]) -> None:
    assert _outcome(argv, narrow=True) == _outcome(argv, narrow=False)


def test_the_parser_of_the_command_given_holds_only_that_command() -> None:
    parser = commands.parser(argv=["--dir", "d", "get", "s", "e"])
    assert list(ledger.cliparse.subparsers(parser)) == ["get"]  # type: ignore[attr-defined]
    assert len(ledger.cliparse.subparsers(commands.parser(argv=["--help", "get"]))) > 20  # type: ignore[attr-defined]
