"""The built-in tiny ChatGLM2 base (``model: builtin:tiny-chatglm2``) for the offline quickstart and tests.

It is random and tiny: a SentencePiece tokenizer trained on glmtune's bundled example texts plus a
2-layer ChatGLM2-architecture model with random weights, written as a THUDM-layout folder
(``config.json`` with ``model_type: chatglm``, ``tokenizer.model``, THUDM weight names in
``model.safetensors``). It therefore goes through exactly the same loading path as a real
ChatGLM2-6B folder. It is built once and cached under ``$GLMTUNE_CACHE`` (default
``~/.cache/glmtune``) in a folder named after a hash of its inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.utils.io import atomic_dir

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("tiny-chatglm2",)
FORMAT_VERSION = 2  # bump when the layout or the architecture below changes
N_SPECIAL = 5  # [MASK] [gMASK] [sMASK] sop eop, appended after the SentencePiece pieces

ARCH: dict[str, Any] = {
    "hidden_size": 128,
    "num_layers": 2,
    "num_attention_heads": 4,
    "kv_channels": 32,
    "multi_query_group_num": 2,
    "ffn_hidden_size": 344,
    "seq_length": 512,
}


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def example_data_dir() -> Path:
    """The bundled ``examples/data`` (source checkout) the tokenizer is trained on."""
    env = os.environ.get("GLMTUNE_EXAMPLES")
    path = Path(env) if env else repo_root() / "examples" / "data"
    if not path.is_dir():
        raise GlmtuneError(f"bundled example data not found at {path}; set GLMTUNE_EXAMPLES to examples/data")
    return path


def example_texts(data_dir: Path | None = None) -> list[str]:
    """Every string in the bundled example JSON files, in a fixed order."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if node.strip():
                texts.append(node)
        elif isinstance(node, dict):
            for key in sorted(node):
                walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted((data_dir or example_data_dir()).glob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return texts


def train_sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    """A BPE SentencePiece model with ``<unk>``=0 ``<s>``=1 ``</s>``=2 and byte fallback (any text encodes)."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        max_sentencepiece_length=4,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )  # fmt: skip
    return buf.getvalue()


def _thudm_config(sp_size: int) -> dict[str, Any]:
    padded = -(-(sp_size + N_SPECIAL) // 64) * 64
    return {
        "_name_or_path": "glmtune/tiny-chatglm2",
        "model_type": "chatglm",
        "architectures": ["ChatGLMModel"],
        "add_bias_linear": False,
        "add_qkv_bias": True,
        "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False,
        "attention_dropout": 0.0,
        "attention_softmax_in_fp32": True,
        "bias_dropout_fusion": True,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "fp32_residual_connection": False,
        "hidden_dropout": 0.0,
        "layernorm_epsilon": 1e-05,
        "multi_query_attention": True,
        "original_rope": True,
        "padded_vocab_size": padded,
        "vocab_size": padded,
        "post_layer_norm": True,
        "pre_seq_len": None,
        "prefix_projection": False,
        "quantization_bit": 0,
        "rmsnorm": True,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        **ARCH,
    }


def random_thudm_weights(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Random ChatGLM2 weights under THUDM's parameter names (normal(0, 0.02), norms at 1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    h, kv, ffn = config["hidden_size"], config["kv_channels"], config["ffn_hidden_size"]
    qkv = config["num_attention_heads"] * kv + 2 * config["multi_query_group_num"] * kv
    vocab = config["padded_vocab_size"]

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.02

    rot = kv // 2
    sd = {
        "transformer.embedding.word_embeddings.weight": rand(vocab, h),
        "transformer.rotary_pos_emb.inv_freq": 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot)),
    }
    for i in range(config["num_layers"]):
        p = f"transformer.encoder.layers.{i}."
        sd[p + "input_layernorm.weight"] = torch.ones(h)
        sd[p + "self_attention.query_key_value.weight"] = rand(qkv, h)
        sd[p + "self_attention.query_key_value.bias"] = torch.zeros(qkv)
        sd[p + "self_attention.dense.weight"] = rand(h, config["num_attention_heads"] * kv)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(h)
        sd[p + "mlp.dense_h_to_4h.weight"] = rand(2 * ffn, h)
        sd[p + "mlp.dense_4h_to_h.weight"] = rand(h, ffn)
    sd["transformer.encoder.final_layernorm.weight"] = torch.ones(h)
    sd["transformer.output_layer.weight"] = rand(vocab, h)
    return sd


def build_tiny_chatglm2(
    out_dir: str | Path, texts: Sequence[str] | None = None, vocab_size: int = 1200, seed: int = 0
) -> Path:
    """Write a random tiny ChatGLM2 checkpoint folder (THUDM layout) with a tokenizer trained on ``texts``."""
    import sentencepiece as spm
    from safetensors.torch import save_file

    texts = list(texts) if texts is not None else example_texts()
    model_bytes = train_sentencepiece(texts, vocab_size)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    config = _thudm_config(sp.get_piece_size())
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        (tmp / "tokenizer.model").write_bytes(model_bytes)
        tok_config = {
            "name_or_path": "glmtune/tiny-chatglm2",
            "tokenizer_class": "ChatGLMTokenizer",
            "remove_space": False,
            "do_lower_case": False,
            "padding_side": "left",
            "model_max_length": ARCH["seq_length"],
            "glmtune_family": "chatglm2",  # its files could not tell ChatGLM2 from ChatGLM3 otherwise
        }
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        gen_config = {"eos_token_id": 2, "pad_token_id": 0, "do_sample": False, "max_length": 512}
        (tmp / "generation_config.json").write_text(json.dumps(gen_config, indent=2) + "\n", encoding="utf-8")
        weights = {k: v.contiguous() for k, v in random_thudm_weights(config, seed).items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "README.md").write_text(
            "glmtune's built-in tiny ChatGLM2: RANDOM weights, 2 layers, hidden 128, tokenizer trained on\n"
            "glmtune's bundled example data. For the offline quickstart and tests only.\n",
            encoding="utf-8",
        )
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("GLMTUNE_CACHE") or Path.home() / ".cache" / "glmtune")


def builtin_path(name: str) -> Path:
    """Folder of built-in model ``name`` (``tiny-chatglm2``), built on first use."""
    if name not in BUILTINS:
        raise GlmtuneError(f"unknown built-in model {name!r}; choose one of: {', '.join(BUILTINS)}")
    texts = example_texts()
    key = hashlib.sha256(json.dumps([FORMAT_VERSION, ARCH, texts], ensure_ascii=False).encode()).hexdigest()
    path = cache_dir() / f"{name}-{key[:12]}"
    if not (path / "model.safetensors").is_file():
        build_tiny_chatglm2(path, texts)
    return path


def resolve_model_path(model: str) -> Path:
    """``builtin:NAME`` -> its cached folder; anything else is a checkpoint folder that must exist."""
    if model.startswith(BUILTIN_PREFIX):
        return builtin_path(model[len(BUILTIN_PREFIX):])
    path = Path(model).expanduser()
    if not path.is_dir():
        raise GlmtuneError(f"model: folder not found: {model} (or use builtin:tiny-chatglm2)")
    return path
