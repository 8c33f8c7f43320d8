"""A worker's Prometheus metrics: one ``CollectorRegistry`` per app, children bound up front.

Names come from :mod:`observability.names`; every series carries ``worker`` and
``release``. What every request adds to (requests, their latency, cache hits and misses,
idempotent replays) is kept in plain numbers that only the event loop touches, and rendered
by a collector at scrape time with the names, labels, buckets and values prometheus_client's
own ``Counter`` and ``Histogram`` would give: their lock, label-child lookup and per-call
checks cost ~4 us of a ~45 us cache hit (callgrind, ``bench/hit_cost.py``). Store, queue, RSS
and fault values are read by collectors at scrape time too::

    metrics = ServingMetrics(worker="w0", release="r1")
    metrics.observe_request("/infer", 200, "miss", 0.004)
    body, content_type = metrics.render()
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class Tally:
    """A counter only the event loop adds to: no lock (prometheus_client's ``Counter`` takes
    one per ``inc``), read by :class:`_TallyCollector` at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class _TallyCollector(Collector):
    """One label-less counter series from a :class:`Tally`."""

    def __init__(self, name: str, doc: str, base: list[str], tally: Tally) -> None:
        self._name, self._doc, self._base, self._tally = name, doc, base, tally

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=BASE)
        family.add_metric(self._base, self._tally.value)
        yield family


class _Latency:
    """One endpoint's latency histogram: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum = 0.0


class _RequestCollector(Collector):
    """``falcon_requests_total`` and ``falcon_request_duration_seconds`` from plain numbers
    the event loop adds to (``ServingMetrics.observe_request``), rendered as prometheus_client's
    ``Counter`` and ``Histogram`` would render them (same order of series, ``le`` labels, sum)."""

    def __init__(self, worker: str, release: str, buckets: Iterable[float]) -> None:
        self._base = [worker, release]
        bounds = [float(b) for b in buckets]
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = bounds
        self._le = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        self.requests: dict[tuple[str, int, str], int] = {}
        self.latency: dict[str, _Latency] = {}

    def latency_of(self, endpoint: str) -> _Latency:
        histogram = self.latency.get(endpoint)
        if histogram is None:
            histogram = self.latency[endpoint] = _Latency(len(self.bounds))
        return histogram

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            names.REQUESTS, "Requests by endpoint, HTTP status and cache.",
            labels=[*BASE, "endpoint", "status", "cache"],
        )  # fmt: skip
        for (endpoint, status, cache), count in list(self.requests.items()):
            requests.add_metric([*self._base, endpoint, str(status), cache], float(count))
        yield requests
        duration = HistogramMetricFamily(
            names.REQUEST_DURATION, "Request latency (seconds).", labels=[*BASE, "endpoint"]
        )
        for endpoint, histogram in list(self.latency.items()):
            cumulative, buckets = 0.0, []
            for le, count in zip(self._le, histogram.counts, strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            duration.add_metric([*self._base, endpoint], buckets, histogram.sum)
        yield duration


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
        self._counts = _RequestCollector(worker, release, LATENCY_BUCKETS)
        r.register(self._counts)
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
        # Added to per text or request by the event loop only: tallies, read at scrape time.
        self.cache_hits, self.cache_misses, self.idempotency_hits = Tally(), Tally(), Tally()
        for name, doc, tally in (
            (names.CACHE_HITS, "Response-cache hits (texts).", self.cache_hits),
            (names.CACHE_MISSES, "Response-cache misses (texts).", self.cache_misses),
            (names.IDEMPOTENCY_HITS, "Idempotent replays.", self.idempotency_hits),
        ):
            r.register(_TallyCollector(name, doc, list(base), tally))
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
        self._error_children: dict[str, Any] = {}
        # Every hot endpoint's series exist at 0 from the start (rate() sees the first request).
        for endpoint in ENDPOINTS:
            self._counts.latency_of(endpoint)
            for cache in ("hit", "miss"):
                self._counts.requests[(endpoint, 200, cache)] = 0

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
        """One answered request (event loop only). As ``Histogram.observe``: the sum first,
        then the bucket whose upper bound is the first >= ``seconds``."""
        counts = self._counts
        requests, key = counts.requests, (endpoint, status, cache)
        requests[key] = requests.get(key, 0) + 1
        histogram = counts.latency.get(endpoint) or counts.latency_of(endpoint)
        histogram.sum += seconds
        histogram.counts[bisect_left(counts.bounds, seconds)] += 1

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
