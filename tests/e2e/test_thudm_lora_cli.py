"""``glmtune train adapter=THUDM_LORA`` continues a LoRA trained on THUDM names (ChatGLM2 mini checkpoint)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import glmtune  # noqa: E402
from glmtune.cli import main as cli  # noqa: E402
from glmtune.models.checkpoint_io import checkpoint_shapes  # noqa: E402

ROWS = [{"messages": [{"role": "user", "content": f"{i} plus {i}?"}, {"role": "assistant", "content": f"{2 * i}"}]}
        for i in range(6)]
MODULES = ("self_attention.query_key_value", "self_attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")


def test_train_continues_a_thudm_named_lora(reference, tmp_path):
    base = reference / "checkpoints" / "chatglm2-mini"
    shapes = checkpoint_shapes(base)
    gen = torch.Generator().manual_seed(0)
    state, start = {}, {}
    for layer in (0, 1):
        for short in MODULES:
            module = f"transformer.encoder.layers.{layer}.{short}"
            rows, cols = shapes[f"{module}.weight"][0]
            a, b = torch.randn(4, cols, generator=gen) * 0.1, torch.randn(rows, 4, generator=gen) * 0.1
            state[f"base_model.model.{module}.lora_A.weight"], state[f"base_model.model.{module}.lora_B.weight"] = a, b
            start[module] = (a, b)
    adapter = tmp_path / "chatglm2-sft-lora"
    adapter.mkdir()
    torch.save(state, adapter / "adapter_model.bin")
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
        "base_model_name_or_path": str(base),  # as the THUDM-era tools wrote it: a THUDM config.json
        "target_modules": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]}))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "more"
    assert cli(["train", f"model={base}", "method=lora", f"data={data}", f"output_dir={out}", "max_steps=2",
                "batch_size=2", "cutoff_len=48", "report_to=[none]", "learning_rate=1e-4", "precision=fp32",
                f"adapter={adapter}"]) == 0  # fmt: skip
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)  # the adapter's own settings continue
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"}
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        assert all(".lora_" in k for k in fh.keys())  # noqa: SIM118  (no embedding/lm_head copies)
        a_q = fh.get_tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        b_v = fh.get_tensor("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight")
    a0, b0 = start["transformer.encoder.layers.1.self_attention.query_key_value"]
    # two small steps from the THUDM adapter: still next to it (a fresh LoRA would be far), yet trained
    torch.testing.assert_close(a_q, a0, atol=5e-3, rtol=0)
    torch.testing.assert_close(b_v, b0[64 + 32:], atol=5e-3, rtol=0)  # v rows: after 4 q heads + 2 k groups of 16
    assert not torch.equal(a_q, a0)
    assert glmtune.load_model(base, adapter=out) is not None


def _thudm_lora(base, folder, seed: int = 1):
    """A THUDM-named LoRA folder (query_key_value only, peft's chatglm default) for checkpoint ``base``."""
    shapes = checkpoint_shapes(base)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for layer in (0, 1):
        module = f"transformer.encoder.layers.{layer}.self_attention.query_key_value"
        rows, cols = shapes[f"{module}.weight"][0]
        state[f"base_model.model.{module}.lora_A.weight"] = torch.randn(2, cols, generator=gen) * 0.5
        state[f"base_model.model.{module}.lora_B.weight"] = torch.randn(rows, 2, generator=gen) * 0.5
    folder.mkdir()
    torch.save(state, folder / "adapter_model.bin")
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 2, "lora_alpha": 32, "target_modules": ["query_key_value"]}))
    return folder


def test_serve_and_merge_export_take_thudm_loras(reference, tmp_path):
    from glmtune.serve.models import ServedModels

    base = reference / "checkpoints" / "chatglm2-mini"
    one, two = _thudm_lora(base, tmp_path / "one", 1), _thudm_lora(base, tmp_path / "two", 2)
    ids = torch.tensor([[64790, 64792, 30910, 13, 101, 202, 303]])
    with torch.no_grad():
        want = {n: glmtune.load_model(base, adapter=p, dtype="float32")(input_ids=ids).logits
                for n, p in (("one", one), ("two", two))}
        assert (want["one"] - want["two"]).abs().max() > 1e-2  # two different adapters
        served = ServedModels(base, adapters={"one": str(one), "two": str(two)}, dtype="float32")
        for name in ("two", "one"):  # the second adapter goes through peft's load_adapter
            with served.use(name) as engine:
                torch.testing.assert_close(engine.model(input_ids=ids).logits, want[name], atol=1e-5, rtol=0)
    merged = tmp_path / "merged"
    assert cli(["export", "--model", str(base), "--adapter", str(one), "--to", "chatglm", str(merged),
                "--dtype", "float32"]) == 0  # fmt: skip
    with torch.no_grad():
        got = glmtune.load_model(merged, dtype="float32")(input_ids=ids).logits
    torch.testing.assert_close(got, want["one"], atol=1e-4, rtol=0)


def test_predict_takes_a_bare_instructglm_state_dict(reference, tmp_path):
    """``glmtune predict --adapter chatglm-lora.pt``: the greedy answers are those of the adapted model."""
    base = reference / "checkpoints" / "chatglm2-mini"
    folder = _thudm_lora(base, tmp_path / "lora")
    state = torch.load(folder / "adapter_model.bin", weights_only=True)
    pt = tmp_path / "chatglm-lora.pt"  # InstructGLM: named_parameters() of the peft model, no config
    torch.save({k.replace(".weight", ".default.weight"): v for k, v in state.items()}, pt)
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]), encoding="utf-8")
    preds = {}
    for name, adapter in (("pt", pt), ("folder", folder), ("base", None)):
        extra = ["--adapter", str(adapter)] if adapter else []
        assert cli(["predict", "--model", str(base), *extra, "--data", str(data), "-o", str(tmp_path / f"{name}.jsonl"),
                    "--temperature", "0", "--max-new-tokens", "6", "--no-progress"]) == 0  # fmt: skip
        lines = (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        preds[name] = [json.loads(line)["prediction"] for line in lines]
    assert len(preds["pt"]) == 2 and preds["pt"] == preds["folder"]  # bare file: lora_alpha 32, as the folder
    assert preds["pt"] != preds["base"]  # the adapter was applied
