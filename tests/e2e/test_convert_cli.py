"""End to end: the convert CLI over every file of the shared public data, and as a real subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from glmtune.cli import main as cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def _totals(stdout: str) -> tuple[int, int, int]:
    read, written, skipped = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)$", stdout, re.M).groups()
    return int(read), int(written), int(skipped)


def test_every_shared_file_converts_and_counts_add_up(shared_data, tmp_path, capsys):
    files = sorted(p for p in shared_data.iterdir() if p.suffix in (".json", ".jsonl", ".csv", ".parquet"))
    assert files, f"no data files in {shared_data}"
    for path in files:
        out = tmp_path / f"{path.stem}.jsonl"
        lenient = ["--lenient"] if path.name == "explain_raw.json" else []
        assert cli(["convert", str(path), "-o", str(out), "--on-error", "skip", *lenient]) == 0, path
        stdout = capsys.readouterr().out
        read, written, skipped = _totals(stdout)
        skipped_by_reason = sum(int(n) for n in re.findall(r"^  skipped (\d+) row\(s\): ", stdout, re.M))
        assert read > 0 and written + skipped == read and skipped_by_reason == skipped, stdout
        assert len(out.read_text(encoding="utf-8").splitlines()) == written


def test_explain_raw_needs_lenient(shared_data, tmp_path, capsys):
    out = tmp_path / "explain.jsonl"
    assert cli(["convert", str(shared_data / "explain_raw.json"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"glmtune convert: error: \S*explain_raw\.json:50:\d+: malformed JSON: .*--lenient.*\n", err
    )
    assert not out.exists()
    assert cli(["convert", str(shared_data / "explain_raw.json"), "-o", str(out), "--lenient"]) == 0
    captured = capsys.readouterr()
    assert "explain_raw.json:49: removed trailing comma (--lenient)" in captured.err
    assert "format: explain (auto-detected from keys instruction, input, explain, output)" in captured.out
    assert " CONCLUSION: " in out.read_text(encoding="utf-8")


def test_alpaca_zh_reports_its_empty_outputs(shared_data, tmp_path, capsys):
    path = shared_data / "alpaca_zh_part0.json"
    assert cli(["convert", str(path), "-o", str(tmp_path / "zh.jsonl")]) == 2
    assert re.search(r"alpaca_zh_part0\.json:\d+: row \d+: field 'output': empty", capsys.readouterr().err)


def test_python_m_glmtune_convert_subprocess(tmp_path):
    out = tmp_path / "ex.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "glmtune",
        "convert",
        str(EXAMPLES / "explain.json"),
        "-o",
        str(out),
        "--val-size",
        "5",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _totals(proc.stdout) == (50, 50, 0)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 45
    assert len((tmp_path / "ex.dev.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    bad = subprocess.run(
        [*cmd[:4], str(tmp_path / "missing.json"), "-o", str(out)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.strip().endswith("missing.json: no such file")
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["alpaca_bilingual.json", "multiturn_sharegpt.json"])
def test_examples_via_cli(tmp_path, capsys, name):
    assert cli(["convert", str(EXAMPLES / name), "-o", str(tmp_path / "o.jsonl")]) == 0
    read, written, skipped = _totals(capsys.readouterr().out)
    assert read == written and skipped == 0


def test_jsonl_malformed_line_is_skipped_and_counted_with_on_error_skip(tmp_path, capsys):
    src = tmp_path / "rows.jsonl"
    good = '{"instruction": "hi", "input": "", "output": "hello"}'
    src.write_text("\n".join([good, '{"instruction": "broken", "output": ', good, "", good]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli(["convert", str(src), "-o", str(out)]) == 2  # the default stays an error naming FILE:LINE:COL
    assert f"{src}:2:" in capsys.readouterr().err
    assert not out.exists()
    assert cli(["convert", str(src), "-o", str(out), "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert f"{src}:2:" in captured.err and "malformed JSON" in captured.err
    assert _totals(captured.out) == (4, 3, 1)
    assert re.search(r"^  skipped 1 row\(s\): malformed JSON line$", captured.out, re.M), captured.out
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_malformed_json_array_still_stops_with_on_error_skip(tmp_path, capsys):
    src = tmp_path / "rows.json"
    src.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]\n', encoding="utf-8")
    assert cli(["convert", str(src), "-o", str(tmp_path / "o.jsonl"), "--on-error", "skip"]) == 2
    assert f"{src}:2:" in capsys.readouterr().err
