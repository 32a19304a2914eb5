"""``glmtune tokenize`` end to end: writes the Arrow folder, prints stats, and reuses it on a rerun."""

from __future__ import annotations

import json

from glmtune.cli import main


def test_tokenize_cli(reference, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"第{i}个问题"}, {"role": "assistant", "content": "好的。" * i}],
             "id": i, "meta": {}} for i in range(1, 40)]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "tok"
    argv = ["tokenize", "--model", str(reference / "checkpoints" / "chatglm3-mini"), "--data", str(data),
            "-o", str(out), "--cutoff-len", "32", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "tokenized 39 conversations" in text and "truncated" in text and "token lengths" in text
    assert (out / "glmtune_tokenized.json").is_file()
    meta = json.loads((out / "glmtune_tokenized.json").read_text(encoding="utf-8"))
    assert meta["template"] == "chatglm3" and meta["report"]["examples"] == 39
    assert main(argv) == 0
    assert "reused tokenized data" in capsys.readouterr().out
    assert main([*argv[:-1], "--template", "chatglm2", "--no-progress"]) == 0  # different template: re-encoded
    assert "tokenized 39" in capsys.readouterr().out
