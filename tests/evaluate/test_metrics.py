"""Per-sample metrics against values worked out by hand from the definitions the official scripts use.

Definitions (rouge_chinese 1.0.3, nltk sentence_bleu):
- ROUGE-N counts *distinct* word n-grams (sets): P = overlap/|hyp|, R = overlap/|ref|,
  F = 2PR / (P + R + 1e-8). ROUGE-L uses the LCS of the word sequences: P = lcs/n_hyp, R = lcs/n_ref.
  The 1e-8 makes a perfect F 0.999999995, which x100 and round(.., 4) turns back into 100.0.
- BLEU-4 = BP * (p1 p2 p3 p4) ** (1/4), p_n the clipped n-gram precision, BP = 1 when the hypothesis is
  at least as long as the reference, else exp(1 - r/c). method3: the k-th p_n with no match becomes
  1 / (2**k * its denominator) (denominator at least 1).
"""

from __future__ import annotations

import math

import jieba
import pytest

from glmtune.evaluate.metrics import (
    DEFAULT_VARIANT,
    VARIANTS,
    aggregate,
    conclusion,
    score_chatglm3,
    score_ptuning,
)

REF = "今天天气好"  # 5 characters; jieba: 今天天气 | 好


def test_jieba_cuts_the_examples_as_the_hand_arithmetic_assumes():
    assert list(jieba.cut("今天天气好")) == ["今天天气", "好"]
    assert list(jieba.cut("今天天气坏")) == ["今天天气", "坏"]
    assert list(jieba.cut("今天大气好")) == ["今天", "大气", "好"]
    assert list(jieba.cut("今天天气很好")) == ["今天天气", "很", "好"]
    assert list(jieba.cut("今天天气")) == ["今天天气"]
    assert list(jieba.cut("ab cd")) == ["ab", " ", "cd"]  # English: split on spaces, spaces kept as tokens


