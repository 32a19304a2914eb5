"""A ``tokenizer.json`` any tool loads: glmtune's ChatGLM tokenizers as plain ``tokenizers`` models.

``save_fast_tokenizer(tokenizer, family, out_dir)`` writes ``tokenizer.json`` + a
``tokenizer_config.json`` (``PreTrainedTokenizerFast``, the family's special tokens, padding side,
Jinja ``chat_template``) that ``transformers.AutoTokenizer.from_pretrained(out_dir)`` loads with no
remote code and no glmtune; ``glmtune_family`` stays in the config, so glmtune itself still loads
the folder with its own (slow, reference-exact) tokenizer from the SentencePiece file next to it.

How each generation is expressed (tests/models/test_fast_tokenizer.py checks every reference row):
- ChatGLM2/3: SentencePiece BPE -> ``tokenizers`` BPE (merges ranked by resulting piece score, byte
  fallback); normaliser: the model's own spec (dummy prefix, spaces as ``▁``); pre-tokeniser:
  SentencePiece's word split (a run of ``▁`` starts a word). ``[MASK] [sMASK] eop`` (and ChatGLM2's
  absent role ids) are vocabulary entries no merge reaches, so typed text never becomes them;
  ``[gMASK]``, ``sop`` (whole word only) and ChatGLM3's role tokens are added tokens, because the
  chat template must produce them from text. Decoding drops ``<unk> <s> </s>`` (ChatGLM2: also the
  command ids; ChatGLM3 writes them out, even with ``skip_special_tokens``), as the originals do.
- ChatGLM-6B (v1): SentencePiece unigram -> ``tokenizers`` Unigram; the v1 pre-processing (``\\n`` ->
  ``<n>``, tab -> ``<|tab|>``, runs of 2..80 spaces -> ``<|blank_N|>``), nmt_nfkc and SentencePiece's
  whitespace clean-up are normalisers; the user-defined pieces (``<n>``, tab, blanks) always win the
  lattice where they occur (SentencePiece matches them atomically), control/byte pieces never do;
  decoding maps them back. ``<sop> <eop> <unk> <pad> [MASK]`` are special added tokens with the spaces
  around them stripped, as in the original.
Measured on the reference vectors: every decode row (both ``skip_special_tokens`` variants), every
``chat()`` prompt (v1 3, v2 3, v3 7 incl. system, tools and observation) and every encode row equal,
except the rows that TYPE one of these texts, which the fast tokenizer turns into one id while the
originals encode the characters (a ``tokenizers`` tokenizer matches added tokens in any text):
``[gMASK]`` (v1: 3 of 130 rows), plus ``sop`` as a word, ``</s>`` and ``<unk>`` (v2: 7 rows; the last two
are added by transformers itself as the eos/unk special tokens) and the four role tokens (v3: 11 rows,
all equal to the official ``encode_special_tokens=True`` ids where those exist).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError

FAMILIES = ("chatglm", "chatglm2", "chatglm3")
V2_COMMANDS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop")
V3_ROLES = ("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
MAX_BLANK = 80
# far below any real piece score: keeps control/byte/user pieces out of the unigram lattice
_NEVER = -1.0e6
_ALWAYS = 1.0e3


def _proto(model_file: str | Path) -> Any:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(model_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise GlmtuneError(f"{model_file}: not a SentencePiece model ({exc})") from None
    return proto


def _merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """BPE merges of the normal pieces, ranked as SentencePiece merges: higher resulting score first."""
    normal = {p: i for i, (p, _, kind) in enumerate(pieces) if kind == 1}
    found = []
    for piece, index in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                found.append((-pieces[index][1], index, normal[left], normal[right], left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def _spm_normalizers(proto: Any) -> list[Any]:
    """SentencePiece's normaliser as ``tokenizers`` steps: charsmap, whitespace clean-up, dummy prefix, ``▁``."""
    from tokenizers import Regex, normalizers

    spec = proto.normalizer_spec
    steps: list[Any] = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    return [*steps, normalizers.Replace(" ", "▁")]


def _spm_words(proto: Any) -> Any:
    """SentencePiece's word split: a word starts at a ``▁`` (at a run of them with whitespace-only pieces)."""
    from tokenizers import Regex, pre_tokenizers

    if proto.trainer_spec.treat_whitespace_as_suffix:
        raise GlmtuneError("tokenizer.model treats whitespace as a suffix: no fast tokenizer export for it")
    run = "▁+" if proto.trainer_spec.allow_whitespace_only_pieces else "▁"
    return pre_tokenizers.Split(Regex(run), behavior="merged_with_next")


