"""convert_files and the convert CLI in-process: counting, splitting, atomic output, clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from glmtune.cli import main as cli
from glmtune.data.convert import convert_files, dev_path, split
from glmtune.errors import DataError


def write_json(path, rows):
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def alpaca(n, bad=()):
    return [{"instruction": f"q{i}", "input": "", "output": "" if i in bad else f"a{i}"} for i in range(n)]


def test_records_ids_meta_and_report(tmp_path):
    src = write_json(tmp_path / "src.json", [{"id": "x", **alpaca(1)[0]}, *alpaca(2)[1:]])
    logs: list[str] = []
    report = convert_files([src], tmp_path / "out.jsonl", log=logs.append)
    recs = lines(tmp_path / "out.jsonl")
    assert [r["id"] for r in recs] == ["x", "src-2"]
    assert recs[1]["meta"] == {"source": "src.json", "row": 2, "format": "alpaca"}
    assert recs[1]["messages"] == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    assert logs == [f"{src}: format: alpaca (auto-detected from keys instruction, input, output)"]
    assert (report.read, report.written, report.outputs) == (2, 2, {tmp_path / "out.jsonl": 2})


def test_bad_row_errors_by_default_naming_file_line_row_field(tmp_path):
    src = write_json(tmp_path / "src.json", alpaca(3, bad={1}))
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=r"src\.json:7: row 2: field 'output': empty \(--on-error skip"):
        convert_files([src], out)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # no half file, no temp file


def test_skip_counts_every_dropped_row(tmp_path, capsys):
    src = write_json(tmp_path / "src.json", [*alpaca(5, bad={1, 3}), {"instruction": "q"}, "not a row"])
    logs: list[str] = []
    report = convert_files([src], tmp_path / "out.jsonl", on_error="skip", log=logs.append)
    assert logs[0].endswith(
        "format: alpaca (auto-detected from keys instruction, input, output, in 5 of 6 leading rows)"
    )
    assert report.read == 7 and report.written == 3
    assert dict(report.skipped) == {"empty 'output'": 2, "missing 'output'": 1, "not an object 'row'": 1}
    assert report.written + sum(report.skipped.values()) == report.read
    assert len(lines(tmp_path / "out.jsonl")) == 3
    summary = report.summary()
    assert "skipped 2 row(s): empty 'output'" in summary and "wrote 3 row(s)" in summary


def test_all_rows_skipped_is_an_error_and_writes_nothing(tmp_path):
    src = write_json(tmp_path / "src.json", alpaca(2, bad={0, 1}))
    with pytest.raises(DataError, match="no rows to write: 2 read"):
        convert_files([src], tmp_path / "out.jsonl", on_error="skip", log=lambda _m: None)
    assert not (tmp_path / "out.jsonl").exists()


def test_failed_run_keeps_the_previous_output(tmp_path):
    out = tmp_path / "out.jsonl"
    previous = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
    out.write_text(previous, encoding="utf-8")  # an earlier convert output: may be replaced, not damaged
    good = write_json(tmp_path / "good.json", alpaca(2))
    (tmp_path / "bad.json").write_text("[{]", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:1:3"):
        convert_files([good, tmp_path / "bad.json"], out, log=lambda _m: None)
    assert out.read_text(encoding="utf-8") == previous


def test_an_output_glmtune_did_not_write_is_never_replaced(tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text("my own notes\n", encoding="utf-8")
    good = write_json(tmp_path / "good.json", alpaca(2))
    with pytest.raises(DataError, match="not a file glmtune convert wrote.*--overwrite"):
        convert_files([good], out, log=lambda _m: None)
    assert out.read_text(encoding="utf-8") == "my own notes\n"
    convert_files([good], out, log=lambda _m: None, overwrite=True)
    assert len(lines(out)) == 2


def test_split_is_seeded_and_sized(tmp_path):
    src = write_json(tmp_path / "src.json", alpaca(50))
    out = tmp_path / "out.jsonl"
    report = convert_files([src], out, val_size=0.1, seed=7, log=lambda _m: None)
    train, dev = lines(out), lines(dev_path(out))
    assert (len(train), len(dev)) == (45, 5) and report.outputs == {out: 45, dev_path(out): 5}
    assert sorted(r["id"] for r in train + dev) == sorted(f"src-{i}" for i in range(1, 51))
    convert_files([src], tmp_path / "again.jsonl", val_size=0.1, seed=7, log=lambda _m: None)
    assert lines(tmp_path / "again.dev.jsonl") == dev
    assert split(list(range(10)), 3, seed=1)[1] != split(list(range(10)), 3, seed=2)[1]
    assert split(list(range(10)), 3, seed=1)[1] == sorted(split(list(range(10)), 3, seed=1)[1])
    for bad in (50, -3, -0.1, 1.5):
        with pytest.raises(DataError, match="--val-size"):
            convert_files([src], out, val_size=bad, log=lambda _m: None)


def test_several_inputs_and_formats_concatenate(tmp_path):
    a = write_json(tmp_path / "a.json", alpaca(2))
    b = tmp_path / "b.jsonl"
    b.write_text(
        json.dumps({"conversations": [{"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}]}) + "\n"
    )
    report = convert_files([a, b], tmp_path / "out.jsonl", log=lambda _m: None)
    assert [f.format for f in report.inputs] == ["alpaca", "sharegpt"]
    assert [r["id"] for r in lines(tmp_path / "out.jsonl")] == ["a-1", "a-2", "b-1"]


def test_input_cannot_be_output(tmp_path):
    src = write_json(tmp_path / "src.jsonl", alpaca(1))
    with pytest.raises(DataError, match="input and output are the same file"):
        convert_files([src], src)


def test_cli_map_csv_val_size_and_summary(tmp_path, capsys):
    src = tmp_path / "adgen.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["content", "summary"])
        writer.writerows([[f"类型#裙*颜色#{i}", f"这条裙子{i}"] for i in range(10)])
    out = tmp_path / "o.jsonl"
    assert (
        cli(
            [
                "convert",
                str(src),
                "-o",
                str(out),
                "--map",
                "user=content",
                "assistant=summary",
                "--val-size",
                "2",
            ]
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert (
        "format: columns (from --map)" in stdout and "wrote 8 row(s)" in stdout and "wrote 2 row(s)" in stdout
    )
    assert lines(out)[0]["messages"][1]["content"].startswith("这条裙子")


def test_cli_chatglm_column_options(tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text(
        json.dumps({"q": "问", "a": "答", "h": [["早", "好"]]}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    out = tmp_path / "o.jsonl"
    argv = ["convert", str(src), "-o", str(out), "--format", "chatglm"]
    assert cli([*argv, "--prompt-column", "q", "--response-column", "a", "--history-column", "h"]) == 0
    assert [m["content"] for m in lines(out)[0]["messages"]] == ["早", "好", "问", "答"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope.json"], "glmtune convert: error: nope.json: no such file\n"),
        (["{src}", "--format", "yaml"], "unknown data format 'yaml'; choose one of: alpaca, belle"),
        (["{src}", "--map", "user=a"], "--map needs assistant=COLUMN"),
        (["{src}", "--format", "columns"], "--format columns needs --map user=COLUMN assistant=COLUMN"),
        (["{src}", "--format", "alpaca", "--map", "user=a", "assistant=b"], "--map is for --format columns"),
    ],
)
def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys, argv, message):
    src = write_json(tmp_path / "src.json", alpaca(1))
    argv = [a.format(src=src) for a in argv]
    assert cli(["convert", *argv, "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
