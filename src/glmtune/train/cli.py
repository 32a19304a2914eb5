"""``glmtune train CONFIG.yaml [key=value ...]``: fine-tune a ChatGLM-family model.

Every config key (see ``glmtune.train.config.TrainConfig``) can be given in the YAML file or as
``key=value`` (nested with dots: ``lora.r=16``). The same command runs under ``torchrun`` or
``accelerate launch`` for multi-process DDP.
"""

from __future__ import annotations

import argparse
import sys

from glmtune.config import key_listing, load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="glmtune train",
        description=__doc__.split("\n")[0],
        epilog="Quickstart (offline, CPU, about a minute of training): glmtune train examples/quickstart.yaml",
    )
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="YAML config (optional if all keys are given)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys, e.g. lora.r=16")
    p.add_argument("--list-keys", action="store_true", help="print every config key with its type, default and meaning, and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from glmtune.train.config import TrainConfig

    if args.list_keys:
        print("\n".join(key_listing(TrainConfig)))
        return 0
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]
    cfg = load_config(TrainConfig, config, overrides)
    from glmtune.train.data import check_inputs

    check_inputs(cfg.data_paths, "data")  # a wrong path fails at once, before torch is imported
    check_inputs(cfg.eval_paths, "eval_data")
    from glmtune.train.runner import run

    try:
        result = run(cfg)
    except KeyboardInterrupt:
        from glmtune.train.trainer import last_checkpoint

        found = last_checkpoint(cfg.output_dir)  # checkpoints appear atomically: the newest is complete
        again = " ".join(["glmtune train", *([config] if config else []), *overrides, "resume=auto"])
        if found:
            print(f"glmtune train: stopped; the last complete checkpoint is {found}. Continue with:\n  {again}",
                  file=sys.stderr)
        else:
            print("glmtune train: stopped before the first checkpoint (save_steps); nothing to resume",
                  file=sys.stderr)
        raise
    print(f"done: {result.global_step} steps, outputs in {result.output_dir}")
    return 0
