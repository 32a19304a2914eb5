"""LoRA adapters on THUDM module names (ChatGLM-Tuning, InstructGLM, chatglm2-6b-sft, official demos).

The "original code's base + adapter" is the THUDM checkpoint with ``W + scale * B @ A`` merged into
its own ``query_key_value``/``dense``/... weights, loaded by glmtune (whose THUDM loading the
reference suite checks against the original code); glmtune with the adapter attached unmerged
through peft must give the same logits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

import glmtune  # noqa: E402
from glmtune.cli import main as cli  # noqa: E402
from glmtune.errors import GlmtuneError  # noqa: E402

V2_MODULES = ("self_attention.query_key_value", "self_attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")
V1_MODULES = ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")


def _layer_prefix(name: str) -> str:
    return "transformer.layers." if name == "chatglm-tiny" else "transformer.encoder.layers."


def thudm_factors(root: Path, rank: int = 4, seed: int = 0, modules: tuple[str, ...] | None = None) -> dict:
    """{THUDM module: (A, B)} random, for every adapted module of both layers of tiny checkpoint ``root``."""
    state = torch.load(root / "pytorch_model.bin", weights_only=True)
    names = modules or (V1_MODULES if root.name == "chatglm-tiny" else V2_MODULES)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for layer in (0, 1):
        for short in names:
            module = f"{_layer_prefix(root.name)}{layer}.{short}"
            rows, cols = state[f"{module}.weight"].shape
            out[module] = (torch.randn(rank, cols, generator=gen) * 0.3, torch.randn(rows, rank, generator=gen) * 0.3)
    return out


def merged_reference(root: Path, factors: dict, scale: float, tmp: Path) -> Path:
    """The THUDM checkpoint with the LoRA merged into its own weights, as a THUDM folder."""
    state = torch.load(root / "pytorch_model.bin", weights_only=True)
    for module, (a, b) in factors.items():
        state[f"{module}.weight"] = state[f"{module}.weight"] + scale * (b @ a)
    tmp.mkdir()
    torch.save(state, tmp / "pytorch_model.bin")
    for name in ("config.json", "generation_config.json"):
        shutil.copy2(root / name, tmp / name)
    return tmp


def peft_folder(folder: Path, factors: dict, rank: int, alpha: float, key: str = "lora_{ab}.weight") -> Path:
    """A peft LoRA folder on THUDM names, as ChatGLM-Tuning's save_pretrained wrote it (peft 0.3, .bin)."""
    folder.mkdir()
    state = {}
    for module, (a, b) in factors.items():
        state[f"base_model.model.{module}.{key.format(ab='A')}"] = a.half()
        state[f"base_model.model.{module}.{key.format(ab='B')}"] = b.half()
    torch.save(state, folder / "adapter_model.bin")
    shorts = sorted({m.rsplit(".", 1)[-1] for m in factors})
    (folder / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": "THUDM/chatglm2-6b", "bias": "none", "enable_lora": None,
        "fan_in_fan_out": False, "inference_mode": True, "lora_alpha": alpha, "lora_dropout": 0.1,
        "merge_weights": False, "modules_to_save": None, "peft_type": "LORA", "r": rank,
        "target_modules": shorts, "task_type": "CAUSAL_LM"}))
    return folder


def halved(factors: dict) -> dict:  # what the fp16 adapter files hold
    return {m: (a.half().float(), b.half().float()) for m, (a, b) in factors.items()}


def ids_of(root: Path):
    with np.load(root / "expected.npz") as npz:
        return torch.from_numpy(npz["a.input_ids"])


def logits(path: Path, ids, adapter: Path | None = None):
    with torch.no_grad():
        model = glmtune.load_model(path, adapter=adapter, dtype="float32")
        return model, model(input_ids=ids).logits


