"""Shared pieces of the LLaMA-Factory comparison: the tiny ChatGLM3 model, the data split, load sampling.

Runs in glmtune's own environment (the orchestrator's); nothing here is imported by LLaMA-Factory's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

# A ChatGLM3-architecture model: 4 layers, hidden 256, kv_channels 64, the real 65,024-id tokenizer.
TINY_ARCH: dict[str, Any] = {
    "hidden_size": 256,
    "num_layers": 4,
    "num_attention_heads": 4,
    "kv_channels": 64,
    "multi_query_group_num": 2,
    "ffn_hidden_size": 688,
    "seq_length": 8192,
    "padded_vocab_size": 65024,
}
MODEL_VERSION = 1  # bump when the model below changes (the cached folders are rebuilt)


def reference_dir() -> Path:
    ref = os.environ.get("GLMTUNE_REFERENCE")
    if not ref:
        sys.exit("set GLMTUNE_REFERENCE (the folder with tokenizers/chatglm2/tokenizer.model)")
    return Path(ref)


def _thudm_config() -> dict[str, Any]:
    """ChatGLM3-6B's config.json with the tiny sizes (float32, no remote-code map)."""
    return {
        "_name_or_path": "THUDM/chatglm3-6b",
        "model_type": "chatglm",
        "architectures": ["ChatGLMModel"],
        "add_bias_linear": False,
        "add_qkv_bias": True,
        "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False,
        "attention_dropout": 0.0,
        "attention_softmax_in_fp32": True,
        "bias_dropout_fusion": True,
        "fp32_residual_connection": False,
        "hidden_dropout": 0.0,
        "layernorm_epsilon": 1e-05,
        "multi_query_attention": True,
        "original_rope": True,
        "post_layer_norm": True,
        "rmsnorm": True,
        "use_cache": True,
        "torch_dtype": "float32",
        "tie_word_embeddings": False,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "vocab_size": TINY_ARCH["padded_vocab_size"],
        **TINY_ARCH,
    }


def build_models(work: Path) -> tuple[Path, Path]:
    """(THUDM-layout folder for glmtune, ``glmtune export --to hf`` folder for the others), built once."""
    from safetensors.torch import save_file

    from glmtune.models.tiny import random_thudm_weights

    thudm, hf = work / f"model-thudm-v{MODEL_VERSION}", work / f"model-hf-v{MODEL_VERSION}"
    if not (thudm / "model.safetensors").is_file():
        tmp = thudm.with_name(thudm.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        config = _thudm_config()
        shutil.copyfile(reference_dir() / "tokenizers" / "chatglm2" / "tokenizer.model", tmp / "tokenizer.model")
        tok_config = {"name_or_path": "THUDM/chatglm3-6b", "remove_space": False, "do_lower_case": False,
                      "tokenizer_class": "ChatGLMTokenizer", "padding_side": "left", "glmtune_family": "chatglm3"}
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        weights = {k: v.contiguous() for k, v in random_thudm_weights(config, seed=0).items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(thudm, ignore_errors=True)
        tmp.rename(thudm)
    if not (hf / "tokenizer.json").is_file():  # an export without the fast tokenizer LLaMA-Factory needs: redo
        shutil.rmtree(hf, ignore_errors=True)
        cmd = [sys.executable, "-m", "glmtune", "export", "--model", str(thudm), "--to", "hf", str(hf)]
        subprocess.run(cmd, check=True)
    return thudm, hf


def prepare_data(work: Path, source: Path, n_train: int, n_eval: int) -> tuple[Path, Path, Path]:
    """(train.jsonl, eval.jsonl, LLaMA-Factory dataset_dir): glmtune ``convert`` of ``source``, first
    ``n_train`` rows to train, the next ``n_eval`` held out. Records keep only ``messages`` so both
    tools read the very same text (LLaMA-Factory as sharegpt-style messages)."""
    from glmtune.data.convert import convert_files

    data = work / f"data-{n_train}-{n_eval}"
    train, dev, lf_dir = data / "train.jsonl", data / "eval.jsonl", data / "lf"
    if train.is_file() and dev.is_file() and (lf_dir / "dataset_info.json").is_file():
        return train, dev, lf_dir
    data.mkdir(parents=True, exist_ok=True)
    converted = data / "all.jsonl"
    convert_files([str(source)], converted, on_error="skip")
    rows = [json.loads(line) for line in converted.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) < n_train + n_eval:
        sys.exit(f"{source}: {len(rows)} usable rows, {n_train + n_eval} needed")
    for path, part in ((train, rows[:n_train]), (dev, rows[n_train:n_train + n_eval])):
        path.write_text("".join(json.dumps({"messages": r["messages"]}, ensure_ascii=False) + "\n" for r in part),
                        encoding="utf-8")
    lf_dir.mkdir(exist_ok=True)
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "system_tag": "system"}
    info = {name: {"file_name": str(path.resolve()), "formatting": "sharegpt", "columns": {"messages": "messages"},
                   "tags": tags} for name, path in (("bench_train", train), ("bench_eval", dev))}
    (lf_dir / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    converted.unlink()
    return train, dev, lf_dir


class LoadSampler:
    """Mean and max of the 1-minute load average, sampled every ``every`` seconds while active."""

    def __init__(self, every: float = 2.0) -> None:
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        return f"{sum(self.samples) / len(self.samples):.2f} (max {max(self.samples):.2f})"


def eval_loss(model_dir: Path, adapter: Path, eval_jsonl: Path, cutoff: int, batch: int = 8) -> float:
    """Token-level mean cross-entropy of ``adapter`` on the held-out rows, computed the same way for every
    tool: glmtune's chatglm3 encoding, base = ``model_dir`` (the HF export), fp32, no padding in the loss."""
    import torch

    import glmtune
    from glmtune.data.encode import encode_all
    from glmtune.data.templates import EncodeOptions

    tok = glmtune.load_tokenizer(model_dir, family="chatglm3")
    model = glmtune.load_model(model_dir, adapter=str(adapter), family="chatglm3", dtype="float32").eval()
    rows = [json.loads(x)["messages"] for x in eval_jsonl.read_text(encoding="utf-8").splitlines() if x.strip()]
    opts = EncodeOptions(cutoff_len=cutoff)
    encoded = [e for r in rows for e in encode_all(tok, r, "chatglm3", options=opts)]
    encoded.sort(key=lambda e: len(e["input_ids"]))  # little padding; the mean over tokens is unchanged
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA layers stay in place
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch):
            chunk = encoded[start:start + batch]
            width = max(len(e["input_ids"]) for e in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, e in enumerate(chunk):
                n = len(e["input_ids"])
                ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
            hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
            target = labels[:, 1:]
            keep = target != -100  # the output head only where a label is
            logits = inner.lm_head(hidden[:, :-1][keep]).float()
            total += float(torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum"))
            count += int(keep.sum())
    return total / max(count, 1)
