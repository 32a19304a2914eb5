"""Generation settings: one dataclass for every front end (chat, predict, serve, web chat, train samples)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from typing import Any

from glmtune.errors import ConfigError


@dataclass
class GenerationSettings:
    """How to sample a reply. ``temperature=0`` means greedy decoding (top_p/top_k are then unused)."""

    max_new_tokens: int = 512  # most tokens to generate per reply
    temperature: float = 0.8  # 0 = greedy; the official chat() default is 0.8
    top_p: float = 0.8  # nucleus sampling mass (official chat() default)
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    seed: int | None = None  # fixes the sampling of one call
    stop: list[str] = field(default_factory=list)  # extra stop strings (cut from the reply)
    system: str | None = None  # a system message put before the conversation (formats with a system slot)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k: must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty: must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_(self, **changes: Any) -> GenerationSettings:
        """A copy with ``changes`` (None values are ignored: "not given")."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def generate_kwargs(self) -> dict[str, Any]:
        """The matching ``transformers`` ``generate`` arguments."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": not self.greedy}
        if not self.greedy:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:  # silence the model's sampling defaults
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    """The same generation flags on every command."""
    defaults = GenerationSettings()
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    group.add_argument("--temperature", type=float, default=defaults.temperature, help="0 = greedy")
    group.add_argument("--top-p", type=float, default=defaults.top_p)
    group.add_argument("--top-k", type=int, default=defaults.top_k, help="0 = off")
    group.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    group.add_argument("--seed", type=int, default=None)
    group.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    group.add_argument("--system", default=None, help="system message (formats with a system slot)")


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(**{f.name: getattr(args, f.name) for f in fields(GenerationSettings)})


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model``/``--adapter`` and how to load them, shared by chat, predict, serve and webui."""
    parser.add_argument("--model", required=True, help="checkpoint folder (or a full fine-tune's output_dir)")
    parser.add_argument("--adapter", default=None, help="LoRA or P-Tuning folder trained on --model")
    parser.add_argument("--template", default=None, help="chat format (default: the one recorded at training)")
    parser.add_argument("--family", default=None, help="model family, when its files cannot tell")
    parser.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: fp32 on CPU)")
    parser.add_argument("--quantization", default=None, choices=("4bit", "8bit"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
