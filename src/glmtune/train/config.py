"""``TrainConfig``: every key of ``glmtune train CONFIG.yaml [key=value ...]``.

The names are part of glmtune's interface (users, docs and tests rely on them). Validation that
needs more than the type check of :mod:`glmtune.config` happens in ``__post_init__`` and raises
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from glmtune.config import BLOCKS
from glmtune.errors import ConfigError
from glmtune.methods import METHODS as METHOD_REGISTRY
from glmtune.methods import method_config_classes
from glmtune.train.distributed import check_fsdp


@dataclass
class RopeScaling:
    """RoPE scaling for long context (LongChat-style condensed positions); passed to ``load_model``."""

    type: Literal["linear", "dynamic"] = "linear"  # linear: positions / factor; dynamic: NTK-aware base
    factor: float = 1.0  # context multiplier, > 1

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ConfigError(f"rope_scaling.factor: must be > 0, got {self.factor}")


@dataclass
class TrainConfig:
    """One training run. Every key can be set in YAML or as ``key=value`` (nested: ``lora.r=16``)."""

    # --- model ---
    model: str = ""  # checkpoint folder (THUDM or transformers layout) or builtin:tiny-chatglm2
    family: str | None = None  # model family override (chatglm, chatglm2, chatglm3, glm4, hf); default: detected
    method: str = "lora"  # what is trained: a registered tuning method (lora, qlora, freeze, ptuning, full, ...)
    adapter: str | None = None  # continue training from this adapter folder (LoRA / P-Tuning)
    rope_scaling: RopeScaling | None = None  # {type: linear|dynamic, factor: F} for longer context
    # --- data ---
    data: str | list[str] = ""  # converted JSONL file(s), raw dataset files (see data_format) or a tokenized dir
    data_format: str = "auto"  # raw (non-JSONL-records) inputs are converted on the fly with this format
    on_error: Literal["error", "skip"] = "error"  # raw data: a bad row stops the run, or is skipped and counted
    lenient: bool = False  # raw JSON data: accept trailing commas and comments (reported per line)
    columns: dict[str, str] = field(default_factory=dict)  # raw data, format columns: {user: COL, assistant: COL}
    prompt_column: str = "prompt"  # raw data, format chatglm: the prompt column
    response_column: str = "response"  # raw data, format chatglm: the response column
    history_column: str | None = None  # raw data, format chatglm: the history column (default: history)
    eval_data: str | list[str] | None = None  # dev set(s), same kinds as data
    val_size: int | float = 0  # carve this many rows (int) or this ratio (float) from data when no eval_data
    template: str | None = None  # chat template; default: the family's
    multi_turn: Literal["all", "last", "split"] = "all"  # which assistant turns are trained
    train_on_prompt: bool = False  # also compute the loss on prompt tokens
    cutoff_len: int | None = 1024  # max tokens per example (prompt + answer)
    max_source_length: int | None = None  # ChatGLM-style prompt budget (with max_target_length)
    max_target_length: int | None = None  # ChatGLM-style answer budget
    truncate_side: Literal["left", "right"] = "right"  # which end of an over-long prompt is cut
    round_prompt_always: bool = False  # chatglm (v1): '[Round 0]' prompt without history (official ptuning)
    train_on_observation: bool = True  # chatglm3: learn tool-result turns, as finetune_hf.py does
    packing: bool = False  # concatenate examples into cutoff_len blocks (no padding waste)
    padding_free: bool = True  # each batch as one unpadded row, attention per example (every ChatGLM generation)
    group_by_length: bool = True  # batch examples of similar length (less padding); ignored with packing
    num_proc: int = 1  # processes for tokenizing
    # --- optimisation ---
    output_dir: str = "outputs/run"  # where checkpoints, weights, logs and loss.png go
    overwrite_output_dir: bool = False  # replace an output_dir holding another run or files glmtune did not write
    max_steps: int | None = None  # optimizer steps; overrides num_epochs when set
    num_epochs: float = 3.0  # passes over data when max_steps is unset
    batch_size: int = 4  # per device
    eval_batch_size: int | None = None  # per device; default batch_size
    grad_accum: int = 1  # gradient accumulation steps
    learning_rate: float = 2e-4  # peak learning rate of the scheduler
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.0  # share of the steps spent warming the learning rate up, in [0, 1)
    lr_scheduler: str = "cosine"  # any transformers scheduler name (linear, cosine, constant, ...)
    max_grad_norm: float = 1.0  # gradient clipping (0 disables)
    seed: int = 42  # model init of new parameters, data order, dropout
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: bf16 where supported, else fp32
    # trade compute for activation memory; unset: on for qlora (memory is why one picks it), off otherwise
    gradient_checkpointing: bool | None = None
    chunked_loss: bool | int = True  # loss only at labelled positions, vocab projection in token chunks (int: chunk size)
    attn_implementation: str = "sdpa"  # sdpa (default) or eager
    # --- logging, saving, eval ---
    logging_steps: int = 10  # log loss, lr, grad norm and tokens/s every N steps
    save_steps: int = 500  # checkpoint every N steps (atomic)
    save_total_limit: int | None = 2  # keep at most N checkpoints
    eval_steps: int | None = None  # eval every N steps; default save_steps
    eval_before: bool = False  # also evaluate the untrained model (printed as "before -> after")
    resume: str | None = None  # auto (latest checkpoint in output_dir) or a checkpoint folder
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # trainer integrations
    deepspeed: str | None = None  # DeepSpeed JSON config (GPU; see examples/deepspeed)
    fsdp: str | None = None  # PyTorch FSDP on GPUs: "full_shard auto_wrap" (or shard_grad_op, offload)
    sample_prompts: list[str] = field(default_factory=list)  # answered with greedy decoding at the end
    max_new_tokens: int = 64  # for sample_prompts and predict_eval
    predict_eval: int = 0  # after training, answer N dev conversations and write BLEU/ROUGE to eval_report.json
    # --- per-method blocks: each registered method's own YAML block (lora: {...}), read as cfg.lora ---
    method_blocks: dict[str, Any] = field(default_factory=dict, repr=False,
                                          metadata={BLOCKS: method_config_classes})

    def __getattr__(self, name: str) -> Any:
        blocks = self.__dict__.get("method_blocks")
        if blocks is not None and name in blocks:
            return blocks[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __post_init__(self) -> None:
        check_fsdp(self.fsdp)
        if self.fsdp and self.deepspeed:
            raise ConfigError("fsdp / deepspeed: shard with one of them, not both")
        if self.method not in METHOD_REGISTRY:
            raise ConfigError(f"method: {self.method!r} is not a registered tuning method; "
                              f"choose one of: {', '.join(METHOD_REGISTRY.names())}")
        given = self.method_blocks  # every registered block exists (at its defaults if unset), in one order
        self.method_blocks = {name: given[name] if name in given else block()
                              for name, block in method_config_classes().items()}
        if not self.model:
            raise ConfigError("model: required (a checkpoint folder or builtin:tiny-chatglm2)")
        if not self.data:
            raise ConfigError("data: required (converted JSONL file(s) or a tokenized folder)")
        positive = {
            "batch_size": self.batch_size, "grad_accum": self.grad_accum,
            "logging_steps": self.logging_steps, "save_steps": self.save_steps,
            "num_proc": self.num_proc, "max_new_tokens": self.max_new_tokens,
        }  # fmt: skip
        if self.predict_eval < 0:
            raise ConfigError(f"predict_eval: must be >= 0, got {self.predict_eval}")
        if self.predict_eval and not (self.eval_data or self.val_size):
            raise ConfigError("predict_eval: needs dev conversations; set eval_data or val_size")
        for key in ("max_steps", "eval_batch_size", "eval_steps", "cutoff_len", "save_total_limit",
                    "max_source_length", "max_target_length"):  # fmt: skip
            if getattr(self, key) is not None:
                positive[key] = getattr(self, key)
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key}: must be > 0, got {value}")
        if self.max_steps is None and self.num_epochs <= 0:
            raise ConfigError(f"num_epochs: must be > 0 when max_steps is unset, got {self.num_epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.max_grad_norm < 0 or self.weight_decay < 0:
            raise ConfigError("max_grad_norm / weight_decay: must be >= 0")
        if isinstance(self.val_size, float) and not 0 <= self.val_size < 1:
            raise ConfigError(f"val_size: a ratio must be in [0, 1), got {self.val_size}")
        if isinstance(self.val_size, int) and self.val_size < 0:
            raise ConfigError(f"val_size: must be >= 0, got {self.val_size}")
        if (self.max_source_length is None) != (self.max_target_length is None):
            raise ConfigError("max_source_length / max_target_length: set both or neither (or use cutoff_len)")
        if isinstance(self.chunked_loss, int) and not isinstance(self.chunked_loss, bool) and self.chunked_loss <= 0:
            raise ConfigError(f"chunked_loss: chunk size must be > 0, got {self.chunked_loss}")
        if self.adapter is not None and self.method in ("full", "freeze"):
            raise ConfigError(f"adapter: continuing from an adapter needs method lora, qlora or ptuning, not {self.method}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError(f"attn_implementation: {self.attn_implementation!r}; choose sdpa or eager")

    @property
    def data_paths(self) -> list[str]:
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def eval_paths(self) -> list[str]:
        if self.eval_data is None:
            return []
        return [self.eval_data] if isinstance(self.eval_data, str) else list(self.eval_data)
