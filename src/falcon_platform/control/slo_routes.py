"""``GET /slo`` and ``GET /traffic``: the objectives and the last hour, from the SLI store.

The arithmetic is :mod:`observability.slo_status` (pure); this router reads the store on its
own SQLite connection in a thread (the supervisor's loop runs probes) and keeps an answer for
``cache_s`` seconds, so a console open in several tabs costs one read per interval::

    router = create_slo_router(spec, sli.open_reader, admin_token)
    app = create_control_app(..., extra_routers=[router])
    # GET /slo                      objectives, budget remaining, burn rate per alert window
    # GET /traffic?span=3600&step=60  request rate, error ratio, p99 per step
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from falcon_platform.config.spec import Spec
from falcon_platform.control.auth import reader_dependency
from falcon_platform.observability import names
from falcon_platform.observability.sli_source import SLISource
from falcon_platform.observability.slo_status import slo_report, traffic


def create_slo_router(
    spec: Spec,
    open_source: Callable[[], SLISource] | None,
    admin_token: str,
    *,
    clock: Callable[[], float] = time.time,
    cache_s: float = 2.0,
) -> APIRouter:
    """``open_source`` opens a reader of the SLI store (None: no store, empty answers)."""
    router = APIRouter(tags=["slo"])
    deps = [Depends(reader_dependency(admin_token))]
    lock = threading.Lock()  # one reader connection, one thread at a time
    source: list[SLISource] = []
    cache: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
    longest = max(
        [spec.slo.window, *(b.long for b in spec.alerts.burn_windows)],
    )

    def read(start: float, end: float) -> tuple[list[Any], list[Any]]:
        with lock:
            if not source and open_source is not None:
                source.append(open_source())
            if not source:
                return [], []
            reader = source[0]
            return (
                reader.query(names.REQUESTS, start, end),
                reader.query(names.REQUEST_DURATION + "_bucket", start, end),
            )

    async def cached(key: tuple[Any, ...], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        now = clock()
        hit = cache.get(key)
        if hit is not None and now - hit[0] < cache_s:
            return hit[1]
        value = await asyncio.to_thread(compute)
        cache[key] = (now, value)
        return value

    @router.get("/slo", dependencies=deps)
    async def slo() -> dict[str, Any]:
        """Each objective, the error budget remaining, burn rates per alert window."""

        def compute() -> dict[str, Any]:
            now = clock()
            requests, buckets = read(now - longest, now)
            return slo_report(spec, requests, buckets, now)

        return await cached(("slo",), compute)

    @router.get("/traffic", dependencies=deps)
    async def traffic_route(
        span: Annotated[float, Query(ge=60, le=86400)] = 3600,
        step: Annotated[float, Query(ge=5, le=3600)] = 60,
    ) -> dict[str, Any]:
        """Request rate (1/s), error ratio and p99 (ms) per ``step`` over the last ``span`` s."""

        def compute() -> dict[str, Any]:
            now = clock()
            requests, buckets = read(now - span - step, now)
            return traffic(requests, buckets, now, span=span, step=step)

        return await cached(("traffic", span, step), compute)

    return router
