"""The committed example data: reproducible, small, and converting without a single skip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from glmtune.data.convert import convert_files

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
FILES = {
    "alpaca_bilingual.json": ("alpaca", 200),
    "multiturn_sharegpt.json": ("sharegpt", 50),
    "explain.json": ("explain", 50),
}


def test_generator_reproduces_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in module.write_all(tmp_path):
        assert path.read_bytes() == (EXAMPLES / path.name).read_bytes(), (
            "rerun examples/data/make_examples.py"
        )
        assert path.stat().st_size < 200_000


def test_examples_convert_cleanly(tmp_path):
    report = convert_files(
        [EXAMPLES / name for name in FILES], tmp_path / "all.jsonl", val_size=0.1, log=lambda _m: None
    )
    assert [(f.path.name, f.format, f.written) for f in report.inputs] == [(n, *v) for n, v in FILES.items()]
    assert not report.skipped and report.outputs == {
        tmp_path / "all.jsonl": 270,
        tmp_path / "all.dev.jsonl": 30,
    }
