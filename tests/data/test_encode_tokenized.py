"""The cached tokenized dataset: contents equal encode(), reuse on the same fingerprint, retokenize on change."""

from __future__ import annotations

import json

import glmtune
from glmtune.data.encode import EncodeOptions
from glmtune.data.tokenized import build_tokenized_dataset, load_tokenized


def _write(path, n):
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            msgs = [{"role": "user", "content": f"问题{i}：请介绍一下北京。" * (1 + i % 3)},
                    {"role": "assistant", "content": f"回答{i}：北京是中国的首都。" * (1 + i % 5)}]
            fh.write(json.dumps({"messages": msgs, "id": i, "meta": {}}, ensure_ascii=False) + "\n")


def test_build_reuse_and_invalidate(reference, tmp_path):
    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm2-mini")
    data = tmp_path / "d.jsonl"
    _write(data, 600)
    opts = EncodeOptions(cutoff_len=48)
    ds, report = build_tokenized_dataset(tok, [data], None, opts, cache_dir=tmp_path / "cache", progress=False)
    assert not report.reused and report.examples == len(ds) == 600 and report.truncated > 0
    assert max(ds["length"]) <= 48 and report.lengths["max"] <= 48
    first = json.loads(data.read_text(encoding="utf-8").splitlines()[0])
    assert ds[0]["input_ids"] == glmtune.encode(tok, first["messages"], cutoff_len=48)["input_ids"]
    again, report2 = build_tokenized_dataset(tok, [data], None, opts, cache_dir=tmp_path / "cache", progress=False)
    assert report2.reused and report2.fingerprint == report.fingerprint and len(again) == 600
    other, report3 = build_tokenized_dataset(tok, [data], None, EncodeOptions(cutoff_len=64),
                                             cache_dir=tmp_path / "cache", progress=False, num_proc=1)
    assert not report3.reused and report3.fingerprint != report.fingerprint
    assert other["input_ids"][:5] != ds["input_ids"][:5] or report3.truncated < report.truncated
    # a tokenized folder given as the data is loaded as is
    folder = tmp_path / "cache" / report.fingerprint[:20]
    loaded, meta = load_tokenized(folder)
    assert meta["fingerprint"] == report.fingerprint and len(loaded) == 600
    direct, report4 = build_tokenized_dataset(tok, folder, progress=False)
    assert report4.reused and len(direct) == 600
    assert "token lengths" in str(report)


def test_everything_dropped_is_a_clear_error_and_caches_nothing(reference, tmp_path):
    import pytest

    from glmtune.errors import DataError

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm2-mini")
    data = tmp_path / "d.jsonl"
    _write(data, 5)
    # [gMASK] sop + eos are never cut and already fill 3 tokens: nothing is left to learn
    with pytest.raises(DataError, match=r"no training examples.*5 conversations.*all 5 dropped.*cutoff_len"):
        build_tokenized_dataset(tok, [data], None, EncodeOptions(cutoff_len=3), cache_dir=tmp_path / "cache",
                                progress=False)  # fmt: skip
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_tokenized_folder_of_another_tokenizer_is_refused(reference, tmp_path):
    import pytest

    from glmtune.errors import DataError

    data = tmp_path / "d.jsonl"
    _write(data, 4)
    v3 = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm3-mini")
    build_tokenized_dataset(v3, [data], None, EncodeOptions(), output_dir=tmp_path / "tok", progress=False)
    meta = json.loads((tmp_path / "tok" / "glmtune_tokenized.json").read_text(encoding="utf-8"))
    assert meta["template"] == "chatglm3" and len(meta["tokenizer"]) == 64
    again, report = build_tokenized_dataset(v3, tmp_path / "tok", progress=False)  # same tokenizer: reused
    assert report.reused and len(again) == 4
    v2 = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm2-mini")
    with pytest.raises(DataError, match=r"tok: tokenized with another tokenizer .*chatglm3.*glmtune tokenize"):
        build_tokenized_dataset(v2, tmp_path / "tok", progress=False)


def test_fingerprint_follows_the_encoding_code(reference, tmp_path, monkeypatch):
    # glmtune's version string does not change with every fix to a template or to truncation, so the
    # cache key covers the encoding source itself: a changed rule must never reuse stale ids
    from glmtune.data import tokenized

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm2-mini")
    data = tmp_path / "d.jsonl"
    _write(data, 3)
    assert any(p.name == "truncation.py" for p in tokenized.encoding_sources())
    assert any(p.parent.name == "templates" for p in tokenized.encoding_sources())
    fake = tmp_path / "rule.py"
    fake.write_text("RULE = 1\n")
    monkeypatch.setattr(tokenized, "encoding_sources", lambda: [fake])
    tokenized.code_fingerprint.cache_clear()
    before = tokenized.fingerprint(tok, [data], "chatglm2", EncodeOptions())
    fake.write_text("RULE = 2\n")
    tokenized.code_fingerprint.cache_clear()
    assert tokenized.fingerprint(tok, [data], "chatglm2", EncodeOptions()) != before
    tokenized.code_fingerprint.cache_clear()


def test_encoding_error_names_file_and_line(reference, tmp_path):
    import pytest

    from glmtune.errors import DataError

    tok = glmtune.load_tokenizer(reference / "checkpoints" / "chatglm2-mini")
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    tool = {"messages": [{"role": "user", "content": "weather?"}, {"role": "tool", "content": "sunny"},
                         {"role": "assistant", "content": "It is sunny."}]}  # fmt: skip
    data = tmp_path / "d.jsonl"
    data.write_text(f"{json.dumps(good)}\n\n{json.dumps(tool)}\n", encoding="utf-8")  # a blank line 2
    with pytest.raises(DataError, match=r"d\.jsonl:3: field 'messages\[1\]\.role': template 'chatglm2' needs "
                                        r"alternating user/assistant turns \(expected assistant, got 'tool'\)"):
        build_tokenized_dataset(tok, [data], None, EncodeOptions(), progress=False)
