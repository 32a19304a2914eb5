"""Near-JSON repair: only what is outside strings changes, and positions stay put."""

from __future__ import annotations

import json

from glmtune.data.lenient_json import relax


def test_trailing_commas_and_comments_removed_with_lines():
    text = '{\n "a": [1, 2,],  // two\n /* block\n comment */ "b": "x",\n}\n'
    fixed, fixes = relax(text)
    assert json.loads(fixed) == {"a": [1, 2], "b": "x"}
    assert fixes == [(2, "removed trailing comma"), (2, "removed comment"), (3, "removed comment"),
                     (4, "removed trailing comma")]  # fmt: skip
    assert fixed.count("\n") == text.count("\n") and len(fixed) == len(text)


def test_strings_are_left_alone():
    text = r'["a,]", "// not a comment", "/* nor this */", "esc \" ,]"]'
    fixed, fixes = relax(text)
    assert fixed == text and fixes == []


def test_comma_before_comment_then_bracket():
    fixed, fixes = relax("[1, // last\n]")
    assert json.loads(fixed) == [1] and [f[1] for f in fixes] == ["removed trailing comma", "removed comment"]
