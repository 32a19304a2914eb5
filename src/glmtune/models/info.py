"""``glmtune info PATH``: what a checkpoint folder is, computed cheaply (no weights loaded).

Sizes come from the checkpoint headers (safetensors) or memory-mapped ``.bin`` files; "loadable"
is decided from the config and the weight names/shapes (for ChatGLM2/3: the full GLM mapping run
on shapes only), so it works for 6B folders in a second.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

_SPECIAL_PROBES = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<sop>", "<eop>",
                   "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")


def parameter_count(shapes: dict[str, tuple[tuple[int, ...], str]], config: dict[str, Any]) -> int:
    """Parameters in the checkpoint (rotary buffers excluded, a tied output layer counted once)."""
    keys = [k for k in shapes if not k.endswith("inv_freq")]
    tied = config.get("tie_word_embeddings", True) is not False
    emb = [k for k in keys if "word_embeddings" in k or k.endswith("embed_tokens.weight")]
    if tied and "lm_head.weight" in keys and emb and shapes[emb[0]][0] == shapes["lm_head.weight"][0]:
        keys.remove("lm_head.weight")
    total = 0
    for key in keys:
        n = 1
        for dim in shapes[key][0]:
            n *= dim
        total += n
    return total


def _check_chatglm(config: dict[str, Any], family: str, shapes: dict[str, Any]) -> None:
    import torch
    from accelerate import init_empty_weights
    from transformers import GlmForCausalLM

    from glmtune.models.glm_mapping import config_map, state_map

    glm_config = config_map.to_glm_config(config, family)
    with init_empty_weights():
        model = GlmForCausalLM(glm_config)
    wanted = {k: tuple(p.shape) for k, p in model.named_parameters()}
    for key, (shape, _) in shapes.items():
        if key.startswith("transformer.prefix_encoder."):
            continue
        for name, tensor in state_map.to_glm(key, torch.empty(shape, device="meta"), glm_config):
            if wanted.pop(name, None) != tuple(tensor.shape):
                raise GlmtuneError(f"{key}: shape {shape} does not fit the config")
    if wanted:
        raise GlmtuneError(f"the checkpoint lacks {sorted(wanted)[:3]}")


def _check_v1(config: dict[str, Any], shapes: dict[str, Any]) -> None:
    """The ChatGLM-6B weights a v1 config implies, against the checkpoint's names and shapes."""
    import torch

    from glmtune.models.chatglm_v1.configuration import config_from_thudm
    from glmtune.models.chatglm_v1.modeling import ChatGLMV1ForCausalLM

    v1_config = config_from_thudm(config)
    with torch.device("meta"):
        model = ChatGLMV1ForCausalLM(v1_config)
    prefix = "transformer.prefix_encoder."  # optional: a fresh prefix is initialised when absent
    wanted = {k: tuple(p.shape) for k, p in model.named_parameters() if not k.startswith(prefix)}
    if v1_config.tie_word_embeddings:
        wanted.pop("lm_head.weight", None)
    for key, (shape, _) in shapes.items():
        if key.endswith("inv_freq") or key.startswith(prefix) or (
                key == "lm_head.weight" and v1_config.tie_word_embeddings):
            continue
        if wanted.pop(key, None) != tuple(shape):
            raise GlmtuneError(f"{key}: shape {tuple(shape)} does not fit the config")
    if wanted:
        raise GlmtuneError(f"the checkpoint lacks {sorted(wanted)[:3]}")


def loadable(path: Path, family: str, config: dict[str, Any], shapes: dict[str, Any] | None) -> str:
    """'yes' or 'no (reason)'."""
    from glmtune.models.families import get_family

    try:
        if shapes is None:
            raise GlmtuneError("no readable weights")
        target = get_family(path, family).model_loader
        module = target.split(":")[0]
        if family in ("chatglm2", "chatglm3") and config.get("model_type") == "chatglm":
            _check_chatglm(config, family, shapes)
        elif family == "chatglm":
            _check_v1(config, shapes)
        else:
            importlib.import_module(module)
            from transformers import AutoConfig

            AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    except ImportError as exc:
        return f"no (the {family} loader is not available: {exc})"
    except (GlmtuneError, ValueError, KeyError, OSError) as exc:
        return f"no ({exc})"
    return "yes"


