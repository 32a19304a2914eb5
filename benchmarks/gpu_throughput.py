"""GPU numbers of issue 14: LoRA bf16 training tokens/s and model FLOP utilisation, and peak memory of
LoRA bf16 and QLoRA 4-bit, on a ChatGLM2-6B-shaped random model through ``glmtune train``'s own path.

Usage (repo root, venv active):
    python benchmarks/gpu_throughput.py            # ChatGLM2-6B shape (28 layers, hidden 4096): needs a GPU
    python benchmarks/gpu_throughput.py --tiny     # 2 layers, hidden 64: runs anywhere (checks the script)

Three runs, each in its own process (so peak memory is its own), defaults of ``glmtune train`` otherwise
(padding-free batches, loss at labelled positions only), gradient checkpointing set off except in the
``-gc`` runs (``glmtune train`` itself turns it on for QLoRA when unset):
1. ``speed``: LoRA r=8 on q/k/v, bf16, ``--batch`` examples of ~``--seq`` tokens (about 30% prompt), timed
   steps after ``--warmup``: tokens/s, and MFU = model FLOPs / (seconds x ``--peak-tflops``), model FLOPs
   per token = 6 x (parameters without the embedding and output layer) + 6 x output layer per labelled
   token + attention 6 x layers x seq x hidden (causal half of 12). LoRA computes no base-weight
   gradients, so the hardware does about 2/3 of those FLOPs; both numbers are printed.
2. ``lora-mem``: LoRA bf16, batch 1, ``cutoff_len`` 512, 3 steps: peak CUDA memory allocated.
3. ``qlora-mem``: QLoRA 4-bit (nf4, double quantisation, bf16 compute), same: peak CUDA memory allocated.
4. ``qlora-mem-gc`` (and ``lora-mem-gc``): the same with ``gradient_checkpointing: true``.
The random weights make the loss meaningless (printed only to show it is finite).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gpu_smoke import SHAPE_6B, SHAPE_TINY, build_model  # noqa: E402

MARK = "GPU_THROUGHPUT_RESULT "
WORDS = ("model data train answer question token layer memory speed value river mountain light green "
         "small large number system example method result paper table point write read open close").split()


def write_data(path: Path, rows: int, seq: int, seed: int = 0) -> Path:
    """Conversations of ~``seq`` words (30% prompt): long enough that ``cutoff_len`` cuts each to ``seq`` tokens."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(rows):
            prompt = " ".join(rng.choice(WORDS) for _ in range(int(seq * 0.3)))
            answer = " ".join(rng.choice(WORDS) for _ in range(seq))
            fh.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": answer}]}) + "\n")
    return path


def worker(args: argparse.Namespace) -> None:
    import torch
    from transformers import TrainerCallback

    from glmtune.config import load_config
    from glmtune.train import runner
    from glmtune.train.config import TrainConfig

    gpu = torch.cuda.is_available()
    speed = args.worker == "speed"
    batch, cutoff, steps = (args.batch, args.seq, args.steps) if speed else (1, 512, 3)
    keys = {"model": args.model, "family": "chatglm2", "data": args.data, "output_dir": args.out,
            "method": "qlora" if args.worker.startswith("qlora") else "lora", "lora.r": 8, "batch_size": batch,
            "gradient_checkpointing": str(args.worker.endswith("-gc")).lower(),
            "cutoff_len": cutoff, "max_steps": steps, "logging_steps": 1, "save_steps": 100000,
            "report_to": "[none]", "sample_prompts": "[]", "learning_rate": 1e-4, "lr_scheduler": "constant",
            "precision": "bf16" if gpu else "fp32", "overwrite_output_dir": "true", "seed": 0}  # fmt: skip
    cfg = load_config(TrainConfig, None, [f"{k}={v}" for k, v in keys.items()])
    times: list[tuple[float, int, int]] = []

    class Timer(TrainerCallback):
        trainer: Any = None

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            if gpu:
                torch.cuda.synchronize()
            self.t, self.tokens, self.labels = time.perf_counter(), self.trainer.tokens_seen, labelled[0]

        def on_step_end(self, *a: Any, **k: Any) -> None:
            if gpu:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - self.t, self.trainer.tokens_seen - self.tokens, labelled[0] - self.labels))

    timer, labelled = Timer(), [0]
    base = runner.GlmTrainer

    class Timed(base):  # type: ignore[misc,valid-type]  # counts labelled tokens and hands itself to the timer
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            timer.trainer = self

        def compute_loss(self, model: Any, inputs: dict[str, Any], *a: Any, **k: Any) -> Any:
            labelled[0] += int((inputs["labels"][:, 1:] != -100).sum())
            return super().compute_loss(model, inputs, *a, **k)

    runner.GlmTrainer = Timed
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    runner.run(cfg, callbacks=[timer])
    peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else float("nan")
    timed = times[args.warmup:] if speed else times
    secs = sum(t for t, _, _ in timed)
    losses = [r["loss"] for r in map(json.loads, (Path(args.out) / "train_log.jsonl").read_text().splitlines())
              if "loss" in r]
    print(MARK + json.dumps({"run": args.worker, "steps": len(times), "timed_steps": len(timed),
                             "seconds": secs, "tokens": sum(n for _, n, _ in timed),
                             "labelled": sum(n for _, _, n in timed), "peak_gib": round(peak, 2),
                             "last_loss": losses[-1] if losses else None,
                             "gpu": torch.cuda.get_device_name() if gpu else "cpu"}), flush=True)  # fmt: skip


