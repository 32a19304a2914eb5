from __future__ import annotations

import subprocess
import sys

import pytest

from glmtune.cli import main
from glmtune.errors import GlmtuneError
from glmtune.registry import Registry


def test_registry_errors_list_names():
    reg: Registry[int] = Registry("widget")
    reg.register("a", "alias")(1)
    assert reg.get("alias") == 1 and "a" in reg
    with pytest.raises(GlmtuneError, match="unknown widget 'b'; choose one of: a, alias"):
        reg.get("b")
    with pytest.raises(ValueError):
        reg.register("a")(2)


def test_cli_unknown_command(capsys):
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_python_m_glmtune_version():
    out = subprocess.run([sys.executable, "-m", "glmtune", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("glmtune ")