@pytest.mark.parametrize("name", ["chatglm2-tiny", "chatglm3-tiny", "chatglm-tiny"])
def test_thudm_peft_folder_equals_the_merged_original(reference, tmp_path, name):
    root = reference / "models" / name
    factors = thudm_factors(root)
    adapter = peft_folder(tmp_path / "lora", factors, rank=4, alpha=16)
    ids = ids_of(root)
    _, want = logits(merged_reference(root, halved(factors), 16 / 4, tmp_path / "merged"), ids)
    _, plain = logits(root, ids)
    model, got = logits(root, ids, adapter)
    assert isinstance(model, peft.PeftModel)  # applied through peft, not merged
    assert (want - plain).abs().max() > 1e-2  # the adapter really changes the logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    if name != "chatglm-tiny":  # ChatGLM2/3: the fused update became q/k/v (shared A) on Glm's modules
        q = model.get_base_model().model.layers[1].self_attn.q_proj
        assert torch.equal(q.lora_A["default"].weight, factors["transformer.encoder.layers.1.self_attention."
                                                                "query_key_value"][0].half().float())


@pytest.mark.parametrize("name", ["chatglm2-tiny", "chatglm-tiny"])
def test_bare_state_dict_like_instructglm(reference, tmp_path, name):
    """InstructGLM's chatglm-lora.pt: named_parameters() of the peft model (adapter name in the keys, Parameters),
    no adapter_config.json: the rank comes from the tensors, lora_alpha is the tools' 32."""
    root = reference / "models" / name
    modules = (V1_MODULES if name == "chatglm-tiny" else V2_MODULES)[:1]  # peft's chatglm default: query_key_value
    factors = thudm_factors(root, rank=2, seed=1, modules=modules)
    state = {}
    for module, (a, b) in factors.items():
        state[f"base_model.model.{module}.lora_A.default.weight"] = torch.nn.Parameter(a)
        state[f"base_model.model.{module}.lora_B.default.weight"] = torch.nn.Parameter(b)
    pt = tmp_path / "chatglm-lora.pt"
    torch.save(state, pt)
    ids = ids_of(root)
    _, want = logits(merged_reference(root, factors, 32 / 2, tmp_path / "merged"), ids)
    _, got = logits(root, ids, pt)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # another alpha: an adapter_config.json beside the file says so
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 4, "r": 2}))
    _, want4 = logits(merged_reference(root, factors, 4 / 2, tmp_path / "merged4"), ids)
    _, got4 = logits(root, ids, pt)
    torch.testing.assert_close(got4, want4, atol=1e-4, rtol=0)


def test_peft_02_merged_qkv_layout_v1(reference, tmp_path):
    """peft 0.2 MergedLinear (enable_lora=[True, False, True]): A rank 2r, B a grouped Conv1d weight."""
    root = reference / "models" / "chatglm-tiny"
    rank, gen = 2, torch.Generator().manual_seed(3)
    merged_a, merged_b, full = {}, {}, {}
    for layer in (0, 1):
        module = f"transformer.layers.{layer}.attention.query_key_value"
        a = torch.randn(2 * rank, 64, generator=gen) * 0.3  # [A_first; A_third]
        b = torch.randn(2 * 64, rank, generator=gen) * 0.3  # [B_first; B_third] (out/3 rows each)
        merged_a[module], merged_b[module] = a, b.unsqueeze(-1)
        dense = torch.zeros(192, 64)
        dense[:64] = b[:64] @ a[:rank]
        dense[128:] = b[64:] @ a[rank:]
        full[module] = (torch.eye(64), dense)  # B @ A == dense
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({f"base_model.model.{m}.lora_{ab}.weight": t for m in merged_a
                for ab, t in (("A", merged_a[m]), ("B", merged_b[m]))}, folder / "adapter_model.bin")
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 8, "enable_lora": [True, False, True],
        "target_modules": ["query_key_value"], "merge_weights": False, "task_type": "CAUSAL_LM"}))
    ids = ids_of(root)
    _, want = logits(merged_reference(root, full, 8 / rank, tmp_path / "merged"), ids)
    _, got = logits(root, ids, folder)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_unrecognised_adapters_are_one_clear_error(reference, tmp_path):
    root = reference / "models" / "chatglm2-tiny"
    odd = tmp_path / "odd.pt"
    torch.save({"transformer.encoder.layers.0.self_attention.query_key_value.lora_A": torch.zeros(2, 64)}, odd)
    with pytest.raises(GlmtuneError, match=r"odd\.pt: not a LoRA layout .* found transformer\.encoder\.layers\.0\."
                                           r"self_attention\.query_key_value\.lora_A"):
        glmtune.load_model(root, adapter=odd)
    half = tmp_path / "half.safetensors"
    from safetensors.torch import save_file

    save_file({"base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.weight":
               torch.zeros(2, 64)}, str(half))
    with pytest.raises(GlmtuneError, match=r"half\.safetensors: .*query_key_value has no lora_B"):
        glmtune.load_model(root, adapter=half)
    wrong = peft_folder(tmp_path / "v1-on-v2", thudm_factors(reference / "models" / "chatglm-tiny"), 4, 16)
    with pytest.raises(GlmtuneError, match=r"v1-on-v2: LoRA on transformer\.layers\.0\.attention\.query_key_value "
                                           "has no place in this model"):
        glmtune.load_model(root, adapter=wrong)


