"""Generation throughput of glmtune's inference engine on the comparison's tiny ChatGLM3 model.

Usage (repo root, venv active, GLMTUNE_REFERENCE and GLMTUNE_SHARED_DATA set):
    python benchmarks/generate_speed.py [--batch-sizes 1 8] [--new-tokens 64] [--prompts 16] [--repeats 3]

``Engine.generate`` (the code behind chat, predict and serve) answers ``--prompts`` alpaca-zh
instructions, greedy, exactly ``--new-tokens`` tokens each: the stop ids are set to an id the model
cannot produce, so a random model's early eos cannot shorten the work. Tokens/s = generated tokens /
wall seconds of the generate calls (prompt processing included), best of ``--repeats``; the CPU
seconds of that run (all threads) show how much of the wall time other jobs took. The model is
random (4 layers, hidden 256, the real 65,024-id tokenizer): this measures the engine's overhead and
batching, not a real model's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import LoadSampler, build_models, prepare_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/compare_llamafactory", help="where the tiny model is built/cached")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=16, help="conversations per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    shared = os.environ.get("GLMTUNE_SHARED_DATA")
    if not shared:
        sys.exit("set GLMTUNE_SHARED_DATA")

    import torch

    from glmtune.inference.engine import Engine
    from glmtune.inference.settings import GenerationSettings

    work = Path(args.work).resolve()
    thudm, _ = build_models(work)
    train, _, _ = prepare_data(work, Path(shared) / "alpaca_zh_part0.json", 2000, 100)
    convs = [json.loads(x)["messages"][:-1] for x in train.read_text(encoding="utf-8").splitlines()[:args.prompts]]
    engine = Engine.load(thudm, family="chatglm3", dtype="float32", device="cpu")
    engine.stop_ids = [10**9]  # unreachable: every reply is exactly --new-tokens long
    settings = GenerationSettings(max_new_tokens=args.new_tokens, temperature=0)
    engine.generate(convs[:1], settings, batch_size=1)  # warm-up
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.prompts} prompts, "
          f"{args.new_tokens} new tokens each, greedy")
    print("| batch size | generated tokens | best wall | tokens/s | all runs (s) | CPU s (best run) | load avg (mean, max) |")
    print("|---|---|---|---|---|---|---|")
    for bs in args.batch_sizes:
        walls, cpus, tokens = [], [], 0
        with LoadSampler() as load:
            for _ in range(args.repeats):
                start, cpu = time.perf_counter(), time.process_time()
                out = engine.generate(convs, settings, batch_size=bs)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
                tokens = sum(c.completion_tokens for c in out)
        best = min(range(len(walls)), key=walls.__getitem__)
        print(f"| {bs} | {tokens} | {walls[best]:.2f} s | {tokens / walls[best]:.1f} "
              f"| {', '.join(f'{w:.2f}' for w in walls)} | {cpus[best]:.2f} | {load.summary()} |", flush=True)


if __name__ == "__main__":
    main()
