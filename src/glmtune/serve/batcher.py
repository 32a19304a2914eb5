"""A small dynamic batcher: non-streamed requests that arrive together share one batched ``generate``.

Requests queue per (model name, generation settings); the worker takes the first waiting request,
waits ``window`` seconds for others with the same key (up to ``max_batch``), and runs them as one
left-padded batch in a thread. With ``max_batch=1`` every request runs alone (batching off).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Job:
    key: Any
    messages: list[dict[str, Any]]
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, run: Any, max_batch: int = 8, window: float = 0.01) -> None:
        """``run(key, [messages, ...]) -> [Completion, ...]`` is called in a worker thread."""
        self.run, self.max_batch, self.window = run, max(1, max_batch), window
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.held: list[_Job] = []

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def submit(self, key: Any, messages: list[dict[str, Any]]) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(key, messages, future))
        return await future

    async def _next(self, timeout: float | None) -> _Job | None:
        if self.held:
            return self.held.pop(0)
        try:
            return await asyncio.wait_for(self.queue.get(), timeout) if timeout is not None else await self.queue.get()
        except asyncio.TimeoutError:
            return None

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            if first is None or first.future.cancelled():
                continue
            batch, others = [first], []
            deadline = loop.time() + self.window
            while len(batch) < self.max_batch and (left := deadline - loop.time()) > 0:
                job = await self._next(left)
                if job is None:
                    break
                (batch if job.key == first.key else others).append(job)
            self.held.extend(others)
            batch = [j for j in batch if not j.future.cancelled()]
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self.run, first.key, [j.messages for j in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(result)
