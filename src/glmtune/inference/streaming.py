"""Streaming helpers: text deltas that are always a prefix of the final reply, and stop strings.

Decoding token by token can split a multi-byte character (SentencePiece byte pieces decode to
U+FFFD until the character is complete), and a format's post-processing can change the last
character once the next one arrives (v1 turns ``,`` before a CJK character into ``，``). So a delta
is taken from the post-processed text of all tokens so far, minus what may still change.
"""

from __future__ import annotations

import threading
from typing import Any

from transformers import StoppingCriteria

from glmtune.data.templates.replies import TRAINING_DATE


class _Cancelled(StoppingCriteria):
    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.flag.is_set()


class StopStrings(StoppingCriteria):
    """Stops a batch once every row's new text contains one of the stop strings."""

    def __init__(self, engine: Any, stops: list[str], prompt_width: int) -> None:
        self.engine, self.stops, self.width = engine, [s for s in stops if s], prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = []
        for row in input_ids:
            ids = [t for t in row[self.width:].tolist() if t not in self.engine.stop_ids]
            text = self.engine.template.decode_reply(self.engine.tokenizer, ids)
            done.append(any(s in text for s in self.stops))
        return torch.tensor(done, device=input_ids.device)


class IncrementalText:
    """Collects streamed ids of one reply and hands out safe text deltas."""

    def __init__(self, engine: Any, messages: list[dict[str, Any]], settings: Any,
                 cancel: threading.Event | None = None) -> None:
        self.engine, self.messages, self.settings = engine, messages, settings
        self.ids: list[int] = []
        self.stopped = False
        self.sent = ""
        self._cancel = cancel or threading.Event()  # set from outside (a client gone): stop at the next token
        self.criteria = _Cancelled(self._cancel)

    def add(self, new_ids: list[int]) -> None:
        for token in new_ids:
            if self.stopped:
                return
            if token in self.engine.stop_ids:
                self.stopped = True
                return
            self.ids.append(token)

    def cancel(self) -> None:
        self._cancel.set()

    def _text(self) -> tuple[str, str]:
        from glmtune.inference.engine import cut_stop_strings

        raw = self.engine.template.decode_reply(self.engine.tokenizer, self.ids)
        raw, hit = cut_stop_strings(raw, self.settings.stop)
        if hit:
            self.stopped = True
            self.cancel()
        return raw, self.engine.template.parse_reply(raw, self.messages).content

    def flush(self, final: bool = False) -> str:
        raw, text = self._text()
        final = final or self.stopped
        if not final:
            if self.engine.template.hold_stream(raw):
                return ""
            text = text.rstrip("\ufffd")[:-1]  # an unfinished character, and one that may still change
            # the start of a stop string may be cut later, the start of a placeholder replaced later
            for stop in [*self.settings.stop, TRAINING_DATE[0]]:
                for n in range(min(len(stop) - 1, len(text)), 0, -1):
                    if text.endswith(stop[:n]):
                        text = text[:-n]
                        break
            if not text.startswith(self.sent):
                return ""
        if not text.startswith(self.sent):  # the final text rewrote what was sent: send the part after
            common = 0  # the common prefix, so nothing of the reply is lost (it cannot be taken back)
            while common < min(len(text), len(self.sent)) and text[common] == self.sent[common]:
                common += 1
            delta = text[common:]
        else:
            delta = text[len(self.sent):]
        self.sent += delta
        return delta
