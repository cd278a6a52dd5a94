"""Micro-batching: concurrent requests for the same model variant share one inference call.

A request's rows wait at most ``max_wait_s`` for company, up to ``max_batch`` rows; the
batch runs in a worker thread (ONNX Runtime releases the GIL), and each request gets its
own slice back. Static QDQ int8 and fp32 give a row the same output in any batch, so
batching changes latency, never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import tracing

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    trace: Any = None  # the request's span (serving.tracing), when traced


class MicroBatcher:
    def __init__(self, run: Runner, executor: Executor, *, max_batch: int, max_wait_s: float,
                 on_batch: Callable[[int], Any] | None = None):
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.on_batch = on_batch
        self.closed = False
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def submit(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(next(iter(feeds.values())))
        loop = asyncio.get_running_loop()
        if self.closed:  # a request routed just before a swap: run it on its own
            with tracing.batch_span([tracing.current()], rows):
                return await loop.run_in_executor(self.executor, self.run, feeds)
        if self._task is None:
            self._task = asyncio.create_task(self._loop())
        item = _Item(feeds, rows, loop.create_future(), tracing.current())
        self._queue.put_nowait(item)
        return await item.future

    def close(self) -> None:
        """Finish what is queued, then stop."""
        self.closed = True
        self._queue.put_nowait(None)

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, rows, stop = [first], first.rows, False
            if self.max_wait_s > 0 and self._queue.empty():
                # One timer for the whole wait, then take whatever arrived.
                await asyncio.sleep(self.max_wait_s)
            while rows < self.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                rows += nxt.rows
            await self._execute(batch, rows)
            if stop:
                return

    async def _execute(self, batch: list[_Item], rows: int) -> None:
        loop = asyncio.get_running_loop()
        feeds = ({k: np.concatenate([i.feeds[k] for i in batch]) for k in batch[0].feeds}
                 if len(batch) > 1 else batch[0].feeds)
        try:
            with tracing.batch_span([i.trace for i in batch], rows):
                out = await loop.run_in_executor(self.executor, self.run, feeds)
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(rows)
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result(out[start : start + item.rows])
            start += item.rows