def _v2_backend(tokenizer: Any, roles: bool) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE

    proto = _proto(tokenizer.vocab_file)
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    commands = V2_COMMANDS + (V3_ROLES if roles else ())
    for offset, text in enumerate(commands):
        vocab[text] = len(pieces) + offset
    if proto.trainer_spec.model_type != 2:
        raise GlmtuneError(f"{tokenizer.vocab_file}: a ChatGLM2/3 tokenizer.model is a BPE SentencePiece model")
    model = BPE(vocab=vocab, merges=_merges(pieces), unk_token=pieces[proto.trainer_spec.unk_id][0],
                byte_fallback=proto.trainer_spec.byte_fallback)
    backend = Tokenizer(model)
    backend.normalizer = normalizers.Sequence(_spm_normalizers(proto))
    backend.pre_tokenizer = _spm_words(proto)
    silent = ["<unk>", "<s>", "</s>"] + ([] if roles else list(V2_COMMANDS))
    backend.decoder = decoders.Sequence([
        decoders.Replace(Regex("^(?:" + "|".join(re.escape(t) for t in silent) + ")$"), ""),
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        *([decoders.Strip(" ", 1, 0)] if proto.normalizer_spec.add_dummy_prefix else []),
    ])
    # only what the chat template must produce from text is matched in text
    matched = [AddedToken("[gMASK]", special=not roles, normalized=False),
               AddedToken("sop", special=not roles, normalized=False, single_word=True)]
    matched += [AddedToken(t, special=False, normalized=False) for t in (V3_ROLES if roles else ())]
    backend.add_tokens(matched)
    return backend


def _v1_backend(tokenizer: Any) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers
    from tokenizers.models import Unigram

    if getattr(tokenizer, "num_image_tokens", 0):
        raise GlmtuneError("tokenizer_config.json num_image_tokens > 0 (the pre-v1.1 layout) has no fast tokenizer export")
    proto = _proto(tokenizer.vocab_file)
    # control and byte pieces never win the lattice; user-defined ones (<n>, <|tab|>, <|blank_N|>) always
    # do where they occur, as SentencePiece matches them atomically
    score = {1: None, 4: _ALWAYS}
    vocab = [(p.piece, p.score if p.type == 1 else score.get(p.type, _NEVER)) for p in proto.pieces]
    backend = Tokenizer(Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=True))
    blanks = [normalizers.Replace(Regex(f" {{{n}}}"), f"<|blank_{n}|>") for n in range(MAX_BLANK, 1, -1)]
    backend.normalizer = normalizers.Sequence([
        normalizers.Replace("\n", "<n>"),
        normalizers.Replace("\t", "<|tab|>"),
        *blanks,
        *_spm_normalizers(proto),
    ])
    backend.pre_tokenizer = _spm_words(proto)
    controls = [p.piece for p in proto.pieces if p.type == 3]  # <s> </s> <pad> [MASK] ... <sop> <eop>
    backend.decoder = decoders.Sequence([
        decoders.Replace(Regex("^(?:" + "|".join(re.escape(t) for t in controls) + ")$"), ""),
        decoders.Replace(Regex("^<unk>$"), " \u2047 "),
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
        decoders.Replace("<n>", "\n"),
        decoders.Replace("<|tab|>", "\t"),
        *[decoders.Replace(f"<|blank_{n}|>", " " * n) for n in range(2, MAX_BLANK + 1)],
    ])
    # the original's special tokens (spaces around them stripped) and [gMASK], which the chat template needs
    specials = ["<sop>", "<eop>", "<unk>", "<pad>", "[MASK]"]
    backend.add_special_tokens([AddedToken(t, lstrip=True, rstrip=True, normalized=False, special=True) for t in specials])
    backend.add_special_tokens([AddedToken("[gMASK]", normalized=False, special=True)])
    return backend


def _post_processor(family: str, backend: Any) -> Any:
    """What ``add_special_tokens=True`` adds, with the ids of this vocabulary."""
    from tokenizers.processors import TemplateProcessing

    def ids(*tokens: str) -> list[tuple[str, int]]:
        return [(t, backend.token_to_id(t)) for t in tokens]

    if family == "chatglm":  # v1 APPENDS [gMASK] <sop> (pair: + answer + <eop>)
        return TemplateProcessing(single="$A [gMASK] <sop>", pair="$A [gMASK] <sop> $B:1 <eop>:1",
                                  special_tokens=ids("[gMASK]", "<sop>", "<eop>"))
    # ChatGLM2/3 PREPEND [gMASK] sop (pair: + answer + eos)
    return TemplateProcessing(single="[gMASK] sop $A", pair="[gMASK] sop $A $B:1 </s>:1",
                              special_tokens=ids("[gMASK]", "sop", "</s>"))


