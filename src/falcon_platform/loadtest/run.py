"""Run a load test: the library entry points the CLI, the deploy gate and the drills call.

::

    plan = LoadPlan.constant(rate=100, duration=20)
    result = run_load(plan, "http://127.0.0.1:8000", thresholds=["p99_ms < 50"],
                      control=ControlClient.from_settings(settings))
    result.passed, [v.line() for v in result.failed]

    with start_load(LoadPlan.open_ended(200), url) as load:   # in a background thread
        break_something(); load.now()
    load.result.error_ratio

``run_load`` runs its own event loop (uvloop when installed); ``run_load_async`` runs in
the caller's. Either way the generator and its sampler of the control API share one process:
keep the generator off the server's cores when the numbers matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from falcon_platform.errors import DependencyError
from falcon_platform.loadtest.engine import Engine, Outcome
from falcon_platform.loadtest.plan import LoadPlan
from falcon_platform.loadtest.recorder import Recorder
from falcon_platform.loadtest.requests import Endpoint, RequestSource, Target, Texts
from falcon_platform.loadtest.result import LoadResult, build_result
from falcon_platform.loadtest.server import ControlSource, ServerSampler, ServerSide, summarise


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to send (the plan says when)."""

    endpoint: Endpoint = "infer"
    texts: Texts = "corpus"
    connections: int = 64
    timeout_s: float = 10.0
    model: Literal["open", "closed"] = "open"
    keep_alive: bool = True
    model_name: str = "sentiment"
    batch_size: int = 8
    request_id_prefix: str | None = None
    corpus: tuple[str, ...] | None = None  # texts="corpus": these instead of the model's


@dataclass(frozen=True, slots=True)
class Progress:
    """A once-a-second view of a run in progress (for live displays)."""

    elapsed_s: float
    planned_s: float
    target_rps: float
    sent_last_s: int
    p99_last_s_ms: float | None
    errors: int
    dropped: int
    in_flight: int
    lag_p99_ms: float
    worker_memory_mb: dict[str, float]


def check_control(control: ControlSource, target: Target) -> tuple[bool, str]:
    """Does this control API run the target? (The port must match the supervisor's.)"""
    try:
        status = control.status()
    except Exception as exc:
        detail = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        return False, f"control API not reachable ({detail})"
    port = status.get("supervisor", {}).get("port")
    if port is not None and int(port) != target.port:
        return False, (
            f"the control API's supervisor serves port {port}, not the target's {target.port}: "
            "set FALCON_CONTROL_PORT to the target's supervisor"
        )
    return True, ""


