"""``glmtune export``: write a ChatGLM2/3 checkpoint in another layout.

``--to hf``      a standard transformers Glm checkpoint (sharded safetensors, ``model_type: glm``,
                 generation_config, tokenizer files) that plain ``AutoModelForCausalLM`` loads
                 without glmtune; ``config.glmtune`` keeps the family so glmtune still uses the
                 ChatGLM2/3 prompt format for it.
``--to chatglm`` the original THUDM layout (fused ``query_key_value``, ``transformer.*`` names,
                 ``rotary_pos_emb.inv_freq`` re-added, THUDM ``config.json``), for tools expecting it.
Both are written atomically (temp folder, then rename), and both carry a fast ``tokenizer.json`` with
the official chat template and every stop id in generation_config.json (``fast_export``), so plain
``AutoTokenizer`` + ``apply_chat_template`` + ``generate`` reproduce glmtune's chat.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

TOKENIZER_FILES = ("tokenizer.model", "ice_text.model", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.json", "added_tokens.json")


SHARD_SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|B)?", re.IGNORECASE)


def _refuse_adapter(src: Path) -> None:
    """An adapter output folder is not a model: say so and what to do, instead of 'config.json: model_type None'."""
    from glmtune.models.adapter_files import adapter_note

    note = adapter_note(src) if src.is_dir() else None
    if note:
        raise GlmtuneError(f"--model {src} holds {note}, not a model. Export the base model (with --adapter to merge a LoRA), or load both with "
                           f"glmtune.load_model(BASE, adapter={str(src)!r}) to use them together")


def _load(path: Path, dtype: Any, family: str | None = None) -> tuple[Any, str]:
    from glmtune.models.families import detect_family
    from glmtune.models.glm_mapping.loading import load_model

    family = family or detect_family(path)
    if family not in ("chatglm2", "chatglm3"):
        raise GlmtuneError(f"{path} is a {family} checkpoint; export handles ChatGLM2/3 checkpoints")
    return load_model(path, dtype=dtype or _stored_dtype(path), family=family), family


def _family_of(model: Any) -> str | None:
    from glmtune.models.families import model_family

    return model_family(model)


def _stored_dtype(path: Path) -> str:
    from glmtune.models.families import read_folder_configs

    config, _ = read_folder_configs(path)
    return str(config.get("torch_dtype") or config.get("dtype") or "float32")


def _write_tokenizer(src: Path, dst: Path, via_glmtune: bool, family: str | None = None) -> str:
    """Tokenizer files for the export, plus the fast tokenizer (``tokenizer.json``, chat template) and the
    family's stop ids in generation_config.json that plain transformers needs; returns a one-line note."""
    from glmtune.models.tokenization.fast_export import write_fast_files

    note = _copy_tokenizer(src, dst, via_glmtune, family)
    return note if note == NO_TOKENIZER else note + write_fast_files(dst, family)


NO_TOKENIZER = "no tokenizer files to write"


def _copy_tokenizer(src: Path, dst: Path, via_glmtune: bool, family: str | None) -> str:
    """glmtune's own tokenizer files (re-saved, else copied) for the export."""
    if via_glmtune and any((src / n).is_file() for n in ("tokenizer.model", "tokenizer_config.json")):
        from glmtune.models.loading import load_tokenizer

        try:
            load_tokenizer(src, family=family).save_pretrained(str(dst))
            return "tokenizer saved"
        except (GlmtuneError, ImportError, OSError, ValueError) as exc:
            note = f"tokenizer not re-saved ({exc}); copied its files"
    else:
        note = "tokenizer files copied"
    copied = [n for n in TOKENIZER_FILES if (src / n).is_file()]
    for name in copied:
        shutil.copy2(src / name, dst / name)
    return note if copied else NO_TOKENIZER


def export_hf(model_path: str | Path, out: str | Path, shard_size: str = "2GB", dtype: Any = None,
              family: str | None = None, overwrite: bool = False, model: Any = None) -> Path:
    """Write ``model_path`` (ChatGLM2/3) as a transformers Glm checkpoint folder ``out``.

    ``model``: an already loaded (e.g. LoRA-merged) model of ``model_path`` to write instead."""
    from glmtune.utils.io import atomic_dir, claim_output, write_marker

    src = Path(model_path)
    claim_output(out, "export-hf", overwrite)
    if model is None:
        model, family = _load(src, dtype, family)
    if getattr(model, "prefix_encoder", None) is not None:
        raise GlmtuneError("this checkpoint carries a P-Tuning prefix; plain GlmForCausalLM cannot hold it")
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), max_shard_size=shard_size)
        _write_tokenizer(src, tmp, via_glmtune=True, family=family or _family_of(model))
        write_marker(tmp, "export-hf")
    return Path(out)


def export_chatglm(model_path: str | Path, out: str | Path, shard_size: str = "2GB", dtype: Any = None,
                   family: str | None = None, overwrite: bool = False, model: Any = None) -> Path:
    """Write ``model_path`` (THUDM or exported Glm layout) back in the THUDM ChatGLM2/3 layout."""
    from glmtune.models.glm_mapping.config_map import to_chatglm_config
    from glmtune.models.glm_mapping.state_map import to_chatglm
    from glmtune.utils.io import atomic_dir, claim_output, write_marker

    src = Path(model_path)
    claim_output(out, "export-chatglm", overwrite)
    if model is None:
        model, family = _load(src, dtype, family)
    family = family or _family_of(model)
    if getattr(model, "prefix_encoder", None) is not None:
        raise GlmtuneError("this checkpoint carries a P-Tuning prefix; save it with save_ptuning instead")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    thudm = to_chatglm(state, model.config)
    del state
    dtype_name = str(next(iter(thudm.values())).dtype).replace("torch.", "")
    cfg = to_chatglm_config(model.config, dtype_name)
    gen = {"eos_token_id": cfg.get("eos_token_id", 2), "pad_token_id": cfg.get("pad_token_id", 0)}
    with atomic_dir(out) as tmp:
        write_thudm_files(tmp, thudm, cfg, gen, shard_size)
        _write_tokenizer(src, tmp, via_glmtune=False, family=family)
        write_marker(tmp, "export-chatglm")
    return Path(out)


def write_thudm_files(folder: Path, state: dict[str, Any], cfg: dict[str, Any], gen: dict[str, Any],
                      shard_size: str) -> None:
    """Safetensors shards (+ index when sharded), config.json and generation_config.json of a THUDM folder."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    split = split_torch_state_dict_into_shards(state, filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=shard_size)
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: state[k] for k in keys}, str(folder / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": split.tensor_to_filename}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
