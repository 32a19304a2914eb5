"""What ``glmtune train`` may do with an existing ``output_dir``: nothing is lost, nothing is mixed.

A run writes its resolved config (``glmtune_train_config.yaml``) into ``output_dir`` before it
trains, so a folder is always recognisable as a glmtune run, even an interrupted one. Then:

- empty or new folder: train;
- a glmtune run with the same settings: ``resume=auto`` continues it from its newest checkpoint
  (a finished run says so and trains nothing); without ``resume`` it starts over, removing only
  the files that run wrote;
- a glmtune run with other settings (anything that changes the weights): refused, naming the keys,
  unless ``overwrite_output_dir=true``, or unless that run trained nothing (it stopped at a bad path
  or data row before its first step: only its config and converted data are there);
- a folder holding files glmtune did not write: refused unless ``overwrite_output_dir=true``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from glmtune.errors import ConfigError

log = logging.getLogger("glmtune.train")
CONFIG_NAME = "glmtune_train_config.yaml"
DONE_NAME = "glmtune_run_done.json"  # written after the final weights: the run finished
# keys that change how long, how often or where a run logs/saves, never what a step computes
# (gradient checkpointing recomputes the same values)
NEUTRAL_KEYS = frozenset({
    "output_dir", "resume", "overwrite_output_dir", "max_steps", "num_epochs", "logging_steps", "save_steps",
    "save_total_limit", "eval_steps", "eval_before", "report_to", "sample_prompts", "max_new_tokens",
    "num_proc", "eval_batch_size", "predict_eval", "deepspeed", "fsdp", "gradient_checkpointing",
})  # fmt: skip
# what a run writes into output_dir (and so what starting over may remove)
RUN_FILES = re.compile(
    r"^(checkpoint-\d+|\.tmp-.*|runs|data|train_log\.jsonl|loss\.png|glmtune_.*|adapter_.*|model.*\.safetensors"
    r"|model\.safetensors\.index\.json|pytorch_model.*\.bin|config\.json|generation_config\.json|tokenizer.*"
    r"|special_tokens_map\.json|added_tokens\.json|chat_template\.jinja|ice_text\.model|README\.md"
    r"|deepspeed_weights|predictions?.*\.jsonl|eval_report\.json)$"
)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("columns",):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def weight_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what the weights become (``NEUTRAL_KEYS`` left out)."""
    return {k: v for k, v in _flatten(settings).items() if k.split(".")[0] not in NEUTRAL_KEYS}


RESOLVED_KEYS = ("family", "template")  # None means "the default": the saved run records what it resolved to


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = weight_settings(old), weight_settings(new)
    for key in RESOLVED_KEYS:
        if a.get(key) is None or b.get(key) is None:
            a.pop(key, None), b.pop(key, None)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def read_previous(out: Path) -> dict[str, Any] | None:
    path = out / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _inputs(settings: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for key in ("model", "adapter", "data", "eval_data", "deepspeed"):
        value = settings.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item and not item.startswith("builtin:"):
                found.append((key, item))
    return found


def _within(path: str, folder: Path) -> bool:
    try:
        Path(path).expanduser().resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _foreign(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not RUN_FILES.match(p.name))


TRAINED = re.compile(r"^(checkpoint-\d+|train_log\.jsonl|glmtune_run_done\.json|adapter_.*|model.*\.safetensors"
                     r"|pytorch_model.*\.bin|deepspeed_weights|runs)$")  # a run that wrote any of these trained


def _never_trained(out: Path) -> bool:
    """Only glmtune's own files, and none a training step or a save writes (config, converted data)."""
    names = [p.name for p in out.iterdir()]
    return all(RUN_FILES.match(n) for n in names) and not any(TRAINED.match(n) for n in names)


def _remove_run_files(out: Path) -> None:
    for child in out.iterdir():
        if RUN_FILES.match(child.name) and child.name != CONFIG_NAME:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def finished(out: Path, checkpoint: Path, max_steps: int | None, num_epochs: float) -> int | None:
    """The step the run in ``out`` finished at, when ``checkpoint`` is its end and this config asks for
    no more (more max_steps or epochs continue it); None otherwise, e.g. for a run killed before its
    final weights were written."""
    if not (out / DONE_NAME).is_file():
        return None
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    step, planned = int(state.get("global_step", 0)), int(state.get("max_steps", 0) or 0)
    if max_steps is None and float(state.get("num_train_epochs") or 0) < num_epochs:
        return None
    target = max_steps if max_steps is not None else planned
    return step if target and step >= target else None


def mark_done(out: Path, step: int) -> None:
    (out / DONE_NAME).write_text(json.dumps({"global_step": step}) + "\n", encoding="utf-8")


def claim(out: Path, settings: dict[str, Any], resume: str | None, overwrite: bool, act: bool = True) -> None:
    """Make ``out`` ready for this run or raise a ConfigError saying what to do.

    Every rank calls it with ``act=False`` first (the same files give the same verdict everywhere,
    so no rank waits on one that failed); then the main process alone, with ``act=True``, removes.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"output_dir: {out} is a file, not a folder")
    if not any(out.iterdir()):
        return
    if overwrite:
        if resume:
            raise ConfigError("resume and overwrite_output_dir=true contradict each other: the first continues the "
                              f"run in {out}, the second deletes it; drop one")
        inside = [f"{key}={value}" for key, value in _inputs(settings) if _within(value, out)]
        if inside:
            raise ConfigError(f"overwrite_output_dir: {out} holds this run's own inputs ({', '.join(inside)}); "
                              "they would be deleted before they are read: choose another output_dir")
        if not act:
            return
        log.info("overwrite_output_dir: replacing the contents of %s", out)
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        return
    previous = read_previous(out)
    if previous is None:
        foreign = _foreign(out) or sorted(p.name for p in out.iterdir())
        raise ConfigError(
            f"output_dir: {out} is not empty and holds files glmtune did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); choose another output_dir, or pass "
            "overwrite_output_dir=true to replace its contents"
        )
    changed = differences(previous, settings)
    if changed and _never_trained(out):  # e.g. stopped at a bad model path or data row: nothing to keep
        if act:
            log.info("output_dir %s holds only the start of a run that trained nothing (%s): starting over",
                     out, "; ".join(changed[:3]))
            _remove_run_files(out)
        return
    if changed:
        what = "resume it" if resume else "train into it"
        raise ConfigError(
            f"output_dir: {out} holds another run whose settings differ ({'; '.join(changed[:6])}); "
            f"cannot {what}. Choose another output_dir, or pass overwrite_output_dir=true to replace that run"
        )
    if resume is None and not (out / DONE_NAME).is_file() and any(out.glob("checkpoint-*")):
        raise ConfigError(f"output_dir: {out} holds an unfinished run with these settings and checkpoints; pass "
                          "resume=auto to continue it, or overwrite_output_dir=true to start over")
    if resume is None:
        foreign = _foreign(out)
        if foreign:
            raise ConfigError(f"output_dir: {out} also holds files glmtune did not write ({', '.join(foreign[:5])}); "
                              "move them, or pass overwrite_output_dir=true")  # fmt: skip
        if act:
            log.info("output_dir %s holds an earlier run with the same settings: starting over "
                     "(resume=auto would continue it)", out)  # fmt: skip
            _remove_run_files(out)
