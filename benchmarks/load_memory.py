"""Peak host memory while ``glmtune.load_model`` reads a sharded THUDM ChatGLM2 checkpoint.

Writes a random ChatGLM2-shaped checkpoint (THUDM names, fused q/k/v, fp16 ``.bin`` or safetensors
shards of about ``--shard-mb``) to a temporary folder, then loads it in a fresh subprocess per load
dtype and reports, next to the model's size in that dtype and the largest shard:
- VmHWM: peak resident set (what ``ru_maxrss`` reports), which also counts the checkpoint's
  memory-mapped file pages the loader touched (clean page cache, reclaimable under pressure);
- peak anonymous memory (RssAnon sampled every 5 ms): the memory the load really allocates.
Both are given above the RSS the child had after its imports, with every weight read once after the
load (a load in the checkpoint's own dtype may leave weights backed by the mmapped file until used).
Run with ``PYTHONPATH`` pointing at another checkout's ``src`` to measure that version of the loader.

    python benchmarks/load_memory.py [--size-gb 1.5] [--shard-mb 500] [--format bin|safetensors]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MB = 1024 * 1024
# ChatGLM2-6B's block with half the width; the layer count sets the checkpoint size
SHAPE = {"hidden_size": 2048, "ffn_hidden_size": 6848, "num_attention_heads": 16, "kv_channels": 128,
         "multi_query_group_num": 2, "padded_vocab_size": 65024}


def thudm_config(layers: int) -> dict[str, Any]:
    return {"_name_or_path": "THUDM/chatglm2-6b", "model_type": "chatglm", "architectures": ["ChatGLMModel"],
            "add_bias_linear": False, "add_qkv_bias": True, "apply_residual_connection_post_layernorm": False,
            "layernorm_epsilon": 1e-5, "multi_query_attention": True, "num_layers": layers, "original_rope": True,
            "post_layer_norm": True, "rmsnorm": True, "seq_length": 32768, "eos_token_id": 2, "pad_token_id": 0,
            "torch_dtype": "float16", "quantization_bit": 0, **SHAPE}


def tensor_shapes(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """THUDM key -> shape, in checkpoint order."""
    h, f, v = SHAPE["hidden_size"], SHAPE["ffn_hidden_size"], SHAPE["padded_vocab_size"]
    qkv = (SHAPE["num_attention_heads"] + 2 * SHAPE["multi_query_group_num"]) * SHAPE["kv_channels"]
    out = [("transformer.embedding.word_embeddings.weight", (v, h)),
           ("transformer.rotary_pos_emb.inv_freq", (SHAPE["kv_channels"] // 4,))]
    for i in range(layers):
        p = f"transformer.encoder.layers.{i}."
        out += [(p + "input_layernorm.weight", (h,)), (p + "self_attention.query_key_value.weight", (qkv, h)),
                (p + "self_attention.query_key_value.bias", (qkv,)), (p + "self_attention.dense.weight", (h, h)),
                (p + "post_attention_layernorm.weight", (h,)), (p + "mlp.dense_h_to_4h.weight", (2 * f, h)),
                (p + "mlp.dense_4h_to_h.weight", (h, f))]
    return out + [("transformer.encoder.final_layernorm.weight", (h,)), ("transformer.output_layer.weight", (v, h))]


def layers_for(size_gb: float) -> int:
    fixed = sum(2 * _numel(s) for _, s in tensor_shapes(0))
    per_layer = sum(2 * _numel(s) for _, s in tensor_shapes(1)) - fixed
    return max(1, round((size_gb * 1024 * MB - fixed) / per_layer))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def write_checkpoint(folder: Path, layers: int, shard_mb: int, fmt: str) -> list[int]:
    """Random fp16 shards (written one at a time); returns the shard sizes in bytes."""
    import torch

    gen = torch.Generator().manual_seed(0)
    shards: list[dict[str, Any]] = [{}]
    for key, shape in tensor_shapes(layers):
        used = sum(_numel(s) * 2 for s in shards[-1].values())
        if used and used + _numel(shape) * 2 > shard_mb * MB:
            shards.append({})
        shards[-1][key] = shape
    weight_map, sizes = {}, []
    for i, spec in enumerate(shards, 1):
        name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin" if fmt == "bin" else \
            f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        state = {k: (torch.randn(s, generator=gen) * 0.02).half() for k, s in spec.items()}
        if fmt == "bin":
            torch.save(state, folder / name)
        else:
            from safetensors.torch import save_file

            save_file(state, str(folder / name), metadata={"format": "pt"})
        sizes.append(sum(t.numel() * 2 for t in state.values()))
        weight_map.update(dict.fromkeys(state, name))
        del state
    index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    (folder / index).write_text(json.dumps({"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(thudm_config(layers), indent=2))
    return sizes


CHILD = r"""
import json, sys, threading, time
from pathlib import Path

def status():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out

import torch, glmtune  # noqa: E401  imports first: their memory is the baseline
from glmtune.models.glm_mapping.loading import load_model
base = status()
peak = {"RssAnon": 0, "RssFile": 0}
done = threading.Event()
def sample():
    while not done.is_set():
        s = status()
        for k in peak:
            peak[k] = max(peak[k], s[k])
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
start = time.time()
model = load_model(sys.argv[1], dtype=sys.argv[2], family="chatglm2")
seconds = time.time() - start
for p in model.parameters():  # weights still backed by the checkpoint's mmap become resident too
    p.detach().reshape(-1)[::512].sum()
done.set(); t.join()
end = status()
size = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"base": base, "end": end, "peak": peak, "model_bytes": size, "seconds": seconds}))
"""


def measure(folder: Path, dtype: str, src: str | None = None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=src) if src else None
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), dtype], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"load failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=1.5, help="checkpoint size on disk (fp16)")
    ap.add_argument("--shard-mb", type=int, default=500)
    ap.add_argument("--format", choices=["bin", "safetensors"], default="bin")
    ap.add_argument("--dtypes", default="fp16,fp32", help="load dtypes, comma separated")
    ap.add_argument("--also-src", help="also measure the glmtune in this src folder (e.g. an older checkout)")
    args = ap.parse_args()
    layers = layers_for(args.size_gb)
    with tempfile.TemporaryDirectory(prefix="glmtune-loadmem-") as tmp:
        sizes = write_checkpoint(Path(tmp), layers, args.shard_mb, args.format)
        print(f"checkpoint: {layers} layers, {len(sizes)} {args.format} shards, {sum(sizes) / MB:.0f} MB "
              f"(largest shard {max(sizes) / MB:.0f} MB)")
        srcs = [None] + ([args.also_src] if args.also_src else [])
        for dtype, src in [(d, s) for d in args.dtypes.split(",") for s in srcs]:
            r = measure(Path(tmp), dtype, src)
            model, shard, base = r["model_bytes"], max(sizes), r["base"]["VmRSS"]
            hwm = r["end"]["VmHWM"] - base
            anon = r["peak"]["RssAnon"] - r["base"]["RssAnon"]
            print(f"[{src or 'this checkout'}] load {dtype}: model {model / MB:.0f} MB, {r['seconds']:.1f} s | above the {base / MB:.0f} MB "
                  f"baseline: peak RSS {hwm / MB:.0f} MB = model + {(hwm - model) / shard:.2f} shard, "
                  f"peak anonymous {anon / MB:.0f} MB = model + {(anon - model) / shard:.2f} shard "
                  f"(file pages at peak {r['peak']['RssFile'] / MB:.0f} MB)")


if __name__ == "__main__":
    main()
