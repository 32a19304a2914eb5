"""Converted JSONL -> a cached, fingerprinted ``datasets`` Arrow folder of training examples.

The folder (``save_to_disk`` layout plus ``glmtune_tokenized.json``) holds ``input_ids``, ``labels``,
``length`` and ``conversation`` (the input row each example came from). Its fingerprint covers the data files' contents, the tokenizer files, the template,
the encoding options, the glmtune version and the encoding source code, so ``train`` reuses it and
never re-tokenizes unchanged data. Encoding runs in forked worker processes that inherit the tokenizer (no pickling).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from glmtune.data.encode import encode_conversation
from glmtune.data.records import numbered_records
from glmtune.data.templates import EncodeOptions, Template, resolve_template
from glmtune.errors import DataError, GlmtuneError
from glmtune.utils.io import atomic_dir, atomic_open, claim_output, read_json

log = logging.getLogger("glmtune.data")
META_FILE = "glmtune_tokenized.json"
FORMAT_VERSION = 2  # 2: + conversation column
_CHUNK = 256
_WORKER: dict[str, Any] = {}


@dataclass
class TokenizeReport:
    """What tokenizing did: counts, truncation and the token-length distribution."""

    fingerprint: str
    path: str | None = None
    reused: bool = False
    conversations: int = 0
    examples: int = 0
    truncated: int = 0
    dropped: int = 0
    seconds: float = 0.0
    lengths: dict[str, float] = field(default_factory=dict)
    histogram: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        head = "reused tokenized data" if self.reused else f"tokenized {self.conversations} conversations"
        lines = [
            f"{head} ({self.path or 'in memory'}, fingerprint {self.fingerprint[:12]}): "
            f"{self.examples} examples, {self.truncated} truncated, {self.dropped} dropped "
            f"(nothing left to learn after truncation)" + ("" if self.reused else f", {self.seconds:.1f}s"),
        ]
        if self.lengths:
            stats = ", ".join(f"{k} {v:g}" for k, v in self.lengths.items())
            lines.append(f"token lengths: {stats}")
            width = max(map(len, self.histogram), default=0)
            total = max(sum(self.histogram.values()), 1)
            for bucket, n in self.histogram.items():
                lines.append(f"  {bucket:>{width}} | {'#' * round(40 * n / total):<40} {n}")
        return "\n".join(lines)


def _hash_file(path: Path, h: Any) -> None:
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the tokenizer's own files (or its class, vocabulary size and special ids)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    names = ("tokenizer.model", "ice_text.model", "tokenizer.json", "tokenizer_config.json", "vocab.json",
             "merges.txt", "special_tokens_map.json", "chat_template.jinja")
    found = [folder / n for n in names if folder.is_dir() and (folder / n).is_file()]
    for path in found:
        h.update(path.name.encode())
        _hash_file(path, h)
    h.update(json.dumps([len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id,
                         str(getattr(tokenizer, "chat_template", None))]).encode())
    return h.hexdigest()


def encoding_sources() -> list[Path]:
    """glmtune's source files that decide the ids and labels (templates, truncation, tokenizers)."""
    root = Path(__file__).resolve().parents[1]
    files = [root / "data" / "encode.py", root / "data" / "truncation.py"]
    for folder in (root / "data" / "templates", root / "models" / "tokenization"):
        files += sorted(folder.glob("*.py"))
    return files


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of :func:`encoding_sources`: a fix to an encoding rule invalidates cached folders."""
    h = hashlib.sha256()
    for path in encoding_sources():
        h.update(path.name.encode())
        _hash_file(path, h)
    return h.hexdigest()


def fingerprint(tokenizer: Any, data_paths: Sequence[str | Path], template: str, options: EncodeOptions) -> str:
    from glmtune import __version__

    h = hashlib.sha256(json.dumps([FORMAT_VERSION, __version__, template, options.key()], sort_keys=True).encode())
    h.update(code_fingerprint().encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    for path in data_paths:
        _hash_file(Path(path), h)
        h.update(b"\0")
    return h.hexdigest()


_Row = tuple[str, int, dict[str, Any]]  # (FILE:LINE, conversation index, record)


def _encode_chunk(chunk: list[_Row]) -> tuple[list[list[int]], list[list[int]], list[int], int, int]:
    """(input_ids, labels, conversation index) per example, then the truncated and dropped counts."""
    tok, tpl, opts = _WORKER["tokenizer"], _WORKER["template"], _WORKER["options"]
    ids, labels, convs, truncated, dropped = [], [], [], 0, 0
    for where, conv, record in chunk:
        try:
            enc = encode_conversation(tok, record["messages"], tpl, opts)
        except GlmtuneError as exc:
            raise DataError(f"{where}: {exc}") from None
        truncated += enc.truncated
        dropped += enc.dropped
        for ex in enc.examples:
            ids.append(ex["input_ids"])
            labels.append(ex["labels"])
            convs.append(conv)
    return ids, labels, convs, truncated, dropped


def _length_stats(lengths: list[int]) -> tuple[dict[str, float], dict[str, int]]:
    if not lengths:
        return {}, {}
    s = sorted(lengths)

    def pct(p: float) -> int:
        return s[min(len(s) - 1, int(p * len(s)))]

    stats = {"min": s[0], "mean": round(sum(s) / len(s), 1), "p50": pct(0.5), "p90": pct(0.9),
             "p99": pct(0.99), "max": s[-1]}
    hist: dict[str, int] = {}
    lo = 1
    while lo <= s[-1]:
        n = sum(1 for x in s if lo <= x < lo * 2)
        if n:
            hist[f"{lo}-{lo * 2 - 1}"] = n
        lo *= 2
    return stats, hist


def _run(chunks: list[list[_Row]], num_proc: int, progress: bool, total: int) -> list[Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="conv", desc="tokenizing", disable=not progress)
    results = []
    try:
        if num_proc > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(num_proc) as pool:
                for chunk, res in zip(chunks, pool.imap(_encode_chunk, chunks)):
                    results.append(res)
                    bar.update(len(chunk))
        else:
            for chunk in chunks:
                results.append(_encode_chunk(chunk))
                bar.update(len(chunk))
    finally:
        bar.close()
    return results


def is_tokenized_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def load_meta(path: str | Path) -> dict[str, Any]:
    """A tokenized folder's ``glmtune_tokenized.json`` (template, options, report, fingerprints)."""
    path = Path(path)
    if not is_tokenized_dir(path):
        raise DataError(f"{path}: not a glmtune tokenized folder (no {META_FILE}); run 'glmtune tokenize'")
    return read_json(path / META_FILE)


