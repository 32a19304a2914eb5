"""End to end: convert the examples, then ``glmtune stats`` with a plot."""

from __future__ import annotations

from pathlib import Path

from glmtune.cli import main as cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_stats_table_and_plot(tmp_path, capsys):
    data = tmp_path / "chat.jsonl"
    assert cli(["convert", str(EXAMPLES / "multiturn_sharegpt.json"), "-o", str(data)]) == 0
    capsys.readouterr()
    png = tmp_path / "plots" / "lengths.png"
    assert cli(["stats", str(data), "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{data}: 50 conversations"
    assert out[1].split() == ["count", "mean", "std", "min", "25%", "50%", "75%", "90%", "max"]
    assert [line.split()[0] for line in out[2:5]] == ["turns", "user", "assistant"]
    assert out[2].split()[1] == "50"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_rejects_unconverted_data(tmp_path, capsys):
    assert cli(["stats", str(EXAMPLES / "explain.json")]) == 2
    assert "explain.json:" in capsys.readouterr().err
