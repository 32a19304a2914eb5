"""``glmtune eval``: reading a predictions JSONL, the printed and written report, bad lines."""

from __future__ import annotations

import json
import re

from glmtune.cli import main as cli

REF = "今天天气好"


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _row(prediction, reference, **extra):
    return json.dumps(
        {"id": "x", "prediction": prediction, "reference": reference, **extra}, ensure_ascii=False
    )


def test_writes_report_json(tmp_path, capsys):
    # row 1 identical (100 everywhere), row 2 last character differs (bleu 66.874, rouge-1 50, rouge-2 0,
    # rouge-l 50; see test_metrics): means 83.437 / 75 / 50 / 75. A blank line is skipped silently.
    preds = _write(tmp_path / "preds.jsonl", [_row(REF, REF, messages=[]), "", _row("今天天气坏", REF)])
    out = tmp_path / "out" / "report.json"
    assert cli(["eval", str(preds), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text(encoding="utf-8"))
    assert {k: report[k] for k in ("bleu-4", "rouge-1", "rouge-2", "rouge-l", "rows")} == {
        "bleu-4": 83.437, "rouge-1": 75.0, "rouge-2": 50.0, "rouge-l": 75.0, "rows": 2,
    }  # fmt: skip
    assert report["variant"] == "ptuning" and report["skipped"] == 0
    assert re.search(r"^bleu-4\s+83\.4370$", captured.out, re.M)
    assert re.search(r"^rows\s+2$", captured.out, re.M)
    assert f"wrote {out}" in captured.out
    assert captured.err == ""  # jieba's loading banner is silenced
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temp file left


def test_variant_chatglm3(tmp_path, capsys):
    # words 今天天气|坏 vs 今天天气|好: BLEU 2 ** (-7/4) * 100 = 29.7302 (test_metrics)
    preds = _write(tmp_path / "preds.jsonl", [_row("今天天气坏", REF)])
    assert cli(["eval", str(preds), "--variant", "chatglm3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^bleu-4\s+29\.7302$", out, re.M) and re.search(r"^variant\s+chatglm3$", out, re.M)


def test_conclusion_exact_match_is_reported(tmp_path, capsys):
    preds = _write(
        tmp_path / "preds.jsonl",
        [
            _row(" EXPLAIN: a. CONCLUSION: yes", " EXPLAIN: b. CONCLUSION: yes"),
            _row("no", " EXPLAIN: b. CONCLUSION: no"),
        ],
    )
    out = tmp_path / "report.json"
    assert cli(["eval", str(preds), "-o", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["conclusion_exact_match"] == 50.0 and report["conclusion_rows"] == 2


def test_malformed_line_exits_2_naming_file_and_line(tmp_path, capsys):
    preds = _write(
        tmp_path / "preds.jsonl", [_row(REF, REF), '{"prediction": "a", "reference": ', _row(REF, REF)]
    )
    out = tmp_path / "report.json"
    assert cli(["eval", str(preds), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{preds}:2: malformed JSON" in err and "--on-error skip" in err
    assert not out.exists()


def test_missing_or_non_string_field_names_the_field(tmp_path, capsys):
    preds = _write(tmp_path / "preds.jsonl", [json.dumps({"prediction": "a"})])
    assert cli(["eval", str(preds)]) == 2
    assert f"{preds}:1: field 'reference' missing" in capsys.readouterr().err
    preds = _write(
        tmp_path / "preds.jsonl", [_row(REF, REF), json.dumps({"prediction": 3, "reference": "a"})]
    )
    assert cli(["eval", str(preds)]) == 2
    assert f"{preds}:2: field 'prediction': not a string (got int)" in capsys.readouterr().err


def test_on_error_skip_counts_bad_rows(tmp_path, capsys):
    preds = _write(
        tmp_path / "preds.jsonl",
        [_row(REF, REF), "not json", json.dumps({"prediction": "a"}), "[1, 2]", "{broken"],
    )
    out = tmp_path / "report.json"
    assert cli(["eval", str(preds), "--on-error", "skip", "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "  skipped 2 row(s): malformed JSON line" in stdout
    assert "  skipped 1 row(s): field 'reference' missing" in stdout
    assert "  skipped 1 row(s): not a JSON object" in stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["rows"] == 1 and report["skipped"] == 4 and report["bleu-4"] == 100.0
    assert report["skipped_reasons"] == {
        "malformed JSON line": 2,
        "field 'reference' missing": 1,
        "not a JSON object": 1,
    }


def test_no_rows_scored_is_an_error(tmp_path, capsys):
    preds = _write(tmp_path / "preds.jsonl", ["", "oops"])
    assert cli(["eval", str(preds), "--on-error", "skip"]) == 2
    assert "no rows to score (1 skipped)" in capsys.readouterr().err
    assert cli(["eval", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.jsonl: no such file")


def test_eval_is_listed_in_usage(capsys):
    assert cli(["--help"]) == 0
    assert re.search(r"^  eval\s+BLEU-4 and ROUGE-1/2/L", capsys.readouterr().out, re.M)