def model_flops(shape: dict[str, int], tokens: int, labelled: int, seq: int) -> tuple[float, float]:
    """(model FLOPs with the 6N convention, FLOPs LoRA really does: no gradient of frozen weights)."""
    h, ffn, layers, vocab = shape["hidden"], shape["ffn"], shape["layers"], shape["vocab"]
    kv = h // shape["heads"]
    qkv = h * (h + 2 * shape["kv_groups"] * kv)
    body = layers * (qkv + h * h + 3 * h * ffn)  # q/k/v, dense, gate+up and down projections
    attn = 6 * layers * seq * h  # causal: half of 12 * layers * seq * hidden per token
    six_n = 6 * body * tokens + 6 * vocab * h * labelled + attn * tokens
    return six_n, six_n * 2 / 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--runs", default="speed,lora-mem,qlora-mem,qlora-mem-gc")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    import torch

    gpu = torch.cuda.is_available()
    shape = dict(SHAPE_TINY if args.tiny else SHAPE_6B)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_throughput."))
    t0 = time.perf_counter()
    model = build_model(work / "model", shape, "cuda" if gpu else "cpu", torch.bfloat16 if gpu else torch.float32)
    data = write_data(work / "data.jsonl", rows=max(64, args.batch * (args.steps + 2)), seq=args.seq)
    print(f"model {shape} written in {time.perf_counter() - t0:.0f} s; torch {torch.__version__}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    failed = 0
    for run in [r.strip() for r in args.runs.split(",") if r.strip()]:
        if run.startswith("qlora") and not gpu:
            print(f"{run}: skipped (bitsandbytes 4-bit training needs CUDA here)")
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", run, "--model", str(model), "--data",
               str(data), "--out", str(work / f"out-{run}"), "--batch", str(args.batch), "--seq", str(args.seq),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
        t1 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
        found = [json.loads(x[len(MARK):]) for x in proc.stdout.splitlines() if x.startswith(MARK)]
        if proc.returncode != 0 or not found:
            failed += 1
            print(f"{run}: FAILED (exit {proc.returncode})\n{(proc.stdout + proc.stderr)[-3000:]}", flush=True)
            continue
        r = found[0]
        line = f"{run}: {r['steps']} steps, peak {r['peak_gib']} GiB allocated, last loss {r['last_loss']}, " \
               f"process {time.perf_counter() - t1:.0f} s, {r['gpu']}"
        if run == "speed" and r["seconds"] > 0:
            six_n, hw = model_flops(shape, r["tokens"], r["labelled"], args.seq)
            line += (f"\n  {r['timed_steps']} timed steps: {r['seconds'] / r['timed_steps']:.3f} s/step, "
                     f"{r['tokens'] / r['seconds']:.0f} tokens/s ({r['tokens'] // r['timed_steps']} tokens/step, "
                     f"{r['labelled'] / max(r['tokens'], 1):.0%} labelled); MFU {six_n / r['seconds'] / 1e12 / args.peak_tflops:.1%} "
                     f"(6N convention), hardware {hw / r['seconds'] / 1e12 / args.peak_tflops:.1%} of "
                     f"{args.peak_tflops:.0f} TFLOP/s")  # fmt: skip
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