def test_identical_strings_score_100_everywhere():
    # ROUGE: P = R = 1 -> F = 2/(2 + 1e-8) = 0.999999995 -> round(99.9999995, 4) = 100.0
    # BLEU: every p_n = 1 (6 characters, 11 jieba tokens: enough for 4-grams), equal lengths -> BP = 1 -> 1.0
    perfect = {"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0, "bleu-4": 100.0}
    assert score_ptuning("今天天气很好", "今天天气很好") == perfect
    assert score_chatglm3("the cat sat on the mat", "the cat sat on the mat") == perfect


def test_chatglm3_word_bleu_cannot_reach_100_below_four_words():
    # 今天天气|很|好 against itself: p1 = 3/3, p2 = 2/2, p3 = 1/1, p4: no 4-gram -> 0/1 -> 1/(2 * 1) = 1/2
    #   BLEU = (1/2) ** (1/4) = 0.8408964 -> 84.08964...; the character BLEU of ptuning gives 100.0
    assert score_chatglm3("今天天气很好", "今天天气很好")["bleu-4"] == pytest.approx(
        0.5**0.25 * 100, rel=1e-12
    )
    assert score_ptuning("今天天气很好", "今天天气很好")["bleu-4"] == 100.0


def test_last_character_differs_in_a_five_character_string():
    # words 今天天气|坏 vs 今天天气|好:
    #   ROUGE-1: overlap {今天天气}: P = R = 1/2 -> F = 0.5/(1 + 1e-8) -> 50.0
    #   ROUGE-2: (今天天气,坏) vs (今天天气,好): no overlap -> 0.0
    #   ROUGE-L: LCS = 1 of 2 and 2 words -> 50.0
    # characters 今天天气坏 vs 今天天气好:
    #   p1 = 4/5, p2 = 3/4 (今天 天天 天气 match, 气坏 not), p3 = 2/3, p4 = 1/2, BP = 1 (5 vs 5)
    #   BLEU = (4/5 * 3/4 * 2/3 * 1/2) ** (1/4) = 0.2 ** 0.25 = 0.668740305 -> 66.874
    assert score_ptuning("今天天气坏", REF) == {
        "rouge-1": 50.0,
        "rouge-2": 0.0,
        "rouge-l": 50.0,
        "bleu-4": 66.874,
    }
    assert 0.2**0.25 * 100 == pytest.approx(66.874, abs=5e-5)


def test_middle_character_differs_uses_method3_smoothing():
    # characters 今天大气好 vs 今天天气好:
    #   p1 = 4/5 (大 unmatched); p2 = 2/4 (今天, 气好 match; 天大, 大气 not)
    #   p3 = 0/3 -> first zero, k = 1: 1/(2 * 3) = 1/6;  p4 = 0/2 -> k = 2: 1/(4 * 2) = 1/8
    #   BLEU = (4/5 * 1/2 * 1/6 * 1/8) ** (1/4) = (1/120) ** 0.25 = 0.3021375 -> 30.2138
    # words 今天|大气|好 vs 今天天气|好:
    #   ROUGE-1: overlap {好}: P = 1/3, R = 1/2 -> F = 2 * (1/6) / (5/6) = 0.4 -> 40.0
    #   ROUGE-2: (今天,大气) (大气,好) vs (今天天气,好): none -> 0.0
    #   ROUGE-L: LCS = 1 (好): P = 1/3, R = 1/2 -> 40.0
    assert score_ptuning("今天大气好", REF) == {
        "rouge-1": 40.0,
        "rouge-2": 0.0,
        "rouge-l": 40.0,
        "bleu-4": 30.2138,
    }
    assert (1 / 120) ** 0.25 * 100 == pytest.approx(30.2138, abs=5e-5)


def test_short_prediction_pays_the_brevity_penalty():
    # characters 今天天气 (c = 4) vs 今天天气很好 (r = 6): p1..p4 = 4/4, 3/3, 2/2, 1/1
    #   BP = exp(1 - 6/4) = exp(-0.5) = 0.60653066 -> 60.6531
    # words 今天天气 vs 今天天气|很|好:
    #   ROUGE-1: P = 1/1, R = 1/3 -> F = 2 * (1/3) / (4/3) = 0.5 -> 50.0
    #   ROUGE-2: the prediction has no bigram -> P = 0, R = 0/2 -> 0.0
    #   ROUGE-L: LCS = 1: P = 1, R = 1/3 -> 50.0
    assert score_ptuning("今天天气", "今天天气很好") == {
        "rouge-1": 50.0, "rouge-2": 0.0, "rouge-l": 50.0, "bleu-4": 60.6531,
    }  # fmt: skip
    assert math.exp(-0.5) * 100 == pytest.approx(60.6531, abs=5e-5)


def test_english_words_are_split_on_spaces():
    # jieba: ab|' '|cd and ab|' '|ce; rouge_chinese re-splits the space-joined text into words ab cd / ab ce
    #   ROUGE-1: overlap {ab}: P = R = 1/2 -> 50.0;  ROUGE-2: (ab,ce) vs (ab,cd) -> 0.0;  ROUGE-L: 1/2 -> 50.0
    # characters a b ' ' c e vs a b ' ' c d: the last one differs, as above: 0.2 ** 0.25 -> 66.874
    assert score_ptuning("ab ce", "ab cd") == {
        "rouge-1": 50.0,
        "rouge-2": 0.0,
        "rouge-l": 50.0,
        "bleu-4": 66.874,
    }


def test_english_sentence_rouge_counts_distinct_ngrams():
    # words the cat sat on a mat (hyp) vs the cat sat on the mat (ref)
    #   ROUGE-1 sets: hyp {the cat sat on a mat} = 6, ref {the cat sat on mat} = 5, overlap 5
    #     P = 5/6, R = 1 -> F = (10/6) / (11/6 + 1e-8) = 0.9090909 -> 90.9091
    #   ROUGE-2: hyp {the-cat cat-sat sat-on on-a a-mat}, ref {the-cat cat-sat sat-on on-the the-mat}
    #     overlap 3: P = R = 3/5 -> 60.0
    #   ROUGE-L: LCS the cat sat on mat = 5: P = R = 5/6 -> 83.3333
    scores = score_ptuning("the cat sat on a mat", "the cat sat on the mat")
    assert {k: scores[k] for k in ("rouge-1", "rouge-2", "rouge-l")} == {
        "rouge-1": 90.9091, "rouge-2": 60.0, "rouge-l": 83.3333,
    }  # fmt: skip


def test_chatglm3_bleu_counts_jieba_words_space_tokens_included():
    # tokens: the ' ' cat ' ' sat ' ' on ' ' a ' ' mat (11) vs the ' ' cat ' ' sat ' ' on ' ' the ' ' mat (11)
    #   p1 = 10/11 (a unmatched), p2 = 8/10 (' '-a and a-' ' unmatched), p3 = 6/9, p4 = 5/8, BP = 1
    #   BLEU = (10/11 * 8/10 * 6/9 * 5/8) ** (1/4) = (10/33) ** 0.25 = 0.741944663 -> x100, not rounded
    scores = score_chatglm3("the cat sat on a mat", "the cat sat on the mat")
    assert scores["bleu-4"] == pytest.approx((10 / 33) ** 0.25 * 100, rel=1e-12)
    assert scores["bleu-4"] == pytest.approx(74.194466, abs=1e-6)
    assert scores["rouge-1"] == 90.9091  # ROUGE is the same as the ptuning variant


def test_chatglm3_differs_from_ptuning_on_the_same_pair():
    # ptuning (characters): 66.874 (see above).
    # chatglm3 (words 今天天气|坏 vs 今天天气|好): p1 = 1/2; p2 = 0/1 -> k = 1: 1/(2 * 1) = 1/2;
    #   p3, p4: no trigram/4-gram in 2 words, denominator max(1, 0) = 1 -> 1/4 and 1/8; BP = 1
    #   BLEU = (1/2 * 1/2 * 1/4 * 1/8) ** (1/4) = 2 ** (-7/4) = 0.2973017787 -> 29.73017787...
    p, c = score_ptuning("今天天气坏", REF), score_chatglm3("今天天气坏", REF)
    assert p["bleu-4"] == 66.874
    assert c["bleu-4"] == pytest.approx(2 ** (-7 / 4) * 100, rel=1e-12)
    assert round(c["bleu-4"], 6) == 29.730178  # chatglm3 keeps the full value (its script does not round)
    assert {k: c[k] for k in ("rouge-1", "rouge-2", "rouge-l")} == {
        k: p[k] for k in ("rouge-1", "rouge-2", "rouge-l")
    }


@pytest.mark.parametrize("score", list(VARIANTS.values()), ids=list(VARIANTS))
@pytest.mark.parametrize(
    ("prediction", "reference"), [("", REF), ("   ", REF), (REF, ""), ("", ""), ("  ", "\n")]
)
def test_empty_text_scores_zero_without_crashing(score, prediction, reference):
    # rouge_chinese raises "Hypothesis is empty." / "Reference is empty." here; the official scripts crash.
    # BLEU: no hypothesis unigram matches the reference -> nltk returns 0.
    assert score(prediction, reference) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}


