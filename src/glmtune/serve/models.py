"""The models a server answers for: one base model in memory, plus named LoRA adapters on it.

Each name has its own :class:`~glmtune.inference.engine.Engine` view (same weights, the chat format
recorded with that adapter); a request picks its adapter by the ``model`` field. One generation runs
at a time (``lock``): switching adapters and generating happen under it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glmtune.errors import GlmtuneError
from glmtune.inference.engine import Engine, recorded_template


class ServedModels:
    def __init__(self, model: str | Path, adapters: dict[str, str] | None = None, name: str | None = None,
                 template: str | None = None, family: str | None = None, dtype: Any = None,
                 device: str | None = None, quantization: str | None = None) -> None:
        from glmtune.methods.adapters import adapter_kind

        adapters = adapters or {}
        base = Engine.load(model, template=template, family=family, dtype=dtype, device=device,
                           quantization=quantization)  # fmt: skip
        self.base_name = name or Path(str(model)).name
        self.lock = threading.Lock()
        self.parent: dict[str, str | None] = {self.base_name: None}
        self.engines: dict[str, Engine] = {self.base_name: base}
        kinds = {n: adapter_kind(p) for n, p in adapters.items()}
        if any(k != "lora" for k in kinds.values()) and len(adapters) > 1:
            raise GlmtuneError("several adapters share one base only as LoRA; serve a P-Tuning adapter on its own")
        model_obj = base.model
        for i, (adapter_name, path) in enumerate(adapters.items()):
            if adapter_name == self.base_name:
                raise GlmtuneError(f"adapter name {adapter_name!r} is the base model's name; choose another")
            if kinds[adapter_name] == "lora":
                if i == 0:
                    from glmtune.methods.lora import load_lora

                    model_obj = load_lora(model_obj, path, adapter_name=adapter_name)
                else:  # the same checks as the first one: family, and a one-line error for THUDM names
                    from glmtune.methods.lora import check_adapter_family, peft_error
                    from glmtune.methods.thudm_lora import peft_folder

                    check_adapter_family(path, family, model_obj)
                    with peft_folder(path, model_obj) as folder:  # THUDM-named LoRA: mapped to native names
                        try:
                            model_obj.load_adapter(str(folder), adapter_name=adapter_name)
                        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
                            raise peft_error(path, exc, None) from None
            else:
                from glmtune.methods.adapters import attach_adapter

                model_obj = attach_adapter(model_obj, path)
                self.engines.pop(self.base_name)  # the prefix is now part of the one model
                self.parent.pop(self.base_name)
            self.parent[adapter_name] = self.base_name if kinds[adapter_name] == "lora" else None
            self.engines[adapter_name] = Engine(model_obj, base.tokenizer, template or recorded_template(path, model))
        for engine in self.engines.values():
            engine.model = model_obj.eval()
        self.model = model_obj

    def names(self) -> list[str]:
        return list(self.engines)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[Engine]:
        """The engine for ``name`` with its adapter active (the base: adapters disabled)."""
        import peft

        with self.lock:
            if not isinstance(self.model, peft.PeftModel):
                yield self.engines[name]
            elif self.parent.get(name) is None and name == self.base_name:
                with self.model.disable_adapter():
                    yield self.engines[name]
            else:
                self.model.set_adapter(name)
                yield self.engines[name]

    def context_length(self) -> int | None:
        config = getattr(next(iter(self.engines.values())).model, "config", None)
        for key in ("max_position_embeddings", "max_sequence_length", "seq_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None
