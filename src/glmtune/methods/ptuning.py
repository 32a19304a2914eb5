"""P-Tuning v2 for ChatGLM v1/2/3: a learned key/value prefix per layer, official checkpoint layout."""

from __future__ import annotations

from dataclasses import dataclass

from glmtune.errors import ConfigError


@dataclass
class PTuningConfig:
    """The ``ptuning:`` block."""

    pre_seq_len: int = 128  # prefix length (virtual key/value positions per layer)
    prefix_projection: bool = False  # reparameterise the prefix through a 2-layer MLP (THUDM's option)
    prefix_hidden_size: int | None = None  # hidden size of that MLP; None = the model's hidden size

    def __post_init__(self) -> None:
        if self.pre_seq_len <= 0:
            raise ConfigError(f"ptuning.pre_seq_len must be > 0, got {self.pre_seq_len}")
        if self.prefix_hidden_size is not None and self.prefix_hidden_size <= 0:
            raise ConfigError(f"ptuning.prefix_hidden_size must be > 0, got {self.prefix_hidden_size}")
        if self.prefix_hidden_size is not None and not self.prefix_projection:
            raise ConfigError("ptuning.prefix_hidden_size is only used with ptuning.prefix_projection: true")
