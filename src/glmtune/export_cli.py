"""``glmtune export --model BASE [--adapter LORA] --to hf|chatglm OUT``: a standalone checkpoint.

With ``--adapter`` the LoRA update is merged into the base weights first (a QLoRA adapter merges onto
the base loaded unquantised in ``--dtype``); a P-Tuning prefix cannot become plain weights. The
writers live in ``glmtune.models.export`` (ChatGLM-6B's in ``export_v1``); merging needs peft, so the
command sits outside models/.
``--adapter-layout chatglm`` writes only the LoRA, on THUDM's module names
(``glmtune.methods.thudm_lora_export``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.models.export import SHARD_SIZE, _refuse_adapter, _stored_dtype, export_chatglm, export_hf


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glmtune export", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder (ChatGLM-6B, ChatGLM2/3; THUDM or exported layout)")
    p.add_argument("--adapter", default=None, help="a LoRA (or QLoRA) adapter trained on --model: merged in")
    p.add_argument("--to", choices=("hf", "chatglm"), help="layout to write (required unless --adapter-layout)")
    p.add_argument("--adapter-layout", choices=("chatglm",), default=None,
                   help="write ONLY --adapter, on THUDM's module names (a peft folder for THUDM's model or vLLM)")
    p.add_argument("out", help="output folder (replaced atomically)")
    p.add_argument("--shard-size", default="2GB", help="largest shard, e.g. 2GB, 500MB (default 2GB)")
    p.add_argument("--dtype", default=None, help="float32 | float16 | bfloat16 (default: the checkpoint's)")
    p.add_argument("--family", choices=("chatglm2", "chatglm3"), help="when the folder's files cannot tell")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder glmtune did not write")
    return p


def merged_model(base: Path, adapter: Path, dtype: str | None, family: str | None) -> tuple[object, str]:
    """(base + LoRA merged into plain weights, a note saying what was merged)."""
    from glmtune.api import load_model
    from glmtune.methods.adapters import adapter_kind, merge_adapter
    from glmtune.models.adapter_files import read_adapter_info

    kind = adapter_kind(adapter)
    if kind != "lora":
        raise GlmtuneError(f"--adapter {adapter} is a P-Tuning v2 prefix: it lives in every layer's attention and "
                           "cannot be merged into plain weights. Serve it as it is (glmtune serve --model BASE "
                           "--adapter NAME=PATH, glmtune chat --adapter) or train a LoRA adapter to export merged")
    dtype = dtype or _stored_dtype(base)
    model = load_model(base, adapter=adapter, dtype=dtype, family=family)
    note = f"merged LoRA {adapter} into a copy of {base}'s weights in {dtype} (the base folder is unchanged)"
    if read_adapter_info(adapter).get("method") == "qlora":
        note += " (a QLoRA adapter: merged onto the base de-quantised, i.e. loaded unquantised, in that dtype)"
    return merge_adapter(model), note


def _writer(src: Path, to: str) -> Any:
    """The export function for ``src``'s family and layout; ChatGLM-6B (v1) has a writer of its own."""
    from glmtune.models.export_v1 import export_chatglm_v1, is_v1_folder

    if not is_v1_folder(src):
        return export_hf if to == "hf" else export_chatglm
    if to == "hf":
        raise GlmtuneError(f"{src} is a ChatGLM-6B (v1) checkpoint: transformers has no v1 architecture (its Glm "
                           "covers ChatGLM2/3 and GLM-4), so there is no --to hf; use --to chatglm (THUDM v1 layout)")
    return export_chatglm_v1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src, out = Path(args.model), Path(args.out)
    if out.resolve() == src.resolve():
        raise GlmtuneError("the output folder must differ from --model")
    if not SHARD_SIZE.fullmatch(args.shard_size.strip()):
        raise GlmtuneError(f"--shard-size {args.shard_size!r}: give a size such as 2GB, 500MB or 5GiB")
    _refuse_adapter(src)
    if args.adapter_layout:  # the adapter alone, renamed; no model weights are written
        from glmtune.methods.thudm_lora_export import export_thudm_lora

        if not args.adapter or args.to:
            raise GlmtuneError("--adapter-layout chatglm writes only the adapter: give --adapter LORA and no --to")
        print(export_thudm_lora(src, Path(args.adapter), out, family=args.family, overwrite=args.overwrite))
        return 0
    if not args.to:
        raise GlmtuneError("give --to hf|chatglm (a whole checkpoint) or --adapter-layout chatglm (the adapter alone)")
    writer = _writer(src, args.to)
    model = None
    if args.adapter:  # refuse a foreign output folder before minutes of loading and merging
        from glmtune.utils.io import claim_output

        claim_output(out, f"export-{args.to}", args.overwrite)
        model, note = merged_model(src, Path(args.adapter), args.dtype, args.family)
        print(note)
    writer(src, out, shard_size=args.shard_size.strip(), dtype=args.dtype, family=args.family,
           overwrite=args.overwrite, model=model)
    print(f"wrote {args.to} checkpoint to {out}")
    return 0