def tokenizer_lines(path: Path, family: str) -> list[str]:
    """Tokenizer vocab and special ids, or why they are unavailable."""
    if not any((path / n).is_file() for n in ("tokenizer.model", "ice_text.model", "tokenizer.json",
                                                "tokenizer_config.json")):
        return ["tokenizer: none (no tokenizer files)"]
    try:
        from glmtune.models.loading import load_tokenizer

        tok = load_tokenizer(path, family=family)
    except Exception as exc:  # noqa: BLE001 - report any tokenizer failure as a line, not a crash
        return [f"tokenizer: cannot load ({type(exc).__name__}: {exc})"]
    ids = {name: getattr(tok, f"{name}_token_id", None) for name in ("bos", "eos", "pad", "unk")}
    extra: dict[str, int] = {}
    unk = ids.get("unk")
    for text in _SPECIAL_PROBES:
        try:
            value = tok.convert_tokens_to_ids(text)
        except (KeyError, ValueError, TypeError, IndexError):
            continue
        if isinstance(value, int) and value != unk and value is not None:
            extra[text] = value
    special = ", ".join(f"{k}={v}" for k, v in {**ids, **extra}.items() if v is not None)
    size = getattr(tok, "vocab_size", None)
    return [f"tokenizer: {type(tok).__name__}, vocab {size} (len {len(tok)})", f"special token ids: {special}"]


def describe(path: str | Path, family: str | None = None) -> dict[str, Any]:
    """Everything ``glmtune info`` prints, as a dict."""
    from glmtune.models.adapter_files import adapter_note, read_adapter_info
    from glmtune.models.checkpoint_io import checkpoint_shapes
    from glmtune.models.families import FAMILIES, detect_family, read_folder_configs

    folder = Path(path)
    config, _ = read_folder_configs(folder)
    adapter = adapter_note(folder)
    try:
        family = family or detect_family(folder)
    except GlmtuneError:
        family = read_adapter_info(folder).get("family") if adapter else None
        if family not in FAMILIES:
            raise
    try:
        shapes: dict[str, Any] | None = checkpoint_shapes(folder)
        dtypes = sorted({d for k, (_, d) in shapes.items() if not k.endswith("inv_freq")})
        params: int | None = parameter_count(shapes, config)
    except GlmtuneError as exc:
        shapes, dtypes, params = None, [f"unknown ({exc})"], None
    vocab = config.get("padded_vocab_size") or config.get("vocab_size")
    context = config.get("seq_length") or config.get("max_sequence_length") or config.get("max_position_embeddings")
    return {
        "path": str(folder), "family": family, "description": FAMILIES.get(family).description,
        "model_type": config.get("model_type"), "parameters": params, "dtype": dtypes,
        "config_dtype": config.get("torch_dtype") or config.get("dtype"), "vocab_size": vocab,
        "config_special_ids": {k: config.get(f"{k}_token_id") for k in ("bos", "eos", "pad")
                               if config.get(f"{k}_token_id") is not None},
        "context_length": context, "adapter": adapter,
        "loadable": (f"no (it holds {adapter}: glmtune.load_model(BASE, adapter={str(folder)!r}))" if adapter
                     else loadable(folder, family, config, shapes)),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="glmtune info", description="describe a checkpoint folder")
    parser.add_argument("path", help="checkpoint folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object (no tokenizer lines)")
    parser.add_argument("--family", help="model family when its files cannot tell (chatglm, chatglm2, chatglm3, glm4, hf)")
    args = parser.parse_args(argv)
    info = describe(args.path, args.family)
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return 0
    params = f"{info['parameters']:,}" if info["parameters"] is not None else "unknown"
    lines = [
        f"path: {info['path']}",
        f"family: {info['family']} ({info['description']})",
        *([f"adapter: {info['adapter']}"] if info["adapter"] else []),
        f"model_type: {info['model_type']}",
        f"parameters: {params}",
        f"dtype: {', '.join(info['dtype'])} (config: {info['config_dtype']})",
        f"vocab size (model): {info['vocab_size']}",
        f"config special ids: {', '.join(f'{k}={v}' for k, v in info['config_special_ids'].items()) or 'none'}",
        *tokenizer_lines(Path(args.path), info["family"]),
        f"context length: {info['context_length']}",
        f"loadable: {info['loadable']}",
    ]
    print("\n".join(lines))
    return 0
