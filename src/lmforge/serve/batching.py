"""Dynamic micro-batching: requests' texts wait up to `max_wait_ms` to share one model call
of at most `max_batch_size` texts.

Under concurrency one forward pass over 32 texts costs little more than over 1, so batching
multiplies throughput; a lone request waits at most `max_wait_ms`. The queue is bounded by
texts, not requests: when it is full `submit` raises `Overloaded` at once (the app answers
503 with Retry-After) instead of letting memory and latency grow without limit.

Requests from different clients share a model call, so one request's failure must not become
theirs: when a batch raises, it is split in halves (by request, never inside one) and each
half scored again, down to single requests; only a request that fails alone gets the error.
One bad request in a batch of n costs about 2*log2(n) extra model calls, not n. The texts are
validated before they are queued (`schemas.py`), so this is the safety net for the causes
validation cannot foresee.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BatchFn = Callable[[list[str]], Sequence[Any]]


class Overloaded(Exception):
    """The queue holds `max_queue` texts already."""


@dataclass
class _Item:
    texts: list[str]
    future: asyncio.Future[tuple[list[Any], Any]]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """One worker task drains the queue; the model call runs in a thread so the event loop
    keeps accepting requests meanwhile. `model()` is read per batch, so a hot swap takes
    effect at the next batch while the running one finishes on the old model."""

    def __init__(
        self,
        model: Callable[[], Any],
        call: Callable[[Any, list[str]], Sequence[Any]],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self.call = call
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.queued_texts = 0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, texts: list[str]) -> tuple[list[Any], Any]:
        """Results for `texts` in order, and the model object that produced them."""
        if self.queued_texts + len(texts) > self.max_queue:
            raise Overloaded(f"{self.queued_texts} texts queued (limit {self.max_queue})")
        future: asyncio.Future[tuple[list[Any], Any]] = asyncio.get_running_loop().create_future()
        self.queued_texts += len(texts)
        await self._queue.put(_Item(list(texts), future))
        return await future

    async def _run(self) -> None:
        pending: _Item | None = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            batch, size = [first], len(first.texts)
            deadline = first.enqueued + self.max_wait
            while size < self.max_batch_size:
                timeout = deadline - time.perf_counter()
                try:
                    item = (
                        self._queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if size + len(item.texts) > self.max_batch_size:
                    pending = item  # starts the next batch; a request's texts stay together
                    break
                batch.append(item)
                size += len(item.texts)
            await self._score(batch, size)

    async def _score(self, batch: list[_Item], size: int) -> None:
        model = self.model()  # one model for the batch and any retries of its parts
        try:
            await self._score_group(model, batch)
        finally:
            self.queued_texts -= size

    async def _score_group(self, model: Any, group: list[_Item]) -> None:
        """Score `group` in one call; if that raises, score its halves apart (the worker lives on)."""
        texts = [t for item in group for t in item.texts]
        try:
            results = await asyncio.to_thread(self.call, model, texts)
            if len(results) != len(texts):
                raise RuntimeError(f"the model returned {len(results)} results for {len(texts)} texts")
        except Exception as exc:
            if len(group) == 1:  # failed alone: the error is this request's own
                if not group[0].future.done():
                    group[0].future.set_exception(exc)
                return
            half = len(group) // 2
            await self._score_group(model, group[:half])
            await self._score_group(model, group[half:])
            return
        if self.on_batch:
            self.on_batch(len(texts))
        start = 0
        for item in group:
            end = start + len(item.texts)
            if not item.future.done():  # the client may have gone away
                item.future.set_result((list(results[start:end]), model))
            start = end
