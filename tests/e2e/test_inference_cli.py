"""glmtune chat / predict / eval through the real CLI on the reference mini checkpoints (v1, v2, v3),
with no adapter, a freshly trained LoRA and a freshly trained P-Tuning prefix."""

from __future__ import annotations

import io
import json
import sys

import pytest

from glmtune.cli import main as cli
from glmtune.inference.engine import Engine
from glmtune.inference.settings import GenerationSettings

QUESTIONS = ["1 加 1 等于几？", "中国的首都是哪里？"]
GREEDY = ["--temperature", "0", "--max-new-tokens", "6"]
ROWS = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"{i} 加 {i} 等于几？"},
                                     {"role": "assistant", "content": f"{2 * i}"}]} for i in range(6)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "dev.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=[(m, a) for m in ("chatglm-mini", "chatglm2-mini", "chatglm3-mini")
                                        for a in (None, "lora", "ptuning")], ids=lambda p: f"{p[0]}-{p[1]}")
def setup(request, reference, data, tmp_path_factory):
    name, method = request.param
    model = reference / "checkpoints" / name
    adapter = None
    if method:
        adapter = tmp_path_factory.mktemp("adapters") / f"{name}-{method}"
        extra = ["ptuning.pre_seq_len=4", "learning_rate=1e-1"] if method == "ptuning" else ["learning_rate=5e-2"]
        assert cli(["train", f"model={model}", f"method={method}", f"data={data}", f"output_dir={adapter}",
                    "max_steps=2", "batch_size=2", "cutoff_len=48", "report_to=[none]", "save_steps=100",
                    *extra]) == 0  # fmt: skip
    return model, adapter


def engine_answers(model, adapter, questions):
    engine = Engine.load(model, adapter=adapter, device="cpu")
    settings = GenerationSettings(temperature=0, max_new_tokens=6)
    return engine, [engine.generate([[{"role": "user", "content": q}]], settings)[0].text for q in questions]


def test_chat_piped_answers_each_line(setup, capsys, monkeypatch):
    model, adapter = setup
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(QUESTIONS) + "\n"))
    argv = ["chat", "--model", str(model), *(["--adapter", str(adapter)] if adapter else []), *GREEDY]
    assert cli(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    engine, want = engine_answers(model, adapter, QUESTIONS)
    assert lines == [w.replace("\n", "\\n") for w in want]
    if adapter:  # the adapter is really applied: the base model answers differently somewhere
        base = engine_answers(model, None, QUESTIONS)[1]
        logits_differ = base != want or _prompt_logits_differ(model, adapter)
        assert logits_differ


def _prompt_logits_differ(model, adapter) -> bool:
    import torch

    import glmtune

    tok = glmtune.load_tokenizer(model)
    ids = torch.tensor([glmtune.build_chat_input(tok, [{"role": "user", "content": QUESTIONS[0]}])])
    with torch.no_grad():
        a = glmtune.load_model(model)(input_ids=ids).logits
        b = glmtune.load_model(model, adapter=adapter)(input_ids=ids).logits
    return bool((a - b).abs().max() > 1e-5)


def test_predict_is_resumable_and_eval_scores_it(setup, data, tmp_path, capsys):
    model, adapter = setup
    out = tmp_path / "preds.jsonl"
    base = ["predict", "--model", str(model), *(["--adapter", str(adapter)] if adapter else []), "--data", str(data),
            "-o", str(out), "--batch-size", "2", "--no-progress", *GREEDY]  # fmt: skip
    assert cli([*base, "--max-samples", "4"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    assert rows[1]["messages"] == ROWS[1]["messages"][:1] and rows[1]["reference"] == "2"
    _, want = engine_answers(model, adapter, [r["messages"][0]["content"] for r in ROWS])
    assert [r["prediction"] for r in rows] == want[:4]
    with out.open("a", encoding="utf-8") as fh:  # a kill mid-write leaves a torn line
        fh.write('{"id": "q4", "predic')
    capsys.readouterr()
    assert cli(base) == 0
    assert "6 rows, 4 already in" in capsys.readouterr().err
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(6)] and [r["prediction"] for r in rows] == want
    capsys.readouterr()
    assert cli([*base, "--max-new-tokens", "5"]) == 2  # other settings: their answers are not mixed in
    assert "holds predictions made by" in capsys.readouterr().err
    report = tmp_path / "report.json"
    assert cli(["eval", str(out), "-o", str(report)]) == 0
    scored = json.loads(report.read_text())
    assert scored["rows"] == 6 and {"bleu-4", "rouge-1", "rouge-2", "rouge-l"} <= set(scored)


def test_predict_refuses_a_foreign_output(reference, data, tmp_path, capsys):
    out = tmp_path / "mine.jsonl"
    out.write_text('{"my": "data"}\n')
    assert cli(["predict", "--model", str(reference / "checkpoints" / "chatglm2-mini"), "--data", str(data),
                "-o", str(out), *GREEDY]) == 2  # fmt: skip
    assert "not a glmtune predict output" in capsys.readouterr().err and out.read_text() == '{"my": "data"}\n'


def test_the_training_format_is_used_with_no_flag(reference, data, tmp_path):
    import glmtune
    from glmtune.data.templates import resolve_template

    model = reference / "checkpoints" / "chatglm2-mini"
    out = tmp_path / "alpaca-lora"
    assert cli(["train", f"model={model}", "method=lora", f"data={data}", f"output_dir={out}", "max_steps=1",
                "batch_size=2", "cutoff_len=64", "report_to=[none]", "template=alpaca-text"]) == 0  # fmt: skip
    engine = Engine.load(model, adapter=out, device="cpu")
    assert engine.template.name == "alpaca-text"
    question = [{"role": "user", "content": "hi"}]
    tok = glmtune.load_tokenizer(model)
    assert engine.prompt_ids(question) == glmtune.build_chat_input(tok, question, resolve_template(tok, "alpaca-text"))
    assert Engine.load(model, device="cpu").template.name == "chatglm2"  # the base alone keeps its own
