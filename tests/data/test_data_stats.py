"""Length statistics of converted conversations."""

from __future__ import annotations

import numpy as np
import pytest

from glmtune.data.stats import COLUMNS, collect, describe, table

RECORDS = [
    {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "ab"},
                  {"role": "assistant", "content": "abcd"}]},
    {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "ab"},
                  {"role": "user", "content": "abc"}, {"role": "tool", "content": "t"},
                  {"role": "assistant", "content": "abcdef"}]},
]  # fmt: skip


def test_collect_counts_turns_and_characters():
    series = collect(RECORDS)
    assert series == {"turns": [1, 2], "user chars": [2, 1, 3], "assistant chars": [4, 2, 6]}
    assert collect(RECORDS, count=lambda t: 1, unit="tokens") == {
        "user tokens": [1, 1, 1],
        "assistant tokens": [1, 1, 1],
    }


def test_describe_matches_numpy():
    values = [3, 1, 4, 1, 5, 9, 2, 6]
    stats = describe(values)
    assert list(stats) == list(COLUMNS)
    assert stats["count"] == 8 and stats["min"] == 1 and stats["max"] == 9
    assert stats["mean"] == pytest.approx(np.mean(values)) and stats["std"] == pytest.approx(np.std(values))
    assert stats["90%"] == pytest.approx(np.percentile(values, 90))
    assert describe([])["count"] == 0


def test_table_has_one_row_per_series():
    text = table(collect(RECORDS)).splitlines()
    assert text[0].split() == list(COLUMNS)
    assert text[2].split() == ["user", "chars", "3", "2.0", "0.8", "1.0", "1.5", "2.0", "2.5", "2.8", "3.0"]
