"""Micro-batcher: concurrent single requests become one vectorised ``predict_proba`` call.

The model costs ~414 µs for one text but ~13 µs per text in a batch of 64, so
grouping decides throughput; *when* to flush decides the tail. A fixed sleep
adds its whole length to every request. Instead the collector yields to the
event loop and flushes as soon as a full pass of the loop added nothing to the
queue (the loop has nothing else ready), or at ``max_size``, or at ``max_wait``
— see :func:`keep_collecting`.

Where a batch computes: ``inline`` (the default, as ``FALCON_BATCH_EXECUTOR`` defaults to it)
runs ``predict_proba`` on the event loop; ``thread`` runs it in one worker thread while the loop
keeps parsing requests, which form the next batch. Inline was measured faster on one core
(bigger batches, no GIL handoffs: ~4,800 vs ~3,300-4,300 req/s, docs/CAPACITY_PLAN.md, from
``bench/run.py --compare-executors``); the thread keeps loop lag lower, and only with it can
``timeout_s`` answer a request whose batch hangs inside the model (inline, a hung model stalls
the loop and the supervisor's liveness probe replaces the worker).

    batcher = MicroBatcher(model.predict_proba, max_size=64, max_wait_s=0.002,
                           queue_max=2048, timeout_s=5.0)
    await batcher.start()
    row = await batcher.submit("great screen")   # -> [p_neg, p_neu, p_pos]
    await batcher.close()

A full queue raises ``OverloadedError`` (→ 503 + Retry-After) at once; a request
still unanswered after ``timeout_s`` gets ``InferenceTimeoutError`` (→ 504).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from falcon_platform.errors import InferenceTimeoutError, ModelError, OverloadedError

log = logging.getLogger("falcon.batcher")

Row = list[float]
Executor = Literal["thread", "inline"]


def keep_collecting(
    queued: int, *, grew: bool, idle_passes: int, waited_s: float, max_size: int, max_wait_s: float
) -> bool:
    """Decide whether to give the loop another pass before flushing (pure policy).

    ``grew`` says whether the last pass added requests; ``idle_passes`` counts the
    consecutive passes that added nothing. A request needs two loop passes from
    socket to queue (parse, then the ASGI task's first step), so two idle passes
    mean nothing is on its way.

    >>> keep_collecting(3, grew=True, idle_passes=0, waited_s=0.0, max_size=64, max_wait_s=0.002)
    True
    >>> keep_collecting(64, grew=True, idle_passes=0, waited_s=0.0, max_size=64, max_wait_s=0.002)
    False
    >>> keep_collecting(3, grew=False, idle_passes=2, waited_s=0.0, max_size=64, max_wait_s=0.002)
    False
    """
    if queued >= max_size or waited_s >= max_wait_s:
        return False
    return grew or idle_passes < IDLE_PASSES_TO_FLUSH


IDLE_PASSES_TO_FLUSH = 2


@dataclass(slots=True)
class _Item:
    text: str
    future: asyncio.Future[Row]
    enqueued_at: float
    deadline: float


class MicroBatcher:
    """Groups ``submit`` calls into ``predict(texts) -> (n, k) array`` calls."""

    def __init__(
        self,
        predict: Callable[[Sequence[str]], Any],
        *,
        max_size: int,
        max_wait_s: float,
        queue_max: int,
        timeout_s: float,
        executor: Executor = "inline",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.queue_max = queue_max
        self.timeout_s = timeout_s
        self.executor_kind: Executor = executor
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._inflight: list[_Item] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.executor_kind == "thread":
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="falcon-predict")
        self._tasks = [
            asyncio.create_task(self._collect(), name="falcon-batcher"),
            asyncio.create_task(self._expire(), name="falcon-batcher-timeouts"),
        ]

    async def close(self, timeout_s: float | None = None) -> None:
        """Answer what is queued (bounded by ``timeout_s``), then stop."""
        self._closing = True
        deadline = asyncio.get_running_loop().time() + (timeout_s or self.timeout_s)
        while (self._queue or self._inflight) and asyncio.get_running_loop().time() < deadline:
            self._wake()
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for item in [*self._queue, *self._inflight]:
            if not item.future.done():
                item.future.set_exception(ModelError("the worker is shutting down; retry"))
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def depth(self) -> int:
        """Requests waiting for the model (queued, not yet in a batch)."""
        return len(self._queue)

    # --- hot path ----------------------------------------------------------------------------
    def submit(self, text: str) -> asyncio.Future[Row]:
        """Queue one text; await the returned future for its probability row."""
        if len(self._queue) >= self.queue_max:
            raise OverloadedError(
                f"the inference queue is full ({self.queue_max} waiting); retry after a second "
                "or add workers",
                retry_after_s=1,
            )
        loop = self._loop
        assert loop is not None, "MicroBatcher.start() was not awaited"
        now = loop.time()
        future: asyncio.Future[Row] = loop.create_future()
        self._queue.append(_Item(text, future, now, now + self.timeout_s))
        self._wake()
        return future

    def submit_many(self, texts: Sequence[str]) -> list[asyncio.Future[Row]]:
        """Queue several texts at once (all or none, so a batch is never half-shed)."""
        if len(self._queue) + len(texts) > self.queue_max:
            raise OverloadedError(
                f"the inference queue cannot take {len(texts)} more texts "
                f"({len(self._queue)}/{self.queue_max} waiting); retry after a second",
                retry_after_s=1,
            )
        return [self.submit(text) for text in texts]

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    # --- the collector -----------------------------------------------------------------------
    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
            first = self._queue[0].enqueued_at
            previous, idle = len(self._queue), 0
            while keep_collecting(
                previous,
                grew=idle == 0,
                idle_passes=idle,
                waited_s=loop.time() - first,
                max_size=self.max_size,
                max_wait_s=self.max_wait_s,
            ):
                await asyncio.sleep(0)
                current = len(self._queue)
                idle = 0 if current > previous else idle + 1
                previous = current
            await self._run_batch(loop)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: list[_Item] = []
        while self._queue and len(batch) < self.max_size:
            item = self._queue.popleft()
            if not item.future.done():  # timed out or cancelled while queued
                batch.append(item)
        if not batch:
            return
        self._inflight = batch
        texts = [item.text for item in batch]
        try:
            if self._executor is not None:
                probs = await loop.run_in_executor(self._executor, self._predict, texts)
            else:
                probs = self._predict(texts)
            rows: list[Row] = probs.tolist()
        except Exception as exc:  # the model failed: fail this batch, keep serving
            log.exception("predict_proba failed for a batch of %d", len(batch))
            error = ModelError(f"the model failed on this batch: {type(exc).__name__}: {exc}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        else:
            for item, row in zip(batch, rows, strict=True):
                if not item.future.done():
                    item.future.set_result(row)
        finally:
            self._inflight = []
        if self._on_batch is not None:
            self._on_batch(len(batch))

    async def _expire(self) -> None:
        """Answer 504 for anything past its deadline (one sweep, not one timer per request)."""
        loop = asyncio.get_running_loop()
        tick = min(0.05, self.timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for item in [*self._queue, *self._inflight]:
                if now >= item.deadline and not item.future.done():
                    item.future.set_exception(
                        InferenceTimeoutError(
                            f"no answer from the model within {self.timeout_s * 1000:.0f} ms "
                            "(FALCON_INFERENCE_TIMEOUT_MS); retry, or reduce load"
                        )
                    )
