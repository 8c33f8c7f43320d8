"""What the judge compares: one release's numbers over a window, read from where they live.

Requests, 5xx and latency from the SLI store (the workers' counters and histogram, scraped by
the supervisor); memory from the supervisor's RSS samples; OOM kills and soft-limit recycles
from the journal; predicted labels and confidence from the request log::

    stats = release_window(sli, journal, engine, "r3", start=t0, end=t1)

The arithmetic (counter increases across restarts, histogram quantiles, slopes) is in pure
functions below; the readers are thin.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, func, select

from falcon_platform.events.journal import Event, EventJournal, EventKind, filter_events
from falcon_platform.loadtest.memory import MemorySample, fit_slope
from falcon_platform.observability import names
from falcon_platform.observability.sli_source import SLISource
from falcon_platform.releases.judge import WindowStats
from falcon_platform.stores.schema import request_log

log = logging.getLogger("falcon.releases")
MB = 1_048_576
_LOOKBACK_S = 5.0  # a sample just before the window is the baseline of a counter


def counter_increase(samples: Sequence[tuple[float, float]], start: float) -> float:
    """Increase of a cumulative counter over [start, ...]: the last sample at or before
    ``start`` is the baseline (none: the series began inside the window, from 0); a drop is a
    restart (the new value counts from 0). Pure."""
    before = [v for t, v in samples if t <= start]
    previous = before[-1] if before else 0.0
    total = 0.0
    for t, value in samples:
        if t <= start:
            continue
        total += value - previous if value >= previous else value
        previous = value
    return total


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative bucket counts {le: count}; None
    without observations. Linear interpolation inside the bucket; +Inf -> the largest bound."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower_bound
            width = count - lower_count
            if width <= 0:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = le, count
    return bounds[-1]


def _sum_increases(sli: SLISource, name: str, match: dict[str, str], start: float, end: float,
                   key: str | None = None) -> dict[str, float]:  # fmt: skip
    out: dict[str, float] = {}
    for series in sli.query(name, start - _LOOKBACK_S, end, match):
        label = series.labels.get(key, "") if key else ""
        out[label] = out.get(label, 0.0) + counter_increase(series.samples, start)
    return out


class EventList:
    """Events already read (on the supervisor's loop), queried like a journal from a thread."""

    def __init__(self, found: Sequence[Event]) -> None:
        self._found = list(found)

    def query(self, **filters: Any) -> list[Event]:
        filters.pop("limit", None)
        return filter_events(self._found, **filters)


def release_window(
    sli: SLISource | None,
    journal: EventJournal | EventList,
    engine: Engine | None,
    release: str,
    *,
    start: float,
    end: float,
) -> WindowStats:
    """The release's numbers over [start, end] (``WindowStats``; unmeasured stays None)."""
    match = {"release": release}
    requests = errors = synthetic = 0
    p95: float | None = None
    memory: float | None = None
    slope: float | None = None
    if sli is not None:
        # User and synthetic requests together (``releases.synthetic``: only a canary gets
        # those; they count for the judge, never for SLOs, alerts or incidents).
        by_status = _sum_increases(sli, names.REQUESTS, match, start, end, key="status")
        synthetic_by_status = _sum_increases(sli, names.SYNTHETIC_REQUESTS, match, start, end,
                                             key="status")  # fmt: skip
        synthetic = round(sum(synthetic_by_status.values()))
        for status, n in synthetic_by_status.items():
            by_status[status] = by_status.get(status, 0.0) + n
        requests = round(sum(by_status.values()))
        errors = round(sum(v for s, v in by_status.items() if s.startswith("5")))
        buckets = _sum_increases(sli, names.REQUEST_DURATION + "_bucket", match, start, end,
                                 key="le")  # fmt: skip
        for le, n in _sum_increases(sli, names.SYNTHETIC_DURATION + "_bucket", match, start,
                                    end, key="le").items():  # fmt: skip
            buckets[le] = buckets.get(le, 0.0) + n
        cumulative = {float(le): v for le, v in buckets.items() if le}
        seconds = histogram_quantile(0.95, cumulative)
        p95 = seconds * 1000.0 if seconds is not None else None
        memory, slope = _memory(sli, match, start, end)
    oom = recycles = restarts = 0
    for event in journal.query(since=start, until=end, release=release,
                               kinds=[EventKind.WORKER_EXITED, EventKind.LIMIT_RECYCLE]):  # fmt: skip
        if event.kind == EventKind.LIMIT_RECYCLE:
            recycles += 1
        elif event.details.get("oom_killed"):
            oom += 1
        elif event.details.get("reason") not in ("Recycled", "Stopped"):
            restarts += 1
    labels, confidence = _answers(engine, release, start, end)
    return WindowStats(
        requests=requests,
        errors=errors,
        p95_ms=p95,
        memory_mb=memory,
        memory_slope_mb_per_min=slope,
        oom_kills=oom,
        limit_recycles=recycles,
        restarts=restarts,
        labels=labels,
        mean_confidence=confidence,
        synthetic_requests=synthetic,
    )


def _memory(
    sli: SLISource, match: dict[str, str], start: float, end: float
) -> tuple[float | None, float | None]:
    """(largest latest RSS in MB, steepest slope in MB/min) among the release's workers."""
    latest: list[float] = []
    slopes: list[float] = []
    for series in sli.query(names.WORKER_RSS, start, end, match):
        if not series.samples:
            continue
        latest.append(series.samples[-1][1] / MB)
        fit = fit_slope([MemorySample(t - start, int(v), 0) for t, v in series.samples])
        if fit is not None:
            slopes.append(fit.slope_mb_per_min)
    return (max(latest) if latest else None), (max(slopes) if slopes else None)


def _answers(
    engine: Engine | None, release: str, start: float, end: float
) -> tuple[dict[str, int], float | None]:
    """Predicted label counts and mean confidence of the release's 2xx answers (request log:
    rows arrive in batches, so the newest second or two may be missing)."""
    if engine is None:
        return {}, None
    stmt: Any = (
        select(request_log.c.prediction, func.count(), func.avg(request_log.c.confidence))
        .where(request_log.c.release == release)
        .where(request_log.c.ts >= start)
        .where(request_log.c.ts <= end)
        .where(request_log.c.status_code < 300)
        .where(request_log.c.prediction.is_not(None))
        .group_by(request_log.c.prediction)
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
    except Exception as exc:  # the judge goes on without the answers; say so
        log.warning("cannot read the request log for the canary analysis: %s", exc)
        return {}, None
    labels = {str(label): int(n) for label, n, _ in rows}
    total = sum(labels.values())
    if total == 0:
        return {}, None
    mean = sum(float(avg or 0.0) * int(n) for _, n, avg in rows) / total
    return labels, mean
