"""``run(cfg)``: the whole ``glmtune train`` pipeline, from config to saved weights and loss.png.

config -> model folder (builtin or path) -> family -> tokenizer -> method -> model (+ method.apply)
-> tokenized datasets -> :class:`GlmTrainer` -> train (or resume) -> method.save + tokenizer +
resolved config -> loss.png -> final eval and sample answers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glmtune.config import to_dict
from glmtune.errors import ConfigError, GlmtuneError
from glmtune.train import data as train_data
from glmtune.train import outdir
from glmtune.train.callbacks import LOG_NAME, JsonlLogCallback
from glmtune.train.config import TrainConfig
from glmtune.train.distributed import fsdp_arguments
from glmtune.train.plot import plot_loss
from glmtune.train.precision import resolve_precision
from glmtune.train.trainer import GlmTrainer, clean_staging, last_checkpoint
from glmtune.utils.io import atomic_open

log = logging.getLogger("glmtune.train")
CONFIG_NAME = outdir.CONFIG_NAME


@dataclass
class RunResult:
    """What a finished run produced (also what tests look at)."""

    output_dir: Path
    global_step: int
    train_loss: float | None
    eval_before: float | None = None
    eval_after: float | None = None
    samples: list[tuple[str, str]] = field(default_factory=list)
    report: dict[str, Any] | None = None  # predict_eval's BLEU/ROUGE report
    trainer: Any = field(default=None, repr=False)  # the GlmTrainer (its .model is the trained model)


def resolve_resume(resume: str | None, output_dir: Path) -> str | None:
    """``auto`` -> newest checkpoint in output_dir (None when there is none); a path must exist."""
    if resume is None:
        return None
    if resume == "auto":
        found = last_checkpoint(output_dir)
        if found is None:
            log.info("resume=auto: no checkpoint in %s, starting from scratch", output_dir)
        return str(found) if found else None
    if not (Path(resume) / "trainer_state.json").is_file():
        raise ConfigError(f"resume: {resume} is not a checkpoint folder (no trainer_state.json)")
    return resume


def _tensorboard_under(trainer: Any, out: Path) -> None:
    """TensorBoard events go to ``output_dir/runs/...``; an eval before training would otherwise open
    the writer before ``on_train_begin`` picks a folder, i.e. in ``./runs`` of the current directory."""
    import datetime
    import socket

    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            stamp = datetime.datetime.now().strftime("%b%d_%H-%M-%S")
            callback.logging_dir = str(out / "runs" / f"{stamp}_{socket.gethostname()}")


def training_arguments(cfg: TrainConfig, precision: Any, has_eval: bool) -> Any:
    """transformers ``TrainingArguments`` mapped from the config."""
    import torch
    from transformers import TrainingArguments

    report_to = [r for r in cfg.report_to if r != "none"] or "none"
    eval_steps = cfg.eval_steps or cfg.save_steps
    return TrainingArguments(
        output_dir=cfg.output_dir,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        num_train_epochs=cfg.num_epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        fp16=precision.fp16,
        bf16=precision.bf16,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # the NaN guard must see a NaN, not a filtered mean
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        report_to=report_to,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if cfg.group_by_length and not cfg.packing else "random",
        length_column_name="length",
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        deepspeed=cfg.deepspeed,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # also makes torchrun on CPU run DDP over gloo
        **fsdp_arguments(cfg.fsdp, torch.cuda.is_available()),
    )


def load_tokenizer_and_family(cfg: TrainConfig) -> tuple[Any, str]:
    """(tokenizer, family): cheap, so data problems surface before the model is loaded."""
    import glmtune
    from glmtune.models.tiny import resolve_model_path

    model_path = resolve_model_path(cfg.model)
    family = cfg.family or glmtune.detect_family(model_path)
    cfg.family = family
    return glmtune.load_tokenizer(model_path, family=family), family


def load_model_and_method(cfg: TrainConfig, family: str) -> tuple[Any, Any, Any]:
    """(model with the method applied, method, precision)."""
    import glmtune
    from glmtune.methods import get_method
    from glmtune.models.tiny import resolve_model_path

    method = get_method(cfg.method)
    precision = resolve_precision(cfg.precision, cfg.method)
    kwargs: dict[str, Any] = {"dtype": precision.load_dtype, **method.model_load_kwargs(cfg)}
    if cfg.rope_scaling is not None:
        kwargs["rope_scaling"] = {"type": cfg.rope_scaling.type, "factor": cfg.rope_scaling.factor}
    kwargs.setdefault("attn_implementation", cfg.attn_implementation)
    model = glmtune.load_model(resolve_model_path(cfg.model), family=family, **kwargs)
    model = method.apply(model, cfg)
    log.info("method %s: %s%s", cfg.method, method.trainable_summary(model),
             "; gradient checkpointing on" if method.checkpointing(cfg) else "")
    return model, method, precision


def build_datasets(cfg: TrainConfig, tokenizer: Any, family: str) -> tuple[Any, Any, str]:
    """(train dataset, eval dataset or None, template name)."""
    from glmtune.data.templates import resolve_template
    from glmtune.models.families import get_family

    out = Path(cfg.output_dir)
    cache = out / "data"
    train_paths = train_data.prepare_inputs(cfg.data_paths, "data", cfg, cache)
    template = train_data.folder_template(train_paths)  # a tokenized folder is already in one format
    if template and cfg.template and resolve_template(tokenizer, cfg.template).name != template:
        raise ConfigError(f"template: {cfg.template!r}, but data {cfg.data_paths[0]} was tokenized with "
                          f"{template!r}; drop the template key or tokenize again")  # fmt: skip
    template = template or cfg.template or get_family(resolve_model_dir(cfg), family).default_template
    train = train_data.tokenize(cfg, tokenizer, train_paths, template, cache / "tokenized")
    dev = None
    if cfg.eval_paths:
        eval_paths = train_data.prepare_inputs(cfg.eval_paths, "eval_data", cfg, cache)
        dev = train_data.tokenize(cfg, tokenizer, eval_paths, template, cache / "tokenized")
    elif cfg.val_size:
        train, dev = train_data.split_val(train, cfg.val_size, cfg.seed)
    if cfg.packing:
        train = train_data.pack(train, cfg.cutoff_len)
    return train, dev, template


def resolve_model_dir(cfg: TrainConfig) -> Path:
    from glmtune.models.tiny import resolve_model_path

    return resolve_model_path(cfg.model)


def padding_free(cfg: TrainConfig, model: Any) -> bool:
    """Flattened batches where the model keeps examples apart without a mask (else padded batches)."""
    from glmtune.models.glm_mapping.flat_attention import enable_padding_free

    if not cfg.padding_free:
        return False
    if enable_padding_free(model):
        return True
    log.info("padding_free: %s with %s attention keeps padded batches", type(model).__name__,
             getattr(getattr(model, "config", None), "_attn_implementation", "?"))
    return False


def _write_config(out: Path, cfg: TrainConfig) -> None:
    with atomic_open(out / CONFIG_NAME) as fh:
        yaml.safe_dump(to_dict(cfg), fh, allow_unicode=True, sort_keys=False)


def save_outputs(cfg: TrainConfig, trainer: Any, method: Any, tokenizer: Any) -> None:
    """Weights/adapter (method's format), tokenizer and the resolved config.

    Every rank enters the Trainer's ``save_model`` (it gathers DeepSpeed ZeRO-3 / FSDP shards); the main
    process then writes the method's files from the gathered state dict (None when nothing is sharded).
    """
    out = Path(cfg.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)

    def write(folder: str, state_dict: dict[str, Any] | None) -> None:
        if state_dict is None:  # a method written before save() took state_dict still works unsharded
            method.save(model, folder, tokenizer)
        else:
            method.save(model, folder, tokenizer, state_dict=state_dict)
        _write_config(Path(folder), cfg)
        from glmtune.models.tokenization.fast_export import write_fast_files

        write_fast_files(folder, tokenizer=tokenizer)  # tokenizer.json, chat template, stop ids: plain transformers loads it

    written = trainer.save_final(str(out), write)
    if trainer.args.should_save and not written:
        raise GlmtuneError(f"output_dir: the trained weights were not written to {out} (the Trainer saved "
                           "nothing; with fsdp, keep its state_dict_type FULL_STATE_DICT)")
    trainer.accelerator.wait_for_everyone()


def run(cfg: TrainConfig, callbacks: list[Any] | None = None) -> RunResult:
    """Train according to ``cfg``; see the module docstring for the steps."""
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    state = PartialState(cpu=not torch.cuda.is_available())  # cpu=True: torchrun on CPU -> gloo DDP
    out = Path(cfg.output_dir)
    fsdp_arguments(cfg.fsdp, torch.cuda.is_available())  # refused on CPU before any data or model work
    train_data.check_inputs(cfg.data_paths, "data")  # before minutes of model loading
    train_data.check_inputs(cfg.eval_paths, "eval_data")
    train_data.reconcile_tokenized(cfg, cfg.data_paths)  # the settings saved below are the ones used
    if cfg.adapter and cfg.method in ("lora", "qlora"):
        from glmtune.methods.lora import adopt_adapter_settings, read_lora_config

        adopt_adapter_settings(cfg, cfg.adapter, read_lora_config(cfg.adapter))
    if cfg.gradient_checkpointing is None:  # resolved here, so the saved config says what ran
        from glmtune.methods import get_method

        cfg.gradient_checkpointing = get_method(cfg.method).checkpointing(cfg)
    settings = to_dict(cfg)
    outdir.claim(out, settings, cfg.resume, cfg.overwrite_output_dir, act=False)  # every rank: same verdict
    resume = resolve_resume(cfg.resume, out)
    done = outdir.finished(out, Path(resume), cfg.max_steps, cfg.num_epochs) if resume else None
    if done is not None:
        print(f"{out}: this run already finished at step {done}; nothing to train "
              "(raise max_steps to train further)")  # fmt: skip
        return RunResult(output_dir=out, global_step=done, train_loss=None)
    if resume:
        log.info("resuming from %s (its run's settings match this config)", resume)
    state.wait_for_everyone()
    with state.main_process_first():  # build the tiny base / convert / tokenize once
        if state.is_main_process:
            outdir.claim(out, settings, cfg.resume, cfg.overwrite_output_dir)
            out.mkdir(parents=True, exist_ok=True)
            clean_staging(out)
            if resume is None and (out / LOG_NAME).exists():
                (out / LOG_NAME).unlink()  # a fresh run starts a fresh log
            (out / outdir.DONE_NAME).unlink(missing_ok=True)  # this run is not finished until its weights are
            _write_config(out, cfg)  # first: the folder is recognisably this run's, even if it stops early
        set_seed(cfg.seed)
        tokenizer, family = load_tokenizer_and_family(cfg)
        train_ds, eval_ds, template = build_datasets(cfg, tokenizer, family)  # data errors before the model
        cfg.template = template  # recorded with the output: inference uses the format training used
        model, method, precision = load_model_and_method(cfg, family)
    log.info("data: %d train examples, %s eval examples, template %s", len(train_ds),
             len(eval_ds) if eval_ds is not None else 0, template)  # fmt: skip
    jsonl = JsonlLogCallback(out)
    trainer = GlmTrainer(
        model=model,
        args=training_arguments(cfg, precision, eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=train_data.make_collator(tokenizer, packing=cfg.packing, flatten=padding_free(cfg, model)),
        callbacks=[jsonl, *(callbacks or [])],
        chunked_loss=cfg.chunked_loss,
    )
    jsonl.trainer = trainer
    _tensorboard_under(trainer, out)
    result = RunResult(output_dir=out, global_step=0, train_loss=None, trainer=trainer)
    if cfg.eval_before and eval_ds is not None:
        result.eval_before = trainer.evaluate(metric_key_prefix="eval_before")["eval_before_loss"]
    output = trainer.train(resume_from_checkpoint=resume)
    result.global_step, result.train_loss = output.global_step, output.training_loss
    save_outputs(cfg, trainer, method, tokenizer)
    if state.is_main_process:
        outdir.mark_done(out, result.global_step)
    if eval_ds is not None:
        result.eval_after = trainer.evaluate()["eval_loss"]
    if state.is_main_process:
        plot_loss(out / LOG_NAME, out / "loss.png", title=f"glmtune train: {cfg.method} on {Path(cfg.model).name}")
        if result.eval_before is not None and result.eval_after is not None:
            print(f"eval loss: before {result.eval_before:.4f} -> after {result.eval_after:.4f}"
                  f" (perplexity {math.exp(min(result.eval_before, 50)):.1f} -> {math.exp(min(result.eval_after, 50)):.1f})")  # fmt: skip
        trained = trainer.accelerator.unwrap_model(trainer.model)
        if cfg.predict_eval and eval_ds is not None:
            from glmtune.train.predict_eval import dev_conversations, predict_and_score

            paths = train_data.prepare_inputs(cfg.eval_paths or cfg.data_paths, "eval_data", cfg, out / "data")
            rows = dev_conversations(paths, eval_ds, cfg.predict_eval)
            result.report = predict_and_score(out, trained, tokenizer, template, rows, cfg.max_new_tokens,
                                              result.eval_after)  # fmt: skip
            print("predict_eval: " + ", ".join(f"{k} {v}" for k, v in result.report.items()
                                                if k in ("rows", "bleu-4", "rouge-1", "rouge-2", "rouge-l")))
        if cfg.sample_prompts:
            from glmtune.inference.engine import Engine
            from glmtune.inference.settings import GenerationSettings

            engine = Engine(trained, tokenizer, template)
            settings = GenerationSettings(temperature=0, max_new_tokens=cfg.max_new_tokens)
            answers = engine.generate([[{"role": "user", "content": p}] for p in cfg.sample_prompts], settings)
            result.samples = [(p, a.text) for p, a in zip(cfg.sample_prompts, answers)]
            for prompt, answer in result.samples:
                print(f"sample: {prompt!r} -> {answer!r}")
    return result
