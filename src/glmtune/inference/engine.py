"""The one inference engine behind ``glmtune chat``, ``predict``, ``eval``-by-generation, ``serve``,
the web chat and the train-time sample answers.

An :class:`Engine` holds a model (+ LoRA or P-Tuning adapter) and the chat format it was trained
with; it builds prompts only through that format (``build_chat_input``), stops on the format's stop
ids and post-processes replies with the format's ``parse_reply``. Batches are sorted by prompt length
and left-padded; generation uses the KV cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.errors import DataError, GlmtuneError
from glmtune.inference.settings import GenerationSettings
from glmtune.inference.streaming import IncrementalText, StopStrings

Messages = list[dict[str, Any]]


@dataclass
class Completion:
    """One generated reply."""

    text: str  # the reply as shown (format post-processing applied, stop strings cut)
    token_ids: list[int]  # generated ids, the stop id excluded
    finish_reason: str  # "stop" (stop id or stop string) or "length" (max_new_tokens)
    prompt_tokens: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # ChatGLM3: [{"name", "arguments"}]

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


def recorded_template(*folders: str | Path | None) -> str | None:
    """The chat format a training output recorded (``glmtune_adapter.json``), first folder first."""
    from glmtune.methods.base import read_adapter_info

    for folder in folders:
        if folder and Path(folder).is_dir():
            template = read_adapter_info(folder).get("template")
            if template:
                return str(template)
    return None


class Engine:
    """A loaded model with its chat format. Thread-safe for one generation at a time (``lock``)."""

    def __init__(self, model: Any, tokenizer: Any, template: str | None = None) -> None:
        from glmtune.data.templates import resolve_template

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = resolve_template(tokenizer, template)
        self.stop_ids = self.template.stop_ids(tokenizer)
        self.lock = threading.Lock()
        self.last: Completion | None = None  # the Completion of the latest stream()
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.stop_ids[0]

    @classmethod
    def load(cls, model: str | Path, adapter: str | Path | None = None, template: str | None = None,
             family: str | None = None, dtype: Any = None, device: str | None = None,
             quantization: str | None = None) -> Engine:
        """Load ``model`` (+ ``adapter``); the chat format is ``template``, else the one recorded at training."""
        import glmtune
        from glmtune.models.tiny import resolve_model_path

        path = resolve_model_path(str(model))
        device = device or _default_device()
        kwargs: dict[str, Any] = {"dtype": dtype, "family": family, "quantization": quantization}
        if quantization is None and device != "cpu":
            kwargs["device_map"] = {"": device}
        loaded = glmtune.load_model(path, adapter=adapter, **kwargs)
        if quantization is None and device == "cpu":
            loaded = loaded.to("cpu")
        tokenizer = glmtune.load_tokenizer(path, family=family)
        return cls(loaded, tokenizer, template or recorded_template(adapter, path))

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    # --- prompts ---
    def prompt_ids(self, messages: Messages, settings: GenerationSettings | None = None) -> list[int]:
        """The official inference prompt of ``messages`` (+ ``settings.system`` in front)."""
        from glmtune.data.encode import build_chat_input

        if not messages:
            raise DataError("field 'messages': empty conversation")
        if settings is not None and settings.system and messages[0].get("role") != "system":
            messages = [{"role": "system", "content": settings.system}, *messages]
        return list(build_chat_input(self.tokenizer, messages, self.template))

    # --- generation ---
    def generate(self, conversations: Sequence[Messages], settings: GenerationSettings | None = None,
                 batch_size: int = 8) -> list[Completion]:
        """One completion per conversation, in order; batched by prompt length (left padding)."""
        settings = settings or GenerationSettings()
        prompts = [self.prompt_ids(c, settings) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), max(1, batch_size)):
            chunk = order[start:start + batch_size]
            outputs = self._run([prompts[i] for i in chunk], settings)
            for i, ids in zip(chunk, outputs):
                results[i] = self._finish(ids, len(prompts[i]), settings, conversations[i])
        return [r for r in results if r is not None]

    def stream(self, messages: Messages, settings: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Text deltas of one reply; their concatenation equals ``generate([messages])[0].text``.

        A delta never ends inside a multi-byte character; the format's post-processing is applied to
        the whole text so far and only a stable prefix is sent. ``self.last`` holds the Completion.
        """
        from transformers.generation.streamers import BaseStreamer

        settings = settings or GenerationSettings()
        prompt = self.prompt_ids(messages, settings)
        pieces: list[Any] = []
        ready = threading.Condition()

        class Collect(BaseStreamer):
            def __init__(self) -> None:
                self.first = True

            def put(self, value: Any) -> None:
                if self.first:  # the prompt
                    self.first = False
                    return
                with ready:
                    pieces.append([int(x) for x in value.reshape(-1).tolist()])
                    ready.notify()

            def end(self) -> None:
                with ready:
                    pieces.append(None)
                    ready.notify()

        failure: list[BaseException] = []
        text = IncrementalText(self, messages, settings, cancel)
        collect = Collect()
        collect.criteria = text.criteria  # type: ignore[attr-defined] - lets cancel() end the generation

        def work() -> None:
            try:
                self._run([prompt], settings, streamer=collect)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                failure.append(exc)
                with ready:
                    pieces.append(None)
                    ready.notify()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while True:
                with ready:
                    while not pieces:
                        ready.wait()
                    batch, pieces[:] = list(pieces), []
                done = False
                for item in batch:
                    if item is None:
                        done = True
                        break
                    text.add(item)
                delta = text.flush(final=done)
                if delta:
                    yield delta
                if done or text.stopped:
                    break
        finally:
            text.cancel()  # a consumer that stops early ends the generation at the next token
            thread.join()
        if failure:
            raise failure[0]
        self.last = self._finish(text.ids, len(prompt), settings, messages, stopped=text.stopped)

    # --- internals ---
    def _run(self, prompts: list[list[int]], settings: GenerationSettings, streamer: Any = None,
             stopping: Any = None) -> list[list[int]]:
        import torch
        from transformers import StoppingCriteriaList

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        criteria = StoppingCriteriaList()
        if settings.stop:
            criteria.append(StopStrings(self, settings.stop, width))
        if streamer is not None and hasattr(streamer, "criteria"):
            criteria.append(streamer.criteria)
        if stopping is not None:
            criteria.append(stopping)
        with self.lock, torch.no_grad():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), eos_token_id=self.stop_ids,
                pad_token_id=self.pad_id, stopping_criteria=criteria, streamer=streamer,
                **settings.generate_kwargs(),
            )
        return [row[width:].tolist() for row in out]

    def _finish(self, ids: list[int], prompt_len: int, settings: GenerationSettings, messages: Messages,
                stopped: bool = False) -> Completion:
        """Cut at the first stop id (then padding), decode, post-process, cut stop strings."""
        cut = next((i for i, t in enumerate(ids) if t in self.stop_ids), None)
        finish = "stop" if cut is not None or stopped else "length"
        ids = ids[:cut] if cut is not None else ids
        text = self.template.decode_reply(self.tokenizer, ids)
        text, hit = cut_stop_strings(text, settings.stop)
        if hit:
            finish = "stop"
        reply = self.template.parse_reply(text, messages)
        return Completion(reply.content, ids, finish, prompt_len, reply.tool_calls)


def cut_stop_strings(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (and whether one was found)."""
    found = [text.index(s) for s in stops if s and s in text]
    return (text[: min(found)], True) if found else (text, False)


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        raise GlmtuneError("glmtune inference needs torch") from None
