"""Permission denied, in the library and on the command line: a typed error, one line, exit 1, nothing
changed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import Ledger

from .conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def _as_another_user(directory: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """A runner of Python (``run("-m", "ledger", ...)``) for which ``directory`` is unreachable: as root, a
    system Python of this version as user 65534 with the directory mode 700; otherwise ourselves with the
    directory mode 000."""

    def python(executable: str, **kwargs: object) -> Callable[..., subprocess.CompletedProcess[str]]:
        return lambda *args: subprocess.run(
            [executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
            **kwargs,  # type: ignore[call-overload]
        )  # fmt: skip

    if os.geteuid() != 0:
        directory.chmod(0o000)
        return python(sys.executable)
    directory.chmod(0o700)
    system = Path("/usr/bin/python3")
    version = subprocess.run(
        [str(system), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip() if system.exists() else ""  # fmt: skip
    if version != str(sys.version_info[:2]):
        pytest.skip("running as root with no system Python of this version to run as another user")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", "PATH": "/usr/bin:/bin"}
    return python(str(system), user=65534, env=env)


@pytest.mark.parametrize(
    "argv",
    [
        ["set", "s", "e", "--status", "generating", "--prompt", "p"],
        ["rebuild"],
        ["reap", "--older-than", "1s"],
        ["import", str(ROOT / "data" / "generated-videos.json")],  # readable and valid: the directory is not
        ["demo", "--spots", "1", "--eras", "1"],
        ["wait", "--seq", "1", "--timeout", "1"],
        ["list"],
    ],
    ids=lambda argv: argv[0],
)
def test_permission_denied_is_one_line_exit_1(tmp_path: Path, argv: list[str]) -> None:
    locked = tmp_path / "locked"
    Ledger(locked / "ledger").close()
    run = _as_another_user(locked)
    try:
        for directory in (locked / "ledger", locked / "new"):
            result = run("-m", "ledger", "--dir", str(directory), *argv)
            assert result.returncode == 1, result.stderr
            assert result.stderr.startswith("video-ledger: error: cannot "), result.stderr
            said = "" if argv[0] in ("wait", "list") else "; nothing was recorded"  # a write's open refused
            assert result.stderr.endswith(f": Permission denied{said}\n"), result.stderr
            assert len(result.stderr.splitlines()) == 1
    finally:
        locked.chmod(0o755)


def test_permission_denied_is_a_ledger_io_error_in_the_library(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    Ledger(locked / "ledger").close()
    run = _as_another_user(locked)
    where = str(locked / "ledger")
    code = (
        "from ledger import Ledger, LedgerIOError\n"
        "from ledger.watch import wait_for_seq\n"
        f"for call in (lambda: Ledger({where!r}), lambda: wait_for_seq({where!r}, 1, timeout=1)):\n"
        "    try:\n        call()\n"
        "    except LedgerIOError as exc:\n        print(type(exc).__name__, exc.errno)\n"
    )
    try:
        result = run("-c", code)
    finally:
        locked.chmod(0o755)
    assert result.stdout == "LedgerIOError 13\nLedgerIOError 13\n", result.stderr
