"""The micro-batcher: grouping, flush policy, load shedding, timeouts, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from falcon_platform.errors import InferenceTimeoutError, ModelError, OverloadedError
from falcon_platform.serving.batcher import IDLE_PASSES_TO_FLUSH, MicroBatcher, keep_collecting


class Recorder:
    """predict_proba stand-in: records each call's batch, returns rows encoding the text length."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])


@pytest.mark.parametrize(
    ("queued", "grew", "idle", "waited", "expected"),
    [
        (1, True, 0, 0.0, True),  # just started: give the loop a pass
        (5, False, 1, 0.0, True),  # one idle pass: a request may still be on its way
        (5, False, IDLE_PASSES_TO_FLUSH, 0.0, False),  # loop idle: flush now, no sleep
        (64, True, 0, 0.0, False),  # full batch
        (5, True, 0, 0.002, False),  # waited the maximum
    ],
)
def test_flush_policy(queued: int, grew: bool, idle: int, waited: float, expected: bool) -> None:
    assert (
        keep_collecting(
            queued, grew=grew, idle_passes=idle, waited_s=waited, max_size=64, max_wait_s=0.002
        )
        is expected
    )


@pytest.mark.parametrize("executor", ["thread", "inline"])
async def test_concurrent_requests_share_one_predict_call(executor: str) -> None:
    predict = Recorder()
    batcher = MicroBatcher(
        predict,
        max_size=64,
        max_wait_s=0.05,
        queue_max=100,
        timeout_s=5,
        executor=executor,  # type: ignore[arg-type]
    )
    await batcher.start()
    try:
        rows = await asyncio.gather(*(batcher.submit("x" * i) for i in range(1, 11)))
    finally:
        await batcher.close()
    assert predict.calls == [["x" * i for i in range(1, 11)]]
    assert [row[0] for row in rows] == list(range(1, 11))  # each caller gets its own row


async def test_batches_never_exceed_max_size() -> None:
    predict = Recorder()
    sizes: list[int] = []
    batcher = MicroBatcher(
        predict, max_size=4, max_wait_s=0.05, queue_max=100, timeout_s=5, on_batch=sizes.append
    )
    await batcher.start()
    try:
        await asyncio.gather(*batcher.submit_many([f"t{i}" for i in range(10)]))
    finally:
        await batcher.close()
    assert sizes == [4, 4, 2]
    assert [t for call in predict.calls for t in call] == [f"t{i}" for i in range(10)]


async def test_a_lone_request_is_not_held_for_max_wait() -> None:
    """Flush when the loop is idle: a single request costs far less than a long max_wait."""
    batcher = MicroBatcher(Recorder(), max_size=64, max_wait_s=1.0, queue_max=10, timeout_s=5)
    await batcher.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit("alone")
        assert loop.time() - started < 0.5
    finally:
        await batcher.close()


async def test_full_queue_sheds_load_with_overloaded() -> None:
    gate = threading.Event()

    entered = threading.Event()

    def blocked(texts: Sequence[str]) -> np.ndarray:
        entered.set()
        gate.wait(5)
        return np.ones((len(texts), 2))

    batcher = MicroBatcher(
        blocked, max_size=1, max_wait_s=0, queue_max=2, timeout_s=5, executor="thread"
    )
    await batcher.start()
    try:
        first = batcher.submit("in the model")
        deadline = asyncio.get_running_loop().time() + 5
        while not entered.is_set():  # the collector took it; the model is now blocked
            assert asyncio.get_running_loop().time() < deadline, "the model was never called"
            await asyncio.sleep(0.001)
        queued = [batcher.submit("q1"), batcher.submit("q2")]
        with pytest.raises(OverloadedError) as info:
            batcher.submit("one too many")
        assert info.value.retry_after_s >= 1
        with pytest.raises(OverloadedError):
            batcher.submit_many(["a", "b"])
        gate.set()
        await asyncio.gather(first, *queued)
    finally:
        gate.set()
        await batcher.close()


async def test_a_hung_model_answers_inference_timeout() -> None:
    gate = threading.Event()

    def hung(texts: Sequence[str]) -> np.ndarray:
        gate.wait(5)
        return np.ones((len(texts), 2))

    # Only a thread lets the loop answer while the model hangs (inline, the loop is stuck).
    batcher = MicroBatcher(
        hung, max_size=8, max_wait_s=0, queue_max=10, timeout_s=0.2, executor="thread"
    )
    await batcher.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(InferenceTimeoutError):
            await batcher.submit("stuck")
        assert 0.15 <= loop.time() - started < 2.0
    finally:
        gate.set()
        await batcher.close()


async def test_a_failing_model_fails_only_its_batch() -> None:
    calls = 0

    def flaky(texts: Sequence[str]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return np.ones((len(texts), 2))

    batcher = MicroBatcher(flaky, max_size=8, max_wait_s=0, queue_max=10, timeout_s=5)
    await batcher.start()
    try:
        with pytest.raises(ModelError, match="boom"):
            await batcher.submit("first")
        assert await batcher.submit("second") == [1.0, 1.0]
    finally:
        await batcher.close()


async def test_close_answers_what_is_queued() -> None:
    predict = Recorder()
    batcher = MicroBatcher(predict, max_size=2, max_wait_s=0, queue_max=10, timeout_s=5)
    await batcher.start()
    futures = batcher.submit_many(["a", "b", "c"])
    await batcher.close()
    assert [f.result()[0] for f in futures] == [1.0, 1.0, 1.0]
