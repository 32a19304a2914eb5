"""Freeze tuning: train the last N transformer layers (or named modules) in full, freeze the rest."""

from __future__ import annotations

from dataclasses import dataclass

from glmtune.errors import ConfigError


@dataclass
class FreezeConfig:
    """The ``freeze:`` block."""

    trainable_layers: int = 2  # train the last N transformer blocks (ignored when trainable_modules is set)
    # parameter-name substrings (e.g. "mlp") or glob patterns (e.g. "*.layers.1.*"); when set they
    # decide what is trained instead of trainable_layers
    trainable_modules: list[str] | None = None
    train_embeddings: bool = False  # also train the input embedding and the output head (lm_head)

    def __post_init__(self) -> None:
        if self.trainable_layers < 0:
            raise ConfigError(f"freeze.trainable_layers must be >= 0, got {self.trainable_layers}")
        if self.trainable_modules is not None:
            if not self.trainable_modules or any(not str(m).strip() for m in self.trainable_modules):
                raise ConfigError("freeze.trainable_modules must be a non-empty list of non-empty names")
        elif self.trainable_layers == 0 and not self.train_embeddings:
            raise ConfigError("freeze.trainable_layers is 0 and nothing else is trainable; use >= 1")