def load_tokenized(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A tokenized folder's dataset and its ``glmtune_tokenized.json`` metadata."""
    import datasets

    meta = load_meta(path)
    return datasets.load_from_disk(str(path)), meta


def check_template_fits(tokenizer: Any, template: Template) -> None:
    """A template whose special tokens this tokenizer lacks would emit ids past its vocabulary (e.g. the
    chatglm3 template's <|user|> = 64795 on a ChatGLM2 tokenizer): refuse it before tokenizing."""
    from glmtune.data.encode import build_chat_input

    probe = build_chat_input(tokenizer, [{"role": "user", "content": "hi"}], template)
    size = len(tokenizer)
    bad = sorted({i for i in probe if not 0 <= i < size})
    if bad:
        family = getattr(tokenizer, "glmtune_family", None) or type(tokenizer).__name__
        raise DataError(f"template {template.name!r} emits token ids {bad[:3]} that this {family} tokenizer does not "
                        f"have (it has {size}); choose a template made for this tokenizer, or leave it unset")


def build_tokenized_dataset(
    tokenizer: Any,
    data_paths: str | Path | Sequence[str | Path],
    template: str | Template | None = None,
    options: EncodeOptions | None = None,
    cache_dir: str | Path | None = None,
    num_proc: int = 2,
    output_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[Any, TokenizeReport]:
    """Encode converted JSONL files into a ``datasets.Dataset`` (``input_ids``, ``labels``, ``length``).

    ``data_paths`` may also be one tokenized folder, which is loaded as is. The result is saved to
    ``output_dir``, or to ``cache_dir/<fingerprint>``; an existing folder with the same fingerprint
    is reused without tokenizing (``report.reused``).
    """
    import datasets

    paths = [Path(p) for p in ([data_paths] if isinstance(data_paths, (str, Path)) else data_paths)]
    if not paths:
        raise DataError("no data files given")
    if any(is_tokenized_dir(p) for p in paths):
        if len(paths) != 1:
            raise DataError("a tokenized folder cannot be mixed with other data files")
        dataset, meta = load_tokenized(paths[0])
        saved = meta.get("tokenizer")  # absent in folders written before it was recorded
        if saved is not None and saved != tokenizer_fingerprint(tokenizer):
            raise DataError(
                f"{paths[0]}: tokenized with another tokenizer (template {meta.get('template')!r}) than this "
                "model's; its ids would be wrong for it: run 'glmtune tokenize --model MODEL' again"
            )
        return dataset, TokenizeReport(**{**meta["report"], "path": str(paths[0]), "reused": True})
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    opts = options or EncodeOptions()
    tpl = resolve_template(tokenizer, template)
    check_template_fits(tokenizer, tpl)
    fp = fingerprint(tokenizer, paths, tpl.name, opts)
    target = Path(output_dir) if output_dir else (Path(cache_dir) / fp[:20] if cache_dir else None)
    if output_dir:
        claim_output(target, "tokenized", overwrite, own_files=(META_FILE,))
    if target is not None and is_tokenized_dir(target):
        dataset, meta = load_tokenized(target)
        if meta.get("fingerprint") == fp:
            return dataset, TokenizeReport(**{**meta["report"], "path": str(target), "reused": True})

    start = time.perf_counter()
    records = [(f"{p}:{line}", rec) for p in paths for line, rec in numbered_records(p)]
    rows = [(where, i, rec) for i, (where, rec) in enumerate(records)]
    chunks = [rows[i: i + _CHUNK] for i in range(0, len(rows), _CHUNK)]
    _WORKER.update(tokenizer=tokenizer, template=tpl, options=opts)
    try:
        results = _run(chunks, max(1, num_proc), progress, len(rows))
    finally:
        _WORKER.clear()
    ids, labels, convs = ([x for r in results for x in r[k]] for k in range(3))
    truncated, dropped = sum(r[3] for r in results), sum(r[4] for r in results)
    if not ids:  # an empty Arrow folder cannot be loaded back: fail before caching one
        raise DataError(
            f"no training examples in {', '.join(map(str, paths))}: {len(rows)} conversations, all "
            f"{dropped} dropped by truncation (nothing left to learn); raise cutoff_len "
            f"or max_source_length/max_target_length (now {opts.cutoff_len} / {opts.max_source_length}"
            f"/{opts.max_target_length})"
        )
    lengths = [len(x) for x in ids]
    stats, hist = _length_stats(lengths)
    report = TokenizeReport(
        fingerprint=fp, path=str(target) if target else None, conversations=len(rows), examples=len(ids),
        truncated=truncated, dropped=dropped,
        seconds=round(time.perf_counter() - start, 3), lengths=stats, histogram=hist,
    )
    features = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "labels": datasets.Sequence(datasets.Value("int32")),
        "length": datasets.Value("int32"),
        "conversation": datasets.Value("int32"),  # which input conversation (for splits that keep them whole)
    })
    columns = {"input_ids": ids, "labels": labels, "length": lengths, "conversation": convs}
    dataset = datasets.Dataset.from_dict(columns, features=features)
    if target is None:
        return dataset, report
    meta = {"fingerprint": fp, "format_version": FORMAT_VERSION, "template": tpl.name, "options": opts.key(),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "data_files": [str(p) for p in paths], "report": {k: v for k, v in asdict(report).items()
                                                              if k not in ("path", "reused")}}
    with atomic_dir(target) as tmp:
        dataset.save_to_disk(str(tmp))
        with atomic_open(tmp / META_FILE) as fh:
            json.dump(meta, fh, ensure_ascii=False, indent=1)
    return datasets.load_from_disk(str(target)), report
