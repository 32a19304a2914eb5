"""glmtune train and an existing output_dir: nothing lost, runs never mixed (through the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_overrides import base_overrides

from glmtune.cli import main as cli


def train(capsys, tiny_model, small_data, out, **extra) -> tuple[int, str, str]:
    code = cli(["train", *base_overrides(tiny_model, small_data, out, method="lora", **extra)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in x]


def test_a_run_with_other_settings_is_refused_not_mixed(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, tiny_model, small_data, out, max_steps=4, save_steps=2, **{"lora.r": 8})[0] == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    for resume in ({}, {"resume": "auto"}):
        code, _, err = train(capsys, tiny_model, small_data, out, max_steps=2, save_steps=1, **{"lora.r": 4},
                             **resume)  # fmt: skip
        assert code == 2 and "holds another run whose settings differ (lora.r: 8 -> 4)" in err, err
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]  # untouched
    code, _, _ = train(capsys, tiny_model, small_data, out, max_steps=2, save_steps=1, overwrite_output_dir="true",
                       **{"lora.r": 4})  # fmt: skip
    assert code == 0 and sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_files_glmtune_did_not_write_are_never_removed(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    code, _, err = train(capsys, tiny_model, small_data, out, max_steps=1)
    assert code == 2 and "holds files glmtune did not write (notes.txt)" in err and "overwrite_output_dir" in err
    assert (out / "notes.txt").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_resume_of_a_finished_run_trains_nothing_and_more_steps_continue(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, tiny_model, small_data, out, max_steps=4, save_steps=2)[0] == 0
    log = (out / "train_log.jsonl").read_text()
    code, stdout, _ = train(capsys, tiny_model, small_data, out, max_steps=4, save_steps=2, resume="auto")
    assert code == 0 and "already finished at step 4; nothing to train" in stdout, stdout
    assert "done: 4 steps" in stdout and (out / "train_log.jsonl").read_text() == log
    code, stdout, _ = train(capsys, tiny_model, small_data, out, max_steps=6, save_steps=2, resume="auto")
    assert code == 0 and "done: 6 steps" in stdout, stdout
    assert steps(out) == [1, 2, 3, 4, 5, 6]


def test_same_settings_without_resume_start_over(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, tiny_model, small_data, out, max_steps=4, save_steps=2)[0] == 0
    assert train(capsys, tiny_model, small_data, out, max_steps=3, save_steps=3)[0] == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # the old run's are gone
    assert steps(out) == [1, 2, 3]


@pytest.mark.parametrize("options,written", [([], None), (["on_error=skip"], 63), (["lenient=true", "on_error=skip"], 63)])
def test_train_takes_convert_options_for_raw_data(capsys, tiny_model, small_data, tmp_path, options, written):
    rows = json.loads(small_data.read_text(encoding="utf-8"))
    rows[5]["output"] = ""  # one bad row: an empty answer
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "run"
    code = cli(["train", *base_overrides(tiny_model, raw, out, method="lora", max_steps=1), *options])
    captured = capsys.readouterr()
    if written is None:
        assert code == 2 and "on_error=skip" in captured.err and "--on-error" not in captured.err, captured.err
    else:
        assert code == 0, captured.err
        assert f"{written}" in captured.out + captured.err


def test_columns_map_raw_data(capsys, tiny_model, tmp_path):
    raw = tmp_path / "adgen.json"
    raw.write_text(json.dumps([{"content": f"类型#裙*颜色#{i}", "summary": f"这条裙子是{i}色的"} for i in range(8)],
                              ensure_ascii=False), encoding="utf-8")  # fmt: skip
    out = tmp_path / "run"
    code = cli(["train", *base_overrides(tiny_model, raw, out, method="lora", max_steps=1),
                "columns={user: content, assistant: summary}"])  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_tokenized_folder_settings_are_honoured_or_refused(capsys, tiny_model, small_data, tmp_path):
    import yaml

    records = tmp_path / "r.jsonl"
    assert cli(["convert", str(small_data), "-o", str(records)]) == 0
    folder = tmp_path / "tok"
    assert cli(["tokenize", "--model", str(tiny_model), "--data", str(records), "-o", str(folder),
                "--cutoff-len", "64", "--num-proc", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "run"
    overrides = [o for o in base_overrides(tiny_model, folder, out, method="lora", max_steps=1) if "cutoff_len" not in o]
    assert cli(["train", *overrides, "cutoff_len=128"]) == 2  # set explicitly to another value: refused
    err = capsys.readouterr().err
    assert "cutoff_len: 128, but data" in err and "tokenized with cutoff_len=64" in err, err
    assert cli(["train", *overrides]) == 0  # left at its default: the folder's 64 is used and recorded
    saved = yaml.safe_load((out / "glmtune_train_config.yaml").read_text())
    assert saved["cutoff_len"] == 64


def test_overwrite_never_deletes_this_runs_inputs_nor_a_run_it_resumes(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, tiny_model, small_data, out, max_steps=2, save_steps=1)[0] == 0
    code, _, err = train(capsys, tiny_model, small_data, out, max_steps=3, resume="auto",
                         overwrite_output_dir="true")  # fmt: skip
    assert code == 2 and "contradict" in err and (out / "checkpoint-2").is_dir()
    code, _, err = train(capsys, tiny_model, small_data, out, max_steps=1, adapter=str(out),
                         overwrite_output_dir="true")  # fmt: skip
    assert code == 2 and "holds this run's own inputs (adapter=" in err, err
    assert (out / "adapter_model.safetensors").is_file()


def test_an_interrupted_run_is_not_silently_restarted(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, tiny_model, small_data, out, max_steps=2, save_steps=1)[0] == 0
    (out / "glmtune_run_done.json").unlink()  # as if killed after its last checkpoint, before the weights
    code, _, err = train(capsys, tiny_model, small_data, out, max_steps=2, save_steps=1)
    assert code == 2 and "unfinished run" in err and "resume=auto" in err
    code, stdout, _ = train(capsys, tiny_model, small_data, out, max_steps=2, save_steps=1, resume="auto")
    assert code == 0 and "already finished" not in stdout  # not finished: resumed (and completes the save)
    assert (out / "glmtune_run_done.json").is_file() and (out / "adapter_model.safetensors").is_file()


def test_more_epochs_continue_a_finished_epoch_run(capsys, tiny_model, small_data, tmp_path):
    out = tmp_path / "run"
    one = [o for o in base_overrides(tiny_model, small_data, out, method="lora", save_steps=4)
           if not o.startswith("max_steps")]
    assert cli(["train", *one, "num_epochs=1", "batch_size=16"]) == 0  # 64 rows: 4 steps, checkpoint-4
    capsys.readouterr()
    assert steps(out) == [1, 2, 3, 4]
    saved = (out / "checkpoint-4" / "trainer_state.json").stat().st_mtime_ns
    assert cli(["train", *one, "num_epochs=2", "batch_size=16", "resume=auto"]) == 0
    assert "already finished" not in capsys.readouterr().out and steps(out) == list(range(1, 9))
    assert (out / "checkpoint-4" / "trainer_state.json").stat().st_mtime_ns == saved  # continued, not redone


def test_a_run_that_stopped_before_training_does_not_lock_its_folder(capsys, tiny_model, small_data, tmp_path):
    """A bad model path or data row stops a run after its config is written: fixing the path and
    training into the same folder starts over (nothing was trained there); a trained run still blocks."""
    out = tmp_path / "run"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"oops": 1}\n', encoding="utf-8")
    code, _, err = train(capsys, tiny_model, bad, out, max_steps=2)
    assert code != 0 and (out / "glmtune_train_config.yaml").is_file(), err
    code, _, err = train(capsys, tiny_model, small_data, out, max_steps=2)
    assert code == 0, err
    assert steps(out) and (out / "adapter_config.json").is_file()
    code, _, err = train(capsys, tiny_model, small_data, out, max_steps=2, **{"lora.r": 4})
    assert code == 2 and "holds another run whose settings differ (lora.r: 8 -> 4)" in err, err
