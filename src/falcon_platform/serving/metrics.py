"""A worker's Prometheus metrics: one ``CollectorRegistry`` per app, children bound up front.

Names come from :mod:`observability.names`; every series carries ``worker`` and
``release``. The hot path touches pre-bound label children only (a dict lookup
keyed by plain tuples, no ``labels()`` call); store, queue, RSS and fault values
are read by collectors at scrape time, so they cost nothing per request::

    metrics = ServingMetrics(worker="w0", release="r1")
    metrics.observe_request("/infer", 200, "miss", 0.004)
    body, content_type = metrics.render()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from falcon_platform import __version__
from falcon_platform.config.spec import LATENCY_BUCKETS
from falcon_platform.observability import names
from falcon_platform.stores.base import StoreStats

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ENDPOINTS = ("/infer", "/infer/batch", "/v2/infer")
BASE = ("worker", "release")


class _StoreCollector(Collector):
    """Request-log and circuit-breaker numbers, read from ``stores.stats()`` at scrape time."""

    def __init__(self, worker: str, release: str, stats: Callable[[], StoreStats]) -> None:
        self._base = [worker, release]
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self._stats()

        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(name, doc, labels=BASE)
            family.add_metric(self._base, value)
            return family

        def gauge(name: str, doc: str, value: float) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=BASE)
            family.add_metric(self._base, value)
            return family

        yield counter(names.REQUEST_LOG_WRITTEN, "Request-log rows committed.", s.rows_written)
        yield gauge(names.REQUEST_LOG_PENDING, "Request-log rows on disk, not yet committed.",
                    s.rows_pending)  # fmt: skip
        yield counter(names.REQUEST_LOG_SPILLED, "Rows kept on disk while the DB was away.",
                      s.rows_spilled)  # fmt: skip
        yield counter(names.REQUEST_LOG_LOST, "Request-log rows lost (must stay 0).", s.rows_lost)
        yield gauge(names.REQUEST_LOG_DISK_BYTES, "Request-log spool bytes on disk.", s.disk_bytes)
        yield gauge(names.REQUEST_LOG_DISK_BUDGET, "Request-log spool disk budget.",
                    s.disk_budget_bytes)  # fmt: skip
        state = GaugeMetricFamily(
            names.BREAKER_STATE, "Breaker state: 0 closed, 1 open, 2 half-open.",
            labels=[*BASE, "dependency"],
        )  # fmt: skip
        for dependency, value in sorted(s.breaker_states.items()):
            state.add_metric([*self._base, dependency], value)
        yield state
        moves = CounterMetricFamily(
            names.BREAKER_TRANSITIONS, "Breaker transitions.",
            labels=[*BASE, "dependency", "to_state"],
        )  # fmt: skip
        for (dependency, to_state), count in sorted(s.breaker_transitions.items()):
            moves.add_metric([*self._base, dependency, to_state], count)
        yield moves
        if s.redis_round_trips is not None:
            yield counter(names.REDIS_ROUND_TRIPS, "Round trips (pipelines) sent to Redis.",
                          s.redis_round_trips)  # fmt: skip
            yield counter(names.REDIS_CALLS, "Cache and idempotency calls those carried.",
                          s.redis_calls or 0)  # fmt: skip


class _FaultCollector(Collector):
    def __init__(
        self, worker: str, release: str, profile: str, active: Callable[[], Mapping[str, float]]
    ) -> None:
        self._labels = [worker, release]
        self._profile = profile
        self._active = active

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            names.FAULTS_ACTIVE, "Injected faults active (1 per fault).",
            labels=[*BASE, "fault", "profile"],
        )  # fmt: skip
        for fault in sorted(self._active()):
            family.add_metric([*self._labels, fault, self._profile], 1)
        yield family


class _ConnectionCollector(Collector):
    """The public port's connections (``worker.connections``), read at scrape time."""

    def __init__(
        self, worker: str, release: str, open_count: Callable[[], int], closed: Mapping[str, int]
    ) -> None:
        self._base = [worker, release]
        self._open = open_count
        self._closed = closed

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            names.CONNECTIONS_OPEN, "Open connections on the public port.", labels=BASE
        )
        gauge.add_metric(self._base, self._open())
        yield gauge
        family = CounterMetricFamily(
            names.CONNECTIONS_CLOSED,
            "Connections Falcon closed or refused, by reason (evicted, refused, header_timeout, "
            "idle_timeout, headers_too_large, bad_request).",
            labels=[*BASE, "reason"],
        )
        for reason, count in sorted(self._closed.items()):
            family.add_metric([*self._base, reason], count)
        yield family


