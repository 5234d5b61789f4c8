"""Shell completion: the bash and zsh scripts ``video-ledger completion`` prints, run by the real shells."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ledger.cli import main

from .conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def _complete(script: str, *words: str) -> list[str]:
    line = " ".join(words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _video_ledger; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_completes_commands_options_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o default -F _video_ledger video-ledger" in script
    assert _complete(script, "video-ledger", "hi") == ["history"]
    assert sorted(_complete(script, "video-ledger", "--dir", "x", "wa")) == ["wait", "watch"]
    assert _complete(script, "video-ledger", "set", "s", "e", "--sta") == ["--status"]
    assert _complete(script, "video-ledger", "set", "s", "e", "--st") == ["--store", "--status"]
    assert _complete(script, "video-ledger", "list", "--status", "") == [
        "pending",
        "generating",
        "ready",
        "failed",
    ]
    assert _complete(script, "video-ledger", "schema", "") == ["event", "snapshot"]
    assert "--older-than" in _complete(script, "video-ledger", "reap", "--")


def test_zsh_completion_is_bash_s_through_bashcompinit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert "autoload -U +X bashcompinit && bashcompinit" in script
    assert "_video_ledger()" in script
    if shutil.which("zsh"):
        result = subprocess.run(["zsh", "-fc", script], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_the_readme_documents_completion() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "video-ledger completion bash" in readme
    assert "video-ledger completion zsh" in readme