@pytest.mark.parametrize(("name", "targets"), [
    ("chatglm2-tiny", ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]),
    ("chatglm3-tiny", ["q_proj", "v_proj"]),  # no k LoRA: its block of the stacked B stays zero
    ("chatglm-tiny", ["query_key_value", "dense_h_to_4h"]),
])
def test_export_adapter_layout_chatglm_round_trip(reference, tmp_path, capsys, name, targets):
    """A glmtune LoRA -> --adapter-layout chatglm -> THUDM names -> loaded again: the same logits."""
    root = reference / "models" / name
    model = glmtune.load_model(root, dtype="float32")
    model = peft.get_peft_model(model, peft.LoraConfig(r=2, lora_alpha=6, target_modules=targets))
    torch.manual_seed(5)
    for pname, param in model.named_parameters():
        if "lora_" in pname:
            param.data.normal_(0, 0.3)
    native = tmp_path / "native"
    model.save_pretrained(str(native))
    ids = ids_of(root)
    with torch.no_grad():
        want = model.eval()(input_ids=ids).logits
    out = tmp_path / "thudm"
    assert cli(["export", "--model", str(root), "--adapter", str(native), "--adapter-layout", "chatglm", str(out)]) == 0
    assert "THUDM" in capsys.readouterr().out
    config = json.loads((out / "adapter_config.json").read_text())
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    if name == "chatglm-tiny":
        assert config["r"] == 2 and config["target_modules"] == ["dense_h_to_4h", "query_key_value"]
    elif name == "chatglm3-tiny":  # q and v stacked: rank 2r, alpha 2 * 6
        assert (config["r"], config["lora_alpha"], config["target_modules"]) == (4, 12, ["query_key_value"])
    else:  # q/k/v stacked: rank 3r; lora_alpha keeps alpha / r; the rest padded to that rank
        assert config["r"] == 6 and config["lora_alpha"] == 18
        assert config["target_modules"] == ["dense", "dense_4h_to_h", "query_key_value"]
        key = "base_model.model.transformer.encoder.layers.1.self_attention.query_key_value.lora_B.weight"
        assert key in keys
    assert all(k.startswith("base_model.model.transformer.") for k in keys)
    _, got = logits(root, ids, out)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_adapter_layout_flag_errors(reference, tmp_path, capsys):
    root = reference / "models" / "chatglm2-tiny"
    adapter = peft_folder(tmp_path / "lora", thudm_factors(root), 4, 16)
    assert cli(["export", "--model", str(root), "--adapter-layout", "chatglm", str(tmp_path / "o")]) == 2
    assert "--adapter-layout chatglm writes only the adapter" in capsys.readouterr().err
    assert cli(["export", "--model", str(root), "--adapter", str(adapter), "--adapter-layout", "chatglm",
                "--to", "hf", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "give --adapter LORA and no --to" in capsys.readouterr().err
    assert cli(["export", "--model", str(root), str(tmp_path / "o")]) == 2
    assert "give --to hf|chatglm" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