class ServingMetrics:
    """Everything one worker exposes on ``/metrics``."""

    def __init__(
        self,
        *,
        worker: str,
        release: str,
        profile: str = "dev",
        memory_limit_bytes: int = 0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.worker, self.release, self.profile = worker, release, profile
        # The *_created series double the exposition and nothing here reads them (process-wide).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, base = self.registry, (worker, release)
        self._requests = Counter(names.REQUESTS, "Requests by endpoint, HTTP status and cache.",
                                 [*BASE, "endpoint", "status", "cache"], registry=r)  # fmt: skip
        self._duration = Histogram(names.REQUEST_DURATION, "Request latency (seconds).",
                                   [*BASE, "endpoint"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self._errors = Counter(names.ERRORS, "Errors by type.", [*BASE, "type"], registry=r)
        self._synthetic = Counter(names.SYNTHETIC_REQUESTS, "Synthetic canary requests (not "
                                  "user traffic) by HTTP status.", [*BASE, "status"], registry=r)  # fmt: skip
        synthetic_duration = Histogram(names.SYNTHETIC_DURATION, "Synthetic canary request "
                                       "latency (seconds).", BASE, buckets=LATENCY_BUCKETS,
                                       registry=r)  # fmt: skip
        self._synthetic_duration = synthetic_duration.labels(*base)
        batch = Histogram(names.BATCH_SIZE, "Texts per predict_proba call.", BASE,
                          buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self._queue = Gauge(names.QUEUE_DEPTH, "Texts waiting for the model.", BASE, registry=r)
        inflight = Gauge(names.INFLIGHT, "Requests being served.", BASE, registry=r)
        hits = Counter(names.CACHE_HITS, "Response-cache hits (texts).", BASE, registry=r)
        misses = Counter(names.CACHE_MISSES, "Response-cache misses (texts).", BASE, registry=r)
        idem = Counter(names.IDEMPOTENCY_HITS, "Idempotent replays.", BASE, registry=r)
        self._degraded = Counter(names.DEGRADED_RESPONSES, "Responses served while a "
                                 "dependency was degraded.", [*BASE, "dependency"], registry=r)  # fmt: skip
        rss = Gauge(names.RSS, "Resident memory of this worker (bytes).", BASE, registry=r)
        rss.labels(*base).set_function(resident_bytes)
        limit = Gauge(names.MEMORY_LIMIT, "Memory limit (bytes, 0 = none).", BASE, registry=r)
        self._memory_limit = limit.labels(*base)
        self._memory_limit.set(memory_limit_bytes)
        self._model_info = Gauge(names.MODEL_INFO, "The model served (value 1).",
                                 [*BASE, "name", "version", "sha256"], registry=r)  # fmt: skip
        build = Gauge(names.BUILD_INFO, "Falcon build (value 1).", [*BASE, "version"], registry=r)
        build.labels(*base, __version__).set(1)

        # Bound children: the hot path never calls labels().
        self.batch_size = batch.labels(*base)
        # Read at scrape time: the event loop only adds and subtracts an int (a locked Gauge
        # inc/dec pair cost ~1.5 us per request, profiled).
        self.inflight_requests = 0
        inflight.labels(*base).set_function(lambda: float(self.inflight_requests))
        self.cache_hits = hits.labels(*base)
        self.cache_misses = misses.labels(*base)
        self.idempotency_hits = idem.labels(*base)
        self._request_children: dict[tuple[str, int, str], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._error_children: dict[str, Any] = {}
        for endpoint in ENDPOINTS:
            self._duration_children[endpoint] = self._duration.labels(*base, endpoint)
            for cache in ("hit", "miss"):
                self._request_children[(endpoint, 200, cache)] = self._requests.labels(
                    *base, endpoint, "200", cache
                )

    # --- wiring (at start) -------------------------------------------------------------------
    def set_memory_limit(self, limit_bytes: int) -> None:
        """The limit in force for this worker (0 = none), once the spec is read."""
        self._memory_limit.set(limit_bytes)

    def bind_model(self, name: str, version: str, sha256: str) -> None:
        self._model_info.clear()
        self._model_info.labels(self.worker, self.release, name, version, sha256).set(1)

    def bind_queue(self, depth: Callable[[], int]) -> None:
        self._queue.labels(self.worker, self.release).set_function(lambda: float(depth()))

    def bind_stores(self, stats: Callable[[], StoreStats]) -> None:
        self.registry.register(_StoreCollector(self.worker, self.release, stats))

    def bind_faults(self, active: Callable[[], Mapping[str, float]]) -> None:
        self.registry.register(_FaultCollector(self.worker, self.release, self.profile, active))

    def bind_connections(self, open_count: Callable[[], int], closed: Mapping[str, int]) -> None:
        self.registry.register(_ConnectionCollector(self.worker, self.release, open_count, closed))

    # --- hot path ----------------------------------------------------------------------------
    def observe_request(self, endpoint: str, status: int, cache: str, seconds: float) -> None:
        key = (endpoint, status, cache)
        child = self._request_children.get(key)
        if child is None:
            child = self._requests.labels(self.worker, self.release, endpoint, str(status), cache)
            self._request_children[key] = child
        child.inc()
        duration = self._duration_children.get(endpoint)
        if duration is None:
            duration = self._duration.labels(self.worker, self.release, endpoint)
            self._duration_children[endpoint] = duration
        duration.observe(seconds)

    def observe_synthetic(self, status: int, seconds: float) -> None:
        """A synthetic canary request: counted apart from ``observe_request``'s user traffic."""
        self._synthetic.labels(self.worker, self.release, str(status)).inc()
        self._synthetic_duration.observe(seconds)

    def observe_error(self, code: str) -> None:
        child = self._error_children.get(code)
        if child is None:
            child = self._errors.labels(self.worker, self.release, code)
            self._error_children[code] = child
        child.inc()

    def observe_degraded(self, dependencies: Iterable[str]) -> None:
        for dependency in dependencies:
            self._degraded.labels(self.worker, self.release, dependency).inc()

    # --- exposition --------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> float:
    """This process's RSS from ``/proc/self/statm`` (Linux); psutil elsewhere. Read from
    /proc because importing psutil costs a worker ~1 MB, measured."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return float(int(handle.read().split()[1]) * _PAGE)
    except OSError:
        import psutil

        return float(psutil.Process().memory_info().rss)
