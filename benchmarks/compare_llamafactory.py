"""glmtune vs LLaMA-Factory 0.9.5 vs a pad-to-max Trainer+peft script, on the same tiny ChatGLM3 model.

Usage (repo root, glmtune's venv active, GLMTUNE_REFERENCE and GLMTUNE_SHARED_DATA set):
    python benchmarks/compare_llamafactory.py                       # check + training + tokenization
    python benchmarks/compare_llamafactory.py --steps 3 --repeats 1 --rows 200 --eval-rows 20 \\
        --tokenize-rows 500 --check-rows 50                         # smoke test
    python benchmarks/compare_llamafactory.py --only check|train|tokenize

What it does:
1. LLaMA-Factory gets its own venv (``--lf-venv``, default .venv-llamafactory, git-ignored): torch pinned
   to glmtune's version first (CPU wheel), then llamafactory==0.9.5; reused when present.
2. One tiny ChatGLM3-architecture model (4 layers, hidden 256, kv_channels 64, the real 65,024-id
   tokenizer, random weights): THUDM layout for glmtune, ``glmtune export --to hf`` for the others.
   ``--rows`` alpaca-zh rows to train, the next ``--eval-rows`` held out.
3. Check: LLaMA-Factory's own preprocessing (``template: chatglm3``) of ``--check-rows`` rows vs
   glmtune's encoding, ids and labels compared; logits of the HF export in LLaMA-Factory's transformers
   vs glmtune's model.
4. Training, the tools alternating within each repeat: glmtune defaults (length-grouped batches),
   glmtune ``group_by_length=false`` (random batches, the same ones LLaMA-Factory draws: checked by
   comparing each step's token count), LLaMA-Factory defaults (which include gradient checkpointing),
   LLaMA-Factory with ``disable_gradient_checkpointing`` (so padding and loss work are all that differ
   from glmtune's random-batch run), and the pad-to-max script (``--pad-steps``); the last two only in the
   first ``--extra-repeats`` repeats. Shared: LoRA r=8 alpha 16 dropout 0.05 on q/k/v, batch, cutoff, steps,
   lr 2e-4 cosine, no warm-up, fp32, seed 42. Eval loss of every adapter is computed afterwards by one
   function (token-level mean CE on the held-out rows).
5. Tokenization: ``--tokenize-rows`` alpaca-zh rows, whole commands (process start to exit):
   ``glmtune convert`` + ``glmtune tokenize`` vs LLaMA-Factory's loader on the raw alpaca JSON (what
   ``llamafactory-cli train`` runs before loading the model, saved with ``tokenized_path``).

Timings depend on what else runs: every row carries the 1-minute load average during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import LoadSampler, build_models, eval_loss, prepare_data  # noqa: E402

LF_VERSION = "0.9.5"
TARGETS = ["q_proj", "k_proj", "v_proj"]
TOOLS = {
    "glmtune": "glmtune (defaults: grouped)",
    "glmtune-random": "glmtune group_by_length=false",
    "llamafactory": f"LLaMA-Factory {LF_VERSION} (defaults)",
    "llamafactory-nogc": f"LLaMA-Factory {LF_VERSION} disable_gradient_checkpointing",
    "pad": "Trainer+peft, pad to cutoff",
}


def log(msg: str) -> None:
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {msg}", flush=True)


# --- LLaMA-Factory's venv ---------------------------------------------------------------------------
def ensure_lf_venv(venv: Path) -> Path:
    """LLaMA-Factory's own venv: torch == glmtune's (CPU) first, then llamafactory; reused when ready."""
    import torch

    python, ready = venv / "bin" / "python", venv / ".bench-ready"
    if ready.is_file():
        return python
    torch_version = torch.__version__.split("+")[0]
    log(f"creating {venv} (torch {torch_version}, llamafactory {LF_VERSION}); takes minutes")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"torch=={torch_version}"], check=True)
    pins = venv / "bench-constraints.txt"  # keeps pip from swapping in a CUDA torch for torchvision's sake
    pins.write_text(f"torch=={torch_version}\n", encoding="utf-8")
    subprocess.run([*pip, "-c", str(pins), f"llamafactory=={LF_VERSION}"], check=True)
    # torchvision/torchaudio from the index are CUDA builds that fail to load against CPU torch and are
    # only used for image/audio inputs; _bench_worker.stub_torchaudio covers LLaMA-Factory's import.
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "torchvision", "torchaudio"], check=True)
    ready.write_text(f"llamafactory=={LF_VERSION} torch=={torch_version}\n", encoding="utf-8")
    return python


def lf_env(work: Path) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(work / "hf-home"),
                DISABLE_VERSION_CHECK="1", TOKENIZERS_PARALLELISM="false", WANDB_DISABLED="true",
                PYTHONPATH=str(HERE))  # fmt: skip


def versions(python: Path, names: list[str]) -> str:
    code = ("import importlib.metadata as m, sys\n"
            "print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))")
    return subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True).stdout.strip()


# --- one worker process --------------------------------------------------------------------------------
def run_worker(python: Path, what: str, spec: dict[str, Any], work: Path, name: str,
               env: dict[str, str] | None = None) -> tuple[dict[str, Any] | list[Any], str, float]:
    """(worker's JSON result, load average summary, wall seconds); a failure prints the log's tail and exits."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    spec = dict(spec, result=str(work / "results" / f"{name}.json"))
    Path(spec["result"]).parent.mkdir(parents=True, exist_ok=True)
    Path(spec["result"]).unlink(missing_ok=True)
    spec_path = work / "results" / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    logfile = work / "logs" / f"{name}.log"
    start = time.perf_counter()
    with LoadSampler() as load, logfile.open("w", encoding="utf-8") as fh:
        proc = subprocess.run([str(python), str(HERE / "_bench_worker.py"), what, str(spec_path)],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(work))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = logfile.read_text(encoding="utf-8", errors="replace")[-4000:]
        sys.exit(f"{name} failed (exit {proc.returncode}); log {logfile}:\n{tail}")
    return json.loads(Path(spec["result"]).read_text(encoding="utf-8")), load.summary(), wall


# --- 3. encoding / logits check ---------------------------------------------------------------------------
def check(args: argparse.Namespace, lf_python: Path, base: dict[str, Any], work: Path) -> list[str]:
    """Lines saying whether LLaMA-Factory's encoding and model equal glmtune's."""
    import torch

    import glmtune
    from glmtune.data.encode import encode_all
    from glmtune.data.templates import EncodeOptions

    spec = dict(base, rows=args.check_rows, output_dir=str(work / "runs" / "lf-encode"))
    lf_rows, _, _ = run_worker(lf_python, "lf-encode", spec, work, "check-lf-encode", lf_env(work))
    tok = glmtune.load_tokenizer(base["thudm_model"])
    msgs = [json.loads(x)["messages"] for x in Path(base["train"]).read_text(encoding="utf-8").splitlines() if x]
    opts = EncodeOptions(cutoff_len=args.cutoff)
    ours = [e for m in msgs[:args.check_rows] for e in encode_all(tok, m, "chatglm3", options=opts)]
    lines = [f"encoding check: {len(ours)} glmtune examples, {len(lf_rows)} LLaMA-Factory examples "
             f"(first {args.check_rows} train rows, template chatglm3, cutoff {args.cutoff})"]
    same_ids = sum(a["input_ids"] == b["input_ids"] for a, b in zip(ours, lf_rows))
    same_labels = sum(a["labels"] == b["labels"] for a, b in zip(ours, lf_rows))
    lines.append(f"  input_ids equal: {same_ids}/{min(len(ours), len(lf_rows))}; "
                 f"labels equal: {same_labels}/{min(len(ours), len(lf_rows))}")
    shown = 0
    for i, (a, b) in enumerate(zip(ours, lf_rows)):
        if (a["input_ids"] != b["input_ids"] or a["labels"] != b["labels"]) and shown < 3:
            shown += 1
            k = next((j for j, (x, y) in enumerate(zip(a["input_ids"], b["input_ids"])) if x != y),
                     min(len(a["input_ids"]), len(b["input_ids"])))
            lines.append(f"  row {i}: glmtune {len(a['input_ids'])} ids ({sum(t != -100 for t in a['labels'])} "
                         f"learned), LLaMA-Factory {len(b['input_ids'])} ids "
                         f"({sum(t != -100 for t in b['labels'])} learned); first id difference at {k}"
                         f"{'; glmtune keeps eos at the end' if a['input_ids'][-1] == 2 != b['input_ids'][-1] else ''}")
    probe_ids = ours[0]["input_ids"]
    spec = dict(base, ids=probe_ids)
    lf_logits, _, _ = run_worker(lf_python, "lf-logits", spec, work, "check-lf-logits", lf_env(work))
    model = glmtune.load_model(base["thudm_model"], family="chatglm3", dtype="float32").eval()
    with torch.no_grad():
        mine = model(input_ids=torch.tensor([probe_ids])).logits[0].float()
    diff = float((mine - torch.tensor(lf_logits)).abs().max())
    lines.append(f"logits check: HF export in LLaMA-Factory's transformers vs glmtune on the THUDM folder, "
                 f"{len(probe_ids)} positions: max |diff| {diff:.2e}")
    return lines


# --- 4. training -----------------------------------------------------------------------------------
def train_all(args: argparse.Namespace, lf_python: Path, base: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    rows = []
    for rep in range(1, args.repeats + 1):
        order = ["glmtune", "llamafactory", "glmtune-random"]
        if rep <= args.extra_repeats:
            order += (["llamafactory-nogc"] if args.lf_no_gc else []) + ["pad"]
        for tool in order:
            name = f"{tool}-r{rep}"
            out = work / "runs" / name
            shutil.rmtree(out, ignore_errors=True)
            spec = dict(base, output_dir=str(out), group_by_length=tool != "glmtune-random")
            if tool == "pad":
                spec["steps"] = min(args.pad_steps, args.steps)
            log(f"repeat {rep}: {TOOLS[tool]} ...")
            if tool.startswith("llamafactory"):
                spec["lf_extra"] = {"disable_gradient_checkpointing": True} if tool == "llamafactory-nogc" else {}
                result, load, wall = run_worker(lf_python, "llamafactory", spec, work, name, lf_env(work))
            else:
                what = "pad" if tool == "pad" else "glmtune"
                result, load, wall = run_worker(Path(sys.executable), what, spec, work, name)
            assert isinstance(result, dict)
            start = time.perf_counter()
            result["eval_loss"] = eval_loss(Path(base["hf_model"]), out, Path(base["eval"]), args.cutoff)
            rows.append(dict(result, tool=tool, repeat=rep, load=load, process_wall_s=wall))
            log(f"  {result['s_per_step']:.3f} s/step ({result['cpu_s_per_step']:.3f} CPU s), "
                f"{result['real_tokens_per_s']:.0f} tokens/s, process {wall:.0f} s, load {load}; "
                f"eval {time.perf_counter() - start:.0f} s")
    return rows


def train_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| tool | repeat | steps | s/step | CPU s/step | effective tokens/s | vs glmtune | pad share | peak RSS "
             "| final train loss | eval loss | load avg (mean, max) | process wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = {r["repeat"]: r["real_tokens_per_s"] for r in rows if r["tool"] == "glmtune"}
    for r in rows:
        ratio = r["real_tokens_per_s"] / ref[r["repeat"]] if ref.get(r["repeat"]) else float("nan")
        lines.append(f"| {TOOLS[r['tool']]} | {r['repeat']} | {r['steps']} | {r['s_per_step']:.3f} | {r['cpu_s_per_step']:.3f} "
                     f"| {r['real_tokens_per_s']:.0f} "
                     f"| {ratio:.2f}x | {100 * r['pad_share']:.1f}% | {r['peak_rss_mb']:.0f} MB "
                     f"| {r['final_loss']:.3f} | {r['eval_loss']:.3f} | {r['load']} | {r['process_wall_s']:.0f} s |")
    params = {TOOLS[r["tool"]]: r["trainable_params"] for r in rows if r["repeat"] == 1}
    lines.append("\ntrainable parameters: " + "; ".join(f"{k} {v:,}" for k, v in params.items()))
    for rep in sorted({r["repeat"] for r in rows}):
        by = {r["tool"]: r for r in rows if r["repeat"] == rep}
        g = by.get("glmtune-random")
        for key in ("llamafactory", "llamafactory-nogc"):
            lf = by.get(key)
            if not (g and lf):
                continue
            a, b = g["batch_real_tokens"], lf["batch_real_tokens"]
            equal = sum(x == y for x, y in zip(a, b))
            lines.append(f"\nrepeat {rep}, same random batches, glmtune group_by_length=false vs {TOOLS[key]}: "
                         f"{equal}/{max(len(a), len(b))} steps with equal non-padding token counts; glmtune "
                         f"{g['real_tokens_per_s'] / lf['real_tokens_per_s']:.2f}x the tokens/s "
                         f"({g['cpu_s_per_step'] / lf['cpu_s_per_step']:.2f}x the CPU s/step), "
                         f"pad share {100 * g['pad_share']:.1f}% vs {100 * lf['pad_share']:.1f}%")
    return lines


# --- 5. tokenization ---------------------------------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str] | None, logfile: Path) -> tuple[float, str]:
    start = time.perf_counter()
    with LoadSampler() as load, logfile.open("a", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed; log {logfile}:\n{logfile.read_text(errors='replace')[-3000:]}")
    return time.perf_counter() - start, load.summary()


def tokenize_all(args: argparse.Namespace, lf_python: Path, base: dict[str, Any], work: Path) -> list[str]:
    source = Path(args.source)
    if args.tokenize_rows:  # the first N rows as their own file
        rows = json.loads(source.read_text(encoding="utf-8"))[:args.tokenize_rows]
        source = work / f"alpaca-{len(rows)}.json"
        source.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    n_raw = len(json.loads(source.read_text(encoding="utf-8")))
    lf_dir = work / "lf-tokenize-data"
    lf_dir.mkdir(parents=True, exist_ok=True)
    (lf_dir / "dataset_info.json").write_text(json.dumps({"bench_alpaca": {"file_name": str(source)}}), "utf-8")
    glmtune_cli = [sys.executable, "-m", "glmtune"]
    lines = ["| tool | repeat | rows in | examples out | wall (whole commands) | rows/s | data step in-process "
             "| load avg (mean, max) |",
             "|---|---|---|---|---|---|---|---|"]
    (work / "logs").mkdir(parents=True, exist_ok=True)
    for rep in range(1, args.tokenize_repeats + 1):
        tmp = work / "tokenize" / f"r{rep}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        logfile = work / "logs" / f"tokenize-glmtune-r{rep}.log"
        logfile.unlink(missing_ok=True)
        start = time.perf_counter()
        with LoadSampler() as load:
            timed([*glmtune_cli, "convert", str(source), "-o", str(tmp / "data.jsonl"), "--on-error", "skip"],
                  None, logfile)
            timed([*glmtune_cli, "tokenize", "--model", base["thudm_model"], "--data", str(tmp / "data.jsonl"),
                   "-o", str(tmp / "glmtune"), "--cutoff-len", str(args.cutoff), "--num-proc", str(args.num_proc),
                   "--no-progress"], None, logfile)
        wall = time.perf_counter() - start
        meta = json.loads((tmp / "glmtune" / "glmtune_tokenized.json").read_text(encoding="utf-8"))
        n_out = meta["report"]["examples"]
        lines.append(f"| glmtune convert + tokenize (num_proc {args.num_proc}) | {rep} | {n_raw} | {n_out} "
                     f"| {wall:.1f} s | {n_raw / wall:.0f} | {meta['report']['seconds']:.1f} s (tokenize: encode + save) "
                     f"| {load.summary()} |")
        log(lines[-1])
        spec = dict(base, output_dir=str(tmp / "lf-out"), tokenized_path=str(tmp / "lf"), num_proc=args.num_proc,
                    lf_dataset_dir=str(lf_dir), dataset="bench_alpaca")
        env = dict(lf_env(work), HF_DATASETS_CACHE=str(tmp / "hf-datasets"))  # no warm Arrow cache
        result, load_s, wall = run_worker(lf_python, "lf-tokenize", spec, work, f"tokenize-lf-r{rep}", env)
        assert isinstance(result, dict)
        lines.append(f"| LLaMA-Factory {LF_VERSION} loader (preprocessing_num_workers {args.num_proc}) | {rep} "
                     f"| {n_raw} | {result['examples']} | {wall:.1f} s | {n_raw / wall:.0f} "
                     f"| {result['seconds']:.1f} s (get_dataset: read + convert + encode + save) | {load_s} |")
        log(lines[-1])
    return lines


# --- main ---------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("check", "train", "tokenize"), action="append",
                    help="run only these parts (repeatable; default: all three)")
    ap.add_argument("--work", default="runs/compare_llamafactory", help="models, data, runs, logs (git-ignored)")
    ap.add_argument("--lf-venv", default=".venv-llamafactory")
    ap.add_argument("--source", default=None, help="alpaca JSON (default $GLMTUNE_SHARED_DATA/alpaca_zh_part0.json)")
    ap.add_argument("--rows", type=int, default=2000, help="training rows")
    ap.add_argument("--eval-rows", type=int, default=100, help="held-out rows for the eval loss")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cutoff", type=int, default=512)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of glmtune / LLaMA-Factory / glmtune random")
    ap.add_argument("--extra-repeats", type=int, default=1,
                    help="rounds that also run LLaMA-Factory without gradient checkpointing and the pad-to-max script")
    ap.add_argument("--pad-steps", type=int, default=20,
                    help="steps of the pad-to-max script (slowest; same batches and losses as the random-batch runs)")
    ap.add_argument("--no-lf-no-gc", dest="lf_no_gc", action="store_false",
                    help="skip the LLaMA-Factory run without its default gradient checkpointing")
    ap.add_argument("--check-rows", type=int, default=2000, help="rows whose encodings are compared")
    ap.add_argument("--tokenize-rows", type=int, default=10000, help="0 = the whole source file")
    ap.add_argument("--tokenize-repeats", type=int, default=2)
    ap.add_argument("--num-proc", type=int, default=2, help="tokenizing processes, both tools")
    args = ap.parse_args()
    parts = args.only or ["check", "train", "tokenize"]
    if args.source is None:
        shared = os.environ.get("GLMTUNE_SHARED_DATA")
        if not shared:
            sys.exit("set GLMTUNE_SHARED_DATA or pass --source")
        args.source = str(Path(shared) / "alpaca_zh_part0.json")

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    lf_python = ensure_lf_venv(Path(args.lf_venv).resolve())
    thudm, hf = build_models(work)
    train, dev, lf_data = prepare_data(work, Path(args.source), args.rows, args.eval_rows)
    base = {"thudm_model": str(thudm), "hf_model": str(hf), "lf_model": str(hf), "train": str(train),
            "eval": str(dev), "lf_dataset_dir": str(lf_data), "lora_r": args.lora_r, "lora_targets": TARGETS,
            "cutoff": args.cutoff, "batch": args.batch, "lr": 2e-4, "steps": args.steps, "seed": 42}
    out: list[str] = [
        f"date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} cores, "
        f"no GPU; python {platform.python_version()}",
        f"glmtune venv: {versions(Path(sys.executable), ['glmtune', 'torch', 'transformers', 'peft'])}",
        f"LLaMA-Factory venv: {versions(lf_python, ['llamafactory', 'torch', 'transformers', 'peft'])}",
        f"settings: {args.rows} train rows, {args.eval_rows} eval rows, {args.steps} steps, batch {args.batch}, "
        f"cutoff {args.cutoff}, LoRA r={args.lora_r} alpha={2 * args.lora_r} dropout 0.05 on {','.join(TARGETS)}, "
        "lr 2e-4 cosine, fp32",
    ]
    if "check" in parts:
        log("checking encodings and logits ...")
        out += check(args, lf_python, base, work)
    if "train" in parts:
        out += ["", *train_table(train_all(args, lf_python, base, work))]
    if "tokenize" in parts:
        out += ["", *tokenize_all(args, lf_python, base, work)]
    out.append(f"\ntotal wall {time.perf_counter() - began:.0f} s")
    text = "\n".join(out)
    (work / "report.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
