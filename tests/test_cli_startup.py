"""`glmtune --help`, every subcommand's --help and early data errors never import the ML stack.

Checked through ``sys.modules`` in a fresh interpreter (not by timing): importing torch/transformers/
datasets costs seconds, and a command that only prints help or rejects its input must not pay it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets", "peft", "accelerate", "numpy", "jieba", "nltk", "gradio")

PROBE = """
import json, sys
from glmtune.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}))
"""


def _run(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["", "convert", "stats", "tokenize", "info", "export", "train", "chat",
                                     "predict", "serve", "webui", "eval"])
def test_help_imports_no_ml_stack(command):
    result = _run([command, "--help"] if command else ["--help"])
    assert result == {"code": 0, "heavy": []}


def test_data_errors_import_no_ml_stack(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"instruction": "a",\n "output": }', encoding="utf-8")
    assert _run(["convert", str(bad), "-o", str(tmp_path / "out.jsonl")]) == {"code": 2, "heavy": []}
    missing = tmp_path / "missing.jsonl"
    assert _run(["train", "model=builtin:tiny-chatglm2", f"data={missing}"]) == {"code": 2, "heavy": []}
    assert not (tmp_path / "out.jsonl").exists()
