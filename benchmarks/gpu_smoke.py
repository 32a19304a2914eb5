"""GPU smoke test: every training method on a ChatGLM2-6B-shaped random model, a few steps each.

Usage (repo root, venv active):
    python benchmarks/gpu_smoke.py                  # ChatGLM2-6B shape (28 layers, hidden 4096): needs a GPU
    python benchmarks/gpu_smoke.py --tiny           # 2 layers, hidden 64: runs anywhere (CUDA-only parts noted)
    python benchmarks/gpu_smoke.py --layers 4 --hidden 1024 --steps 2 --methods lora,qlora
    GPU_SMOKE_LAYERS=4 GPU_SMOKE_HIDDEN=1024 bash benchmarks/gpu_smoke.sh

It writes a random-weight checkpoint in the THUDM ChatGLM2 layout (the built-in tiny model's tokenizer,
real 6B shapes), then per method runs ``glmtune train`` in its own process (LoRA bf16, QLoRA 4-bit,
P-Tuning v2, full fine-tuning with DeepSpeed ZeRO-3 under torchrun), reloads the output with
``glmtune.load_model`` and greedily generates a few tokens; the table gives loss, peak memory, times.
Random weights, so the answers are noise: it checks that everything runs and reloads, not quality.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARK = "GPU_SMOKE_RESULT "
METHODS = ("lora", "qlora", "ptuning", "full")
SHAPE_6B = {"layers": 28, "hidden": 4096, "ffn": 13696, "heads": 32, "kv_groups": 2, "vocab": 65024}
SHAPE_TINY = {"layers": 2, "hidden": 64, "ffn": 172, "heads": 4, "kv_groups": 2, "vocab": 1280}


def build_model(folder: Path, shape: dict[str, int], device: str, dtype: Any) -> Path:
    """A ChatGLM2 THUDM-layout folder with random weights of ``shape`` (generated on ``device``)."""
    import torch
    from safetensors.torch import save_file

    from glmtune.models.tiny import builtin_path

    tiny = builtin_path("tiny-chatglm2")  # its tokenizer (ids fit any vocab >= its own)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(tiny / name, folder / name)
    config = json.loads((tiny / "config.json").read_text())
    h, heads, groups = shape["hidden"], shape["heads"], shape["kv_groups"]
    kv = h // heads
    config.update(num_layers=shape["layers"], hidden_size=h, ffn_hidden_size=shape["ffn"], num_attention_heads=heads,
                  kv_channels=kv, multi_query_group_num=groups, padded_vocab_size=shape["vocab"],
                  vocab_size=shape["vocab"], seq_length=2048, torch_dtype=str(dtype).removeprefix("torch."))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*size: int) -> Any:
        return (torch.randn(*size, generator=gen, device=device, dtype=torch.float32) * 0.02).to(dtype).cpu()

    qkv = heads * kv + 2 * groups * kv
    sd = {"transformer.embedding.word_embeddings.weight": rand(shape["vocab"], h),
          "transformer.rotary_pos_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, kv // 2, 2).float() / (kv // 2))),
          "transformer.encoder.final_layernorm.weight": torch.ones(h, dtype=dtype),
          "transformer.output_layer.weight": rand(shape["vocab"], h)}  # fmt: skip
    for i in range(shape["layers"]):
        p = f"transformer.encoder.layers.{i}."
        sd.update({p + "input_layernorm.weight": torch.ones(h, dtype=dtype),
                   p + "self_attention.query_key_value.weight": rand(qkv, h),
                   p + "self_attention.query_key_value.bias": torch.zeros(qkv, dtype=dtype),
                   p + "self_attention.dense.weight": rand(h, heads * kv),
                   p + "post_attention_layernorm.weight": torch.ones(h, dtype=dtype),
                   p + "mlp.dense_h_to_4h.weight": rand(2 * shape["ffn"], h),
                   p + "mlp.dense_4h_to_h.weight": rand(h, shape["ffn"])})  # fmt: skip
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def overrides(method: str, model: Path, data: Path, out: Path, steps: int, gpu: bool, zero3: bool) -> list[str]:
    """``glmtune train`` key=value settings of one smoke run."""
    keys = [f"model={model}", "family=chatglm2", f"data={data}", f"output_dir={out}", f"method={method}",
            f"max_steps={steps}", "batch_size=2", "cutoff_len=128", "logging_steps=1", "save_steps=1000",
            "report_to=[none]", "sample_prompts=[]", "lr_scheduler=constant", "learning_rate=1e-4",
            f"precision={'bf16' if gpu else 'fp32'}", "ptuning.pre_seq_len=16", "lora.r=8", "seed=0"]  # fmt: skip
    if method == "full":
        keys += ["gradient_checkpointing=true"]
        if zero3:
            keys += [f"deepspeed={REPO / 'examples' / 'deepspeed' / 'zero3.json'}"]
    return keys


def worker(args: argparse.Namespace) -> None:
    """One method in this process: train, reload the output, generate; print one JSON result line."""
    import torch

    import glmtune
    from glmtune.config import load_config
    from glmtune.train.config import TrainConfig
    from glmtune.train.runner import run

    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    cfg = load_config(TrainConfig, None, overrides(args.worker, args.model, args.data, args.out, args.steps, gpu,
                                                   args.zero3))  # fmt: skip
    result = run(cfg)
    train_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if int(os.environ.get("RANK", "0")) != 0:
        return
    del result
    import gc

    gc.collect()
    if gpu:
        torch.cuda.empty_cache()
    t1 = time.perf_counter()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if gpu else torch.float32}
    if gpu:
        kwargs["device_map"] = {"": 0}
    if args.worker == "qlora":
        kwargs["quantization"] = "4bit"
    if args.worker == "full":
        model = glmtune.load_model(args.out, family="chatglm2", **kwargs)
    else:
        model = glmtune.load_model(args.model, family="chatglm2", adapter=args.out, **kwargs)
    tokenizer = glmtune.load_tokenizer(args.model)
    ids = torch.tensor([glmtune.build_chat_input(tokenizer, [{"role": "user", "content": "Hello"}])],
                       device=next(model.parameters()).device)
    with torch.no_grad():
        new = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:]
    losses = [r["loss"] for r in map(json.loads, (args.out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    print(MARK + json.dumps({"method": args.worker, "steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
                             "peak_gib": round(peak, 2), "peak_kind": "cuda allocated" if gpu else "process RSS",
                             "train_s": round(train_s, 1), "reload_generate_s": round(time.perf_counter() - t1, 1),
                             "new_tokens": len(new)}), flush=True)  # fmt: skip


def smoke_data(folder: Path, rows: int = 32) -> Path:
    data = json.loads((REPO / "examples" / "data" / "alpaca_bilingual.json").read_text(encoding="utf-8"))[:rows]
    path = folder / "smoke.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def plan(methods: list[str], gpu: bool) -> tuple[list[tuple[str, bool]], list[str]]:
    """(method, use ZeRO-3) pairs to run and the notes for what is skipped or changed."""
    notes, todo = [], []
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    has_ds = importlib.util.find_spec("deepspeed") is not None
    for method in methods:
        if method == "qlora" and not has_bnb:
            notes.append("qlora: skipped, bitsandbytes is not installed")
        elif method == "full" and not gpu:
            notes.append("full: DeepSpeed ZeRO-3 needs CUDA; ran plain full fine-tuning on CPU instead")
            todo.append((method, False))
        elif method == "full" and not has_ds:
            notes.append("full: skipped, deepspeed is not installed (pip install deepspeed); without ZeRO-3 a "
                         "6B full fine-tune's optimizer state does not fit one GPU")
        else:
            todo.append((method, method == "full"))
    if not gpu:
        notes.append("no CUDA: fp32 instead of bf16, peak memory is process RSS, qlora's 4-bit runs on "
                     "bitsandbytes' CPU backend")
    return todo, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shape (CPU friendly) instead of ChatGLM2-6B")
    p.add_argument("--layers", type=int, default=int(os.environ.get("GPU_SMOKE_LAYERS", 0)) or None)
    p.add_argument("--hidden", type=int, default=int(os.environ.get("GPU_SMOKE_HIDDEN", 0)) or None)
    p.add_argument("--steps", type=int, default=int(os.environ.get("GPU_SMOKE_STEPS", 2)))
    p.add_argument("--methods", default=os.environ.get("GPU_SMOKE_METHODS", ",".join(METHODS)))
    p.add_argument("--workdir", type=Path, default=None, help="keep the model and outputs here (default: a temp dir)")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--zero3", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    import torch

    gpu = torch.cuda.is_available()
    shape = dict(SHAPE_TINY if args.tiny else SHAPE_6B)
    if args.layers:
        shape["layers"] = args.layers
    if args.hidden:
        shape["hidden"], shape["ffn"] = args.hidden, args.hidden * 13696 // 4096
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        p.error(f"--methods: unknown {bad[0]!r}; choose from {', '.join(METHODS)}")
    todo, notes = plan(methods, gpu)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_smoke."))
    t0 = time.perf_counter()
    model = build_model(work / "model", shape, "cuda" if gpu else "cpu", torch.bfloat16 if gpu else torch.float32)
    print(f"model: {shape} written in {time.perf_counter() - t0:.0f}s to {model}", flush=True)
    data = smoke_data(work)
    rows, failed = [], []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for method, zero3 in todo:
        cmd = [sys.executable, *(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"] if zero3 else []),
               str(Path(__file__).resolve()), "--worker", method, "--model", str(model), "--data", str(data),
               "--out", str(work / f"out-{method}"), "--steps", str(args.steps), *(["--zero3"] if zero3 else [])]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
        found = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
        if proc.returncode != 0 or not found:
            failed.append(method)
            print(f"{method}: FAILED (exit {proc.returncode})\n{(proc.stdout + proc.stderr)[-3000:]}", flush=True)
            continue
        rows.append({**found[0], "method": method + (" + ZeRO-3" if zero3 else "")})
        print(f"{method}: ok", flush=True)
    head = ("method", "steps", "first_loss", "last_loss", "peak_gib", "train_s", "reload_generate_s", "new_tokens")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.4f}" if isinstance(row[k], float) and "loss" in k else str(row[k])
                                for k in head) + " |")
    for note in notes:
        print(f"note: {note}")
    print(f"total {time.perf_counter() - t0:.0f}s; peak memory is {rows[0]['peak_kind'] if rows else '-'}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