SPECIAL_TOKENS = {
    "chatglm": {"bos_token": "<sop>", "eos_token": "<eop>", "unk_token": "<unk>", "pad_token": "<pad>",
                "mask_token": "[MASK]"},
    "chatglm2": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"},
}
SPECIAL_TOKENS["chatglm3"] = SPECIAL_TOKENS["chatglm2"]
# keys glmtune's own tokenizer loaders read back (tokenization/_common.py init_kwargs_from_config)
_KEPT_KEYS = ("model_max_length", "truncation_side", "num_image_tokens", "remove_space", "do_lower_case",
              "encode_special_tokens")


def build_fast_backend(tokenizer: Any, family: str) -> Any:
    """The ``tokenizers.Tokenizer`` equal to glmtune's slow ``tokenizer`` of ``family``."""
    if family not in FAMILIES:
        raise GlmtuneError(f"family {family!r} has no fast tokenizer export (only {', '.join(FAMILIES)})")
    backend = _v1_backend(tokenizer) if family == "chatglm" else _v2_backend(tokenizer, family == "chatglm3")
    backend.post_processor = _post_processor(family, backend)
    return backend


def fast_tokenizer_config(tokenizer: Any, family: str) -> dict[str, Any]:
    """The ``tokenizer_config.json`` of the export: loadable by plain transformers, still glmtune's family."""
    from glmtune.models.tokenization.chat_templates import chat_template

    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "glmtune_family": family}
    for key in _KEPT_KEYS:
        value = getattr(tokenizer, key, None) if key != "model_max_length" else tokenizer.model_max_length
        if isinstance(value, (bool, int, str)) and not (key == "model_max_length" and value > 10**12):
            config[key] = value
    config.update(SPECIAL_TOKENS[family])
    config.update({
        "padding_side": "left",
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": family == "chatglm",
        "chat_template": chat_template(family, _proto(tokenizer.vocab_file).normalizer_spec.add_dummy_prefix),
    })
    return config


def generation_stop_ids(family: str, tokenizer: Any) -> list[int]:
    """Every id glmtune's template of ``family`` stops generation on (ChatGLM3: eos, <|user|>, <|observation|>)."""
    from glmtune.data.templates import resolve_template

    return [int(i) for i in resolve_template(tokenizer, family).stop_ids(tokenizer)]


def save_fast_tokenizer(tokenizer: Any, family: str, out_dir: str | Path) -> list[str]:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` for ``family`` into ``out_dir``; returns the file names.

    The slow tokenizer's own files (``tokenizer.model`` / ``ice_text.model``) are left as they are, so
    glmtune keeps loading its own tokenizer from the folder (``glmtune_family`` in the config says which).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise GlmtuneError(f"cannot save the fast tokenizer: {out} is not a folder")
    build_fast_backend(tokenizer, family).save(str(out / "tokenizer.json"))
    config = fast_tokenizer_config(tokenizer, family)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    stale = out / "special_tokens_map.json"  # written by the slow save; the config above says it all
    if stale.is_file():
        stale.unlink()
    return ["tokenizer.json", "tokenizer_config.json"]


def write_fast_files(folder: str | Path, family: str | None = None, tokenizer: Any = None) -> str:
    """Add the fast tokenizer and the family's stop ids (``generation_config.json``) to a saved model folder.

    ``tokenizer``: glmtune's tokenizer of the folder (loaded from ``folder`` when None); ``family``: its
    family (the tokenizer's own ``glmtune_family``, else detected from the folder). Returns a short note;
    families without a SentencePiece ChatGLM tokenizer (glm4, hf) keep their own files untouched.
    """
    folder = Path(folder)
    family = family or getattr(tokenizer, "glmtune_family", None)
    if tokenizer is None:
        from glmtune.models.loading import load_tokenizer

        tokenizer = load_tokenizer(folder, family=family)
        family = family or getattr(tokenizer, "glmtune_family", None)
    if family not in FAMILIES:
        return f"; {family or 'this'} family keeps its own tokenizer files"
    note = "; tokenizer.json + chat template written"
    try:
        save_fast_tokenizer(tokenizer, family, folder)
    except GlmtuneError as exc:  # an unusual SentencePiece file: the slow tokenizer files still serve glmtune
        note = f"; no tokenizer.json ({exc})"
    stops = generation_stop_ids(family, tokenizer)
    path = folder / "generation_config.json"
    gen = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    gen["eos_token_id"] = stops if len(stops) > 1 else stops[0]
    if tokenizer.pad_token_id is not None:
        gen.setdefault("pad_token_id", int(tokenizer.pad_token_id))
    path.write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
    return f"{note}, stop ids {stops}"