def test_default_variant_is_ptuning():
    assert DEFAULT_VARIANT == "ptuning" and VARIANTS["ptuning"] is score_ptuning


def test_whitespace_only_texts_score_zero_rouge_but_character_bleu():
    # "\n" vs "\n": no words -> every ROUGE 0 (the official scripts crash here).
    # characters: p1 = 1/1; no 2-, 3-, 4-gram -> method3: 1/2, 1/4, 1/8 -> BLEU = (1/64) ** (1/4) = 0.3535534
    assert score_ptuning("\n", "\n") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 35.3553}


def test_aggregate_is_the_mean_over_rows():
    # row 1 identical: 100 everywhere; row 2 (今天天气坏): bleu 66.874, rouge-1 50, rouge-2 0, rouge-l 50
    #   means: bleu (100 + 66.874)/2 = 83.437, rouge-1 75, rouge-2 50, rouge-l 75
    report = aggregate([(REF, REF), ("今天天气坏", REF)])
    assert report == {
        "bleu-4": 83.437, "rouge-1": 75.0, "rouge-2": 50.0, "rouge-l": 75.0, "rows": 2, "variant": "ptuning",
    }  # fmt: skip


def test_aggregate_rounds_only_the_final_mean():
    # chatglm3 bleu, words: 今天天气|好 against itself: p1 = p2 = 1, p3 -> 1/2, p4 -> 1/4: (1/8) ** (1/4) = 2 ** (-3/4)
    #   今天天气|坏: 2 ** (-7/4) (above). Mean: (2 ** (-3/4) + 2 ** (-7/4)) / 2 * 100 = 1.5 * 29.7301779 = 44.5952668
    report = aggregate([(REF, REF), ("今天天气坏", REF)], "chatglm3")
    assert report["bleu-4"] == 44.5953 and report["variant"] == "chatglm3"
    # three rows: bleu 30.2138 (method3 example), 0 (empty), 66.874 -> mean 32.36260 -> 32.3626
    three = aggregate([("今天大气好", REF), ("", REF), ("今天天气坏", REF)])
    assert three["bleu-4"] == round((30.2138 + 0.0 + 66.874) / 3, 4) == 32.3626


def test_aggregate_rejects_no_rows_and_unknown_variants():
    with pytest.raises(ValueError, match="no rows"):
        aggregate([])
    with pytest.raises(ValueError, match="unknown variant"):
        aggregate([(REF, REF)], "bleurt")


def test_conclusion_is_the_stripped_text_after_the_last_marker():
    assert conclusion(" EXPLAIN: a CONCLUSION: b CONCLUSION:  yes. ") == "yes."
    assert conclusion("no marker") is None


def test_conclusion_exact_match():
    rows = [
        ("EXPLAIN: other words. CONCLUSION: yes ", " EXPLAIN: because. CONCLUSION: yes"),  # match
        (" EXPLAIN: because. CONCLUSION: no", " EXPLAIN: because. CONCLUSION: yes"),  # miss
        ("yes", " EXPLAIN: because. CONCLUSION: yes"),  # no CONCLUSION: in the prediction -> miss
        ("free text", "free text"),  # reference without CONCLUSION: -> not counted
    ]
    report = aggregate(rows)
    # 1 of the 3 rows whose reference has a conclusion: 100/3 = 33.3333
    assert report["conclusion_rows"] == 3 and report["conclusion_exact_match"] == 33.3333
    assert report["rows"] == 4
    assert "conclusion_exact_match" not in aggregate([(REF, REF)])
