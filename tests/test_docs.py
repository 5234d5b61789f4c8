"""The docs cannot rot: every Python example in README.md and docs/ runs, and the docs name real things."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.timeout(120)


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, match in enumerate(BLOCK.finditer(doc.read_text())):
            found.append((f"{doc.name}#{i + 1}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_python_examples_run(where: str, code: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"VIDEO_LEDGER_DIR": str(tmp_path / "ledger"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, f"{where}:\n{result.stdout}\n{result.stderr}"


def test_docs_exist_for_every_topic() -> None:
    names = {p.name for p in DOCS}
    for required in ("format.md", "lifecycle.md", "guarantees.md", "performance.md", "pipeline-guide.md"):
        assert required in names


def test_readme_starts_with_what_this_is_then_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```")
    assert "ledger" in text[:first_block].lower()
    commands = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert len(commands) >= 2
    assert "video-ledger" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    readme = (ROOT / "README.md").read_text()
    test_command = re.findall(r"^```sh\n(.*?)^```", readme, re.S | re.M)[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


REF = re.compile(
    r"(?:tests/)?(test_[a-z0-9_]+\.py)::([A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*)(…)?|…::([A-Za-z0-9_]+)(…)?"
)


def _named_tests() -> list[tuple[str, str, str, bool]]:
    """(doc, test file, test name, name is a prefix) for every test a doc names: `tests/test_x.py::name`,
    `test_x.py::name`, `test_x.py::Class::name`, or `…::name` (in the file and class named last before it);
    a trailing `…` shortens the name."""
    found: list[tuple[str, str, str, bool]] = []
    scope = ""
    for doc in DOCS:
        last = None
        for match in REF.finditer(doc.read_text()):
            if match.group(1):
                last, scope = match.group(1), match.group(2).rpartition("::")[0]
                found.append((doc.name, last, match.group(2), bool(match.group(3))))
            elif last is not None:  # in the file (and the class) named last before it
                name = f"{scope}::{match.group(4)}" if scope else match.group(4)
                found.append((doc.name, last, name, bool(match.group(5))))
    return found


def test_every_test_the_docs_name_exists() -> None:
    """A claim in the docs names the test that checks it: that test must exist (renamed tests rot docs)."""
    named = _named_tests()
    assert len(named) > 80
    missing = []
    for doc, file, name, prefix in named:
        path = ROOT / "tests" / file
        text = path.read_text() if path.exists() else ""
        *scopes, last = name.split("::")  # a class, then a test in it (or in a class it subclasses)
        wanted = rf"^\s*def {re.escape(last)}" if scopes else rf"^(?:def|class) {re.escape(last)}"
        wanted += "" if prefix else r"\b"
        inherited = "".join(  # a class's tests may come from a base class in a module it imports
            (ROOT / "tests" / f"{module}.py").read_text()
            for module in re.findall(r"^from (?:\.|tests\.)(\w+) import", text, re.M)
        )
        if not (
            all(re.search(rf"^class {re.escape(scope)}\b", text, re.M) for scope in scopes)
            and re.search(wanted, text + inherited if scopes else text, re.M)
        ):
            missing.append(f"{doc}: {file}::{name}{'…' if prefix else ''}")
    assert missing == []


def test_docs_link_only_to_files_in_the_repository() -> None:
    link = re.compile(r"\]\(([^)#\s]+)")
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target in link.findall(text):
            if re.match(r"https?://", target):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name} links to {target}"
        assert "../shared" not in text, f"{doc.name} points outside the repository"
