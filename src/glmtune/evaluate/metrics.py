"""BLEU-4 and ROUGE-1/2/L per sample, reproducing THUDM's published ChatGLM evaluation code.

Two variants, because THUDM shipped two different ``compute_metrics``:

``ptuning`` (the default) is ChatGLM-6B's and ChatGLM2-6B's ``ptuning/main.py``: ROUGE F on jieba words
(``rouge_chinese``), BLEU-4 with NLTK's ``method3`` smoothing on *characters*; every per-sample value is
``x100`` and rounded to 4 decimals. It is the default because the results ChatGLM-6B/ChatGLM2-6B published
(the AdvertiseGen tables people compare against) were computed this way, and character BLEU does not
depend on how a word segmenter happens to cut the text, so it compares models with different tokenizers.

``chatglm3`` is ChatGLM3's ``finetune_demo/finetune_hf.py``: the same ROUGE, but BLEU-4 on the jieba
*word* lists (space tokens included, as ``list(jieba.cut(...))`` returns them) and not rounded. That
script appends ``sentence_bleu``'s raw fraction (0..1) while its ROUGE values are x100; here BLEU is x100
too so one report has one scale: divide ``bleu-4`` by 100 to compare with a ChatGLM3 training log.

Empty texts: THUDM's scripts call ``Rouge().get_scores`` unguarded, so one empty (or whitespace-only)
prediction raises ``ValueError: Hypothesis is empty.`` and the whole evaluation dies. Later derived
trainers (LLaMA-Factory's ``ComputeMetrics``) score such a pair ``{"f": 0.0}`` for every ROUGE; so do we,
and BLEU is whatever NLTK returns (0 for an empty hypothesis or reference). Nothing here raises on text.

The per-sample numbers are the official ones; :func:`aggregate` averages them with ``np.mean`` as the
scripts do, and rounds only the final mean. Nothing here downloads anything (NLTK's BLEU needs no data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

# jieba, nltk, rouge_chinese and numpy are imported on first use: `glmtune eval --help` and a bad
# predictions file answer at once instead of after a second of imports.

METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")
CONCLUSION = "CONCLUSION:"

Scorer = Callable[[str, str], dict[str, float]]


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs "Building prefix dict ..." on its first cut
    return jieba


def _words(text: str) -> list[str]:
    """jieba's default (accurate, HMM) cut, kept whole: the official code keeps the space tokens too."""
    return list(_jieba().cut(text))


def _rouge(hypothesis: list[str], reference: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F x100 rounded to 4, on space-joined words; 0 where rouge_chinese would raise."""
    hyp, ref = " ".join(hypothesis), " ".join(reference)
    if not hyp.split() or not ref.split():
        return dict.fromkeys(ROUGE_KEYS, 0.0)
    from rouge_chinese import Rouge

    try:
        scores = Rouge().get_scores(hyp, ref)[0]
    except ValueError:  # rouge_chinese's "... is empty" for any text its sentence splitter leaves empty
        return dict.fromkeys(ROUGE_KEYS, 0.0)
    return {k: round(scores[k]["f"] * 100, 4) for k in ROUGE_KEYS}


def _bleu4(hypothesis: list[str], reference: list[str]) -> float:
    """NLTK sentence BLEU, uniform 4-gram weights, NIST geometric (method3) smoothing; 0..1."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(sentence_bleu([reference], hypothesis, smoothing_function=SmoothingFunction().method3))


def score_ptuning(prediction: str, reference: str) -> dict[str, float]:
    """ChatGLM-6B / ChatGLM2-6B ``ptuning/main.py``: word ROUGE, character BLEU-4, each x100 rounded to 4."""
    scores = _rouge(_words(prediction), _words(reference))
    scores["bleu-4"] = round(_bleu4(list(prediction), list(reference)) * 100, 4)
    return scores


def score_chatglm3(prediction: str, reference: str) -> dict[str, float]:
    """ChatGLM3 ``finetune_hf.py``: word ROUGE (x100, rounded to 4) and word BLEU-4 (x100, not rounded)."""
    hyp, ref = _words(prediction), _words(reference)
    scores = _rouge(hyp, ref)
    scores["bleu-4"] = _bleu4(hyp, ref) * 100
    return scores


VARIANTS: dict[str, Scorer] = {"ptuning": score_ptuning, "chatglm3": score_chatglm3}
DEFAULT_VARIANT = "ptuning"


def conclusion(text: str) -> str | None:
    """The stripped text after the last ``CONCLUSION:`` (explanation-based data), or None without one."""
    if CONCLUSION not in text:
        return None
    return text.rsplit(CONCLUSION, 1)[1].strip()


def aggregate(
    rows: Iterable[tuple[str, str]], variant: str = DEFAULT_VARIANT
) -> dict[str, float | int | str]:
    """Mean of each per-sample metric over ``(prediction, reference)`` pairs, rounded to 4 decimals.

    When some reference has a ``CONCLUSION:``, also ``conclusion_exact_match``: the percentage of those
    rows whose prediction's conclusion equals the reference's (no conclusion in the prediction is a miss),
    because for explanation-trained models the verdict matters more than word overlap with the explanation.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: use one of {', '.join(VARIANTS)}")
    score = VARIANTS[variant]
    per_metric: dict[str, list[float]] = {k: [] for k in METRICS}
    matches = conclusion_rows = 0
    for prediction, reference in rows:
        for key, value in score(prediction, reference).items():
            per_metric[key].append(value)
        expected = conclusion(reference)
        if expected is not None:
            conclusion_rows += 1
            matches += conclusion(prediction) == expected
    n = len(per_metric["bleu-4"])
    if n == 0:
        raise ValueError("no rows to score")
    import numpy as np

    report: dict[str, float | int | str] = {k: round(float(np.mean(v)), 4) for k, v in per_metric.items()}
    report["rows"] = n
    report["variant"] = variant
    if conclusion_rows:
        report["conclusion_exact_match"] = round(100.0 * matches / conclusion_rows, 4)
        report["conclusion_rows"] = conclusion_rows
    return report
