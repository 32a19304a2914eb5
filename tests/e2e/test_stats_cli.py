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


def test_stats_in_tokens_with_real_tokenizer(tmp_path, capsys, reference):
    from glmtune import load_tokenizer

    data = tmp_path / "a.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "你好，世界"}, '
                    '{"role": "assistant", "content": "hello world"}]}\n', encoding="utf-8")
    folder = reference / "checkpoints" / "chatglm2-mini"
    assert cli(["stats", str(data), "--tokenizer", str(folder)]) == 0
    rows = {line.split()[0] + " " + line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    tok = load_tokenizer(folder)
    n_user = len(tok.encode("你好，世界", add_special_tokens=False))
    n_asst = len(tok.encode("hello world", add_special_tokens=False))
    assert float(rows["user tokens"][3]) == n_user  # mean of one row
    assert float(rows["assistant tokens"][3]) == n_asst
