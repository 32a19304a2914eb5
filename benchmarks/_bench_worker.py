"""One measured run for compare_llamafactory.py, in its own process (peak RSS is the process's own).

    python _bench_worker.py glmtune|pad|llamafactory SPEC.json   # train, write SPEC["result"] (JSON)
    python _bench_worker.py lf-encode|lf-logits|lf-tokenize SPEC.json   # checks / tokenization

``glmtune`` and ``pad`` run in glmtune's venv, ``llamafactory`` and the ``lf-*`` modes in LLaMA-Factory's.
Every run gets the same model, rows, LoRA (r 8, alpha 16, dropout 0.05, q/k/v), batch, cutoff, steps,
learning rate and scheduler; how each tool batches, pads and computes the loss is its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import _bench_probe as probe


def train_glmtune(spec: dict[str, Any]) -> None:
    """``glmtune train`` through its CLI entry point, in-process so the probe sees its Trainer."""
    import yaml

    from glmtune.cli import main

    out = Path(spec["output_dir"])
    config = {
        "model": spec["thudm_model"], "family": "chatglm3", "method": "lora", "data": spec["train"],
        "cutoff_len": spec["cutoff"], "batch_size": spec["batch"], "max_steps": spec["steps"],
        "learning_rate": spec["lr"], "lr_scheduler": "cosine", "warmup_ratio": 0.0, "seed": spec["seed"],
        "precision": "fp32", "group_by_length": spec["group_by_length"], "logging_steps": 10,
        "save_steps": 10**6, "report_to": ["none"], "output_dir": str(out), "overwrite_output_dir": True,
        "lora": {"r": spec["lora_r"], "alpha": 2 * spec["lora_r"], "dropout": 0.05,
                 "target_modules": spec["lora_targets"]},
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path = out.parent / f"{out.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    rc = main(["train", str(cfg_path)])
    if rc:
        sys.exit(f"glmtune train exited {rc}")


def _pad_to(length: int, pad_id: int):  # noqa: ANN202 - a collate function
    import torch

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        ids = torch.full((len(features), length), pad_id, dtype=torch.long)
        labels = torch.full((len(features), length), -100, dtype=torch.long)
        mask = torch.zeros((len(features), length), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def train_pad(spec: dict[str, Any]) -> None:
    """A seed-style script: plain Trainer + peft on the HF export, every example padded to ``cutoff``.
    The ids/labels are glmtune's chatglm3 encoding (so only batching differs from the others)."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    import glmtune
    from glmtune.data.encode import encode_all
    from glmtune.data.templates import EncodeOptions

    torch.manual_seed(spec["seed"])
    tok = glmtune.load_tokenizer(spec["hf_model"], family="chatglm3")
    opts = EncodeOptions(cutoff_len=spec["cutoff"])
    rows = [json.loads(x)["messages"] for x in Path(spec["train"]).read_text(encoding="utf-8").splitlines() if x]
    dataset = [e for r in rows for e in encode_all(tok, r, "chatglm3", options=opts)]
    model = AutoModelForCausalLM.from_pretrained(spec["hf_model"], dtype=torch.float32)
    lora = peft.LoraConfig(r=spec["lora_r"], lora_alpha=2 * spec["lora_r"], lora_dropout=0.05,
                           target_modules=spec["lora_targets"], task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=spec["output_dir"], max_steps=spec["steps"], per_device_train_batch_size=spec["batch"],
        learning_rate=spec["lr"], lr_scheduler_type="cosine", warmup_steps=0, seed=spec["seed"],
        logging_steps=10, save_strategy="no", report_to="none", remove_unused_columns=False, use_cpu=True,
        dataloader_num_workers=0,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=_pad_to(spec["cutoff"], 0))
    trainer.train()
    model.save_pretrained(spec["output_dir"])


def lf_args(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """LLaMA-Factory arguments: its defaults, plus the settings every tool shares."""
    return {
        "model_name_or_path": spec["lf_model"], "trust_remote_code": False, "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_rank": spec["lora_r"], "lora_alpha": 2 * spec["lora_r"],
        "lora_dropout": 0.05, "lora_target": ",".join(spec["lora_targets"]), "dataset": spec.get("dataset", "bench_train"),
        "dataset_dir": spec["lf_dataset_dir"], "template": "chatglm3", "cutoff_len": spec["cutoff"],
        "overwrite_cache": True, "output_dir": spec["output_dir"], "overwrite_output_dir": True,
        "per_device_train_batch_size": spec["batch"], "gradient_accumulation_steps": 1,
        "learning_rate": spec["lr"], "lr_scheduler_type": "cosine", "warmup_ratio": 0.0,
        "max_steps": spec["steps"], "logging_steps": 10, "save_strategy": "no", "report_to": "none",
        "seed": spec["seed"], "bf16": False, "fp16": False, "plot_loss": False, **extra,
    }  # fmt: skip


def stub_torchaudio() -> None:
    """LLaMA-Factory imports torchaudio at module level (audio inputs only). The only torchaudio wheels
    here are CUDA builds that cannot load against the CPU torch, so compare_llamafactory.py removes
    torchaudio/torchvision from that venv and a placeholder module stands in (never used for text)."""
    import importlib.machinery
    import types

    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)  # transformers looks it up
        sys.modules["torchaudio"] = stub


def train_llamafactory(spec: dict[str, Any]) -> None:
    stub_torchaudio()
    from llamafactory.train.tuner import run_exp

    run_exp(lf_args(spec, **spec.get("lf_extra", {})))


LF_SECONDS: list[float] = []  # get_dataset's own time (after imports and the tokenizer load)


def lf_dataset(args: dict[str, Any]) -> Any:
    """What ``llamafactory-cli train`` (run_sft) does before loading the model: arguments, tokenizer,
    template, then its dataset loader (read, convert, tokenize; saved when ``tokenized_path`` is set)."""
    stub_torchaudio()
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    start = time.perf_counter()
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)["train_dataset"]
    LF_SECONDS.append(time.perf_counter() - start)
    return dataset


def lf_encode(spec: dict[str, Any]) -> None:
    """LLaMA-Factory's own preprocessing (template, converter, supervised processor) of the first rows."""
    dataset = lf_dataset(lf_args(spec, max_samples=spec["rows"]))
    rows = [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in dataset]
    Path(spec["result"]).write_text(json.dumps(rows), encoding="utf-8")


def lf_tokenize(spec: dict[str, Any]) -> None:
    """LLaMA-Factory's loader on the raw alpaca file, saved to ``tokenized_path`` (timed from outside)."""
    args = lf_args(spec, tokenized_path=spec["tokenized_path"], preprocessing_num_workers=spec["num_proc"])
    dataset = lf_dataset(args)
    Path(spec["result"]).write_text(json.dumps({"examples": len(dataset), "seconds": LF_SECONDS[0]}), encoding="utf-8")


def lf_logits(spec: dict[str, Any]) -> None:
    """Logits of the HF export under LLaMA-Factory's transformers, plain AutoModelForCausalLM."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec["lf_model"], dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([spec["ids"]])).logits[0].float()
    Path(spec["result"]).write_text(json.dumps(logits.tolist()), encoding="utf-8")


CHECKS = {"lf-encode": lf_encode, "lf-tokenize": lf_tokenize, "lf-logits": lf_logits}


def main() -> None:
    what, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if what in CHECKS:
        CHECKS[what](spec)
        return
    probe.install()
    start = time.perf_counter()
    {"glmtune": train_glmtune, "pad": train_pad, "llamafactory": train_llamafactory}[what](spec)
    result = probe.report()
    result["wall_s"] = time.perf_counter() - start
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