async def _preflight(target: Target) -> None:
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), timeout=5
        )
    except (OSError, TimeoutError) as exc:
        raise DependencyError(
            f"no server accepts connections at {target.url} ({type(exc).__name__}): start one "
            "with `falcon up`, or pass --target http://HOST:PORT"
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def run_load_async(
    plan: LoadPlan,
    target: str | Target,
    *,
    options: LoadOptions | None = None,
    thresholds: Iterable[str] = (),
    control: ControlSource | None = None,
    sample_interval_s: float = 1.0,
    memory_warmup_s: float = 0.0,
    progress: Callable[[Progress], None] | None = None,
    on_response: Callable[[Outcome], None] | None = None,
    capture: bool = False,
    stop: threading.Event | None = None,
    started: Callable[[Engine], None] | None = None,
) -> LoadResult:
    """Run ``plan`` against ``target`` in the running loop and judge ``thresholds``."""
    opts = options or LoadOptions()
    tgt = target if isinstance(target, Target) else Target.parse(target)
    stop = stop or threading.Event()
    source = RequestSource(tgt, endpoint=opts.endpoint, texts=opts.texts,
                           model_name=opts.model_name, batch_size=opts.batch_size,
                           keep_alive=opts.keep_alive, corpus=opts.corpus,
                           request_id_prefix=opts.request_id_prefix)  # fmt: skip
    await _preflight(tgt)
    side_why = "no control API given (server-side numbers need `falcon up`'s control API)"
    use_control = False
    if control is not None:
        use_control, side_why = await asyncio.to_thread(check_control, control, tgt)
    sampler = (
        ServerSampler(control, t0=time.perf_counter(), interval_s=sample_interval_s)
        if use_control and control is not None
        else None
    )
    if sampler is not None:  # the state before the first request (off the loop: it blocks)
        await asyncio.to_thread(sampler.sample)
    rec = Recorder()
    engine = Engine(tgt, source, rec, connections=opts.connections, timeout_s=opts.timeout_s,
                    keep_alive=opts.keep_alive, on_response=on_response,
                    capture=capture)  # fmt: skip
    started_at = time.time()
    if sampler is not None:
        sampler.rebase(engine.t0)
        sampler.start()
    ticker = (
        asyncio.create_task(_tick(engine, plan, sampler, progress))
        if progress is not None
        else None
    )
    if started is not None:
        started(engine)
    try:
        if opts.model == "open":
            await engine.drive_open(plan, stop)
        else:
            await engine.drive_closed(plan, stop)
    finally:
        if ticker is not None:
            ticker.cancel()
        snapshots = await asyncio.to_thread(sampler.stop) if sampler is not None else []
    elapsed = engine.now()
    server = (
        summarise(snapshots, warmup_s=memory_warmup_s)
        if sampler is not None
        else ServerSide(False, side_why)
    )
    warnings: tuple[str, ...] = ()
    if sampler is not None and sampler.errors:
        warnings = (f"{len(sampler.errors)} control-API samples failed, e.g. {sampler.errors[0]}",)
    result = build_result(rec, plan, server, target=tgt.url, model=opts.model,
                          endpoint=opts.endpoint, texts=opts.texts,
                          connections=opts.connections, elapsed_s=elapsed,
                          started_at=started_at, aborted=stop.is_set() and not plan.until_stopped,
                          extra_warnings=warnings)  # fmt: skip
    return result.judged(list(thresholds))


async def _tick(
    engine: Engine,
    plan: LoadPlan,
    sampler: ServerSampler | None,
    progress: Callable[[Progress], None],
) -> None:
    rec = engine.rec
    while True:
        await asyncio.sleep(1.0 - engine.now() % 1.0)
        now = engine.now()
        last = int(now) - 1
        bucket = rec.seconds[last] if 0 <= last < len(rec.seconds) else None
        lat = sorted(bucket.latencies_ms) if bucket else []
        mem: dict[str, float] = {}
        snap = sampler.latest if sampler is not None else None
        if snap is not None:
            mem = {r.worker: r.rss_bytes / 1_048_576 for r in snap.workers if r.rss_bytes}
        progress(
            Progress(
                elapsed_s=now,
                planned_s=plan.duration_s,
                target_rps=plan.rate_at(now),
                sent_last_s=bucket.sent if bucket else 0,
                p99_last_s_ms=lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)]
                if lat
                else None,
                errors=rec.errors,
                dropped=rec.n_dropped,
                in_flight=engine.in_flight,
                lag_p99_ms=rec.lag.get_value_at_percentile(99) / 1000
                if rec.lag.get_total_count()
                else 0.0,
                worker_memory_mb=mem,
            )
        )


def _run_in_new_loop(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def run_load(plan: LoadPlan, target: str | Target, **kwargs: Any) -> LoadResult:
    """Blocking ``run_load_async`` in a fresh event loop (uvloop when installed).

    In the main thread, Ctrl-C stops the schedule and returns what was measured
    (``aborted=True``) instead of losing the run.
    """
    stop: threading.Event = kwargs.setdefault("stop", threading.Event())
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main else None

    def on_sigint(signum: int, frame: object) -> None:
        stop.set()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once

    if in_main:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        return _run_in_new_loop(run_load_async(plan, target, **kwargs))
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGINT, previous)


class BackgroundLoad:
    """A run in a daemon thread: ``with start_load(...) as load: ...``; then ``load.result``."""

    def __init__(self, plan: LoadPlan, target: str | Target, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._engine: Engine | None = None
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._kwargs = {**kwargs, "stop": self._stop, "started": self._started}
        self._plan, self._target = plan, target
        self._thread = threading.Thread(target=self._run, name="falcon-loadtest", daemon=True)

    def _started(self, engine: Engine) -> None:
        self._engine = engine
        self._ready.set()

    def _run(self) -> None:
        try:
            self._result = _run_in_new_loop(run_load_async(self._plan, self._target,
                                                           **self._kwargs))  # fmt: skip
        except BaseException as exc:  # handed to the caller's thread in stop()
            self._error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 30.0) -> BackgroundLoad:
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise self._error
        return self

    def now(self) -> float:
        """Seconds since the load started (the clock of every ``Outcome.scheduled_t``)."""
        return self._engine.now() if self._engine is not None else 0.0

    def join(self, timeout: float = 120.0) -> LoadResult:
        """Wait for the plan to finish on its own (a finite plan) and return the result."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError(f"the load test did not finish within {timeout}s")
        return self._result

    def stop(self, timeout: float = 60.0) -> LoadResult:
        """Stop the schedule now (an open-ended plan's normal end) and return the result."""
        self._stop.set()
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError(f"the load generator did not stop within {timeout}s")
        return self._result

    @property
    def result(self) -> LoadResult:
        if self._result is None:
            raise RuntimeError("the load is still running: call stop() first")
        return self._result

    def __enter__(self) -> BackgroundLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


def start_load(plan: LoadPlan, target: str | Target, **kwargs: Any) -> BackgroundLoad:
    """Start ``run_load`` in a background thread; returns once the first request is due."""
    return BackgroundLoad(plan, target, **kwargs).start()
