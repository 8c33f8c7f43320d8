"""Alert conditions that render to PromQL *and* evaluate in Python, side by side.

Each condition class holds one shape of alert expression. ``promql()`` is what the
rendered rule file says; ``evaluate(reader)`` computes the same vector over an
:class:`~falcon_platform.observability.sli_source.SLISource`, with the arithmetic of
:mod:`falcon_platform.observability.promql`. Keeping both in one class is what keeps
Prometheus and the supervisor's evaluator from drifting; ``tests/promtool`` checks they
agree on shared scenarios.

A vector is ``{label_key: value}`` where ``label_key`` is a sorted tuple of label pairs::

    >>> cond = GaugeCompare("falcon_crash_loop", agg="max", by=("release",), op=">", threshold=0)
    >>> cond.promql()
    'max by (release) (falcon_crash_loop) > 0'
"""

from __future__ import annotations

import math
import operator
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from falcon_platform.config.spec import format_duration
from falcon_platform.observability import names, promql
from falcon_platform.observability.sli_source import Series

LabelKey = tuple[tuple[str, str], ...]
Vector = dict[LabelKey, float]

RSS_METRICS = (names.WORKER_RSS, names.RSS)  # supervisor-sampled first; a lone pod has only its own
ERROR_STATUS_REGEX = "5.."  # a 5xx; the Python side checks the same in _request_rates


class Reader(Protocol):
    """What a condition reads: series by name, the evaluation time, the lookback."""

    now: float
    lookback: float
    memo: dict[Any, Any]  # per-evaluation cache shared by the conditions

    def series(self, name: str) -> list[Series]: ...


def label_key(labels: Mapping[str, str], by: Iterable[str]) -> LabelKey:
    """The grouping key ``sum by (by)`` would give (absent or empty labels are dropped)."""
    return tuple(sorted((k, labels[k]) for k in by if labels.get(k)))


def number(value: float) -> str:
    """A threshold as the rule file writes it (10 significant digits, no float noise)."""
    return f"{value:.10g}"


def bucket_label(bound: float) -> str:
    """A histogram bound as the ``le`` label workers export it: ``"0.5"``, ``"1.0"``, ``"+Inf"``
    (Prometheus 2.x matches the label as text, so ``le="1"`` would find nothing). What
    prometheus_client's untyped ``floatToGoString`` gives for a bucket bound."""
    return "+Inf" if bound == math.inf else repr(float(bound))


def _by(by: tuple[str, ...]) -> str:
    return f" by ({', '.join(by)}) " if by else ""


def _aggregate(agg: str, values: Iterable[tuple[LabelKey, float]]) -> Vector:
    groups: dict[LabelKey, list[float]] = defaultdict(list)
    for key, value in values:
        groups[key].append(value)
    return {key: _REDUCERS[agg](vals) for key, vals in groups.items()}


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "count": lambda values: float(len(values)),
}


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _filter(vector: Vector, op: str, threshold: float) -> Vector:
    compare = _OPS[op]
    return {k: v for k, v in vector.items() if compare(v, threshold)}


def _request_rates(reader: Reader, rng: float) -> tuple[float | None, float]:
    """``sum(rate(requests[rng]))`` (None: no series) and the 5xx part (``or vector(0)``).

    Memoised per evaluation: the burn-rate alerts share windows (6h is in two of them).
    """
    key = ("request_rates", rng)
    if key not in reader.memo:
        total: list[float] = []
        errors: list[float] = []
        for s in reader.series(names.REQUESTS):
            value = promql.rate(s.samples, reader.now, rng)
            if value is None:
                continue
            total.append(value)
            status = s.labels.get("status", "")
            if len(status) == 3 and status.startswith("5"):
                errors.append(value)
        reader.memo[key] = (math.fsum(total) if total else None, math.fsum(errors))
    result: tuple[float | None, float] = reader.memo[key]
    return result


def requests_rule(rng: float) -> str:
    """Recording-rule name of the request rate over ``rng`` seconds."""
    return f"falcon:requests:rate{_window_name(rng)}"


def errors_rule(rng: float) -> str:
    return f"falcon:request_errors:rate{_window_name(rng)}"


def error_ratio_rule(rng: float) -> str:
    return f"falcon:request_error_ratio:rate{_window_name(rng)}"


def _window_name(rng: float) -> str:
    return format_duration(rng)


@dataclass(frozen=True)
class ErrorRatio:
    """Error ratio above ``threshold`` over every window, with enough traffic (the guard).

    One window is the direct ">10% for 1 m" alert; two are a multi-window burn-rate alert
    (Google SRE Workbook ch. 5): the long window says it matters, the short one that it is
    still happening. Reads the ``falcon:request_error_ratio:rate<w>`` recording rules.
    """

    windows: tuple[float, ...]
    threshold: float
    min_rps: float = 0.0

    def promql(self) -> str:
        parts = [f"{error_ratio_rule(w)} > {number(self.threshold)}" for w in self.windows]
        if self.min_rps > 0:
            parts.append(f"{requests_rule(self.windows[0])} >= {number(self.min_rps)}")
        return "\n  and ".join(parts)

    def metrics(self) -> dict[str, float]:
        return {names.REQUESTS: max(self.windows)}

    def evaluate(self, reader: Reader) -> Vector:
        first: float | None = None
        for index, rng in enumerate(self.windows):
            total, errors = _request_rates(reader, rng)
            if total is None:
                return {}
            ratio = errors / total if total > 0 else math.nan
            if not ratio > self.threshold:
                return {}
            if index == 0:
                first = ratio
                if self.min_rps > 0 and not total >= self.min_rps:
                    return {}
        return {(): first} if first is not None else {}


@dataclass(frozen=True)
class LatencyRatio:
    """Share of requests answered within ``le`` seconds below ``target`` over ``window``, with
    enough traffic: the latency objective missed ("p95 < 500 ms" is "95% within 500 ms").

    Counts from the latency histogram's buckets, ``le`` and ``+Inf`` (every request), rather
    than ``histogram_quantile``: no interpolation inside a bucket, and the SLI store keeps the
    buckets. ``le`` must be one of the histogram's bounds (500 ms is).
    """

    le: float
    window: float
    target: float
    min_rps: float = 0.0

    def _rate(self, le: str) -> str:
        rng = format_duration(self.window)
        return f'sum(rate({names.REQUEST_DURATION}_bucket{{le="{le}"}}[{rng}]))'

    def promql(self) -> str:
        total = self._rate("+Inf")
        expr = f"{self._rate(bucket_label(self.le))}\n/ {total}\n< {number(self.target)}"
        if self.min_rps > 0:
            expr += f"\nand {total} >= {number(self.min_rps)}"
        return expr

    def metrics(self) -> dict[str, float]:
        return {f"{names.REQUEST_DURATION}_bucket": self.window}

    def evaluate(self, reader: Reader) -> Vector:
        good: list[float] = []
        total: list[float] = []
        for s in reader.series(f"{names.REQUEST_DURATION}_bucket"):
            le = _bound(s.labels.get("le", ""))
            if le != self.le and le != math.inf:
                continue
            value = promql.rate(s.samples, reader.now, self.window)
            if value is not None:
                (total if le == math.inf else good).append(value)
        if not good or not total:
            return {}  # a sum over no series is no result: nothing to divide
        all_rps = math.fsum(total)
        ratio = math.fsum(good) / all_rps if all_rps > 0 else math.nan
        if not ratio < self.target:
            return {}
        if self.min_rps > 0 and not all_rps >= self.min_rps:
            return {}
        return {(): ratio}


def _bound(le: str) -> float | None:
    """A bucket's ``le`` label as a number (``"0.5"``, ``"+Inf"``); None when it is not one."""
    try:
        return float(le)
    except ValueError:
        return None


_BY_WORKER = ("worker", "release")


def _per_worker(inner: str) -> str:
    """``max by (worker, release) (<inner of the first RSS metric>) or (... the second)``.

    The supervisor samples every worker's RSS itself (several times a second); a lone pod
    (Kubernetes) only has its own gauge. ``or`` takes the supervisor's where it exists.
    """
    return "\nor ".join(f"max by (worker, release) ({inner.format(m)})" for m in RSS_METRICS)


def _paren(text: str) -> str:
    return "(\n" + textwrap.indent(text, "  ") + "\n)"


def _limit_expr() -> str:
    return f"(max by (worker, release) ({names.MEMORY_LIMIT}) > 0)"


def _rss_ratio_expr() -> str:
    return f"{_paren(_per_worker('{}'))}\n/ on (worker, release) {_limit_expr()}"


def _first_of(reader: Reader, per_metric: Callable[[Series], float | None]) -> Vector:
    """PromQL's ``max by (worker, release) (a) or max by (worker, release) (b)``."""
    result: Vector = {}
    for name in RSS_METRICS:
        values = []
        for s in reader.series(name):
            value = per_metric(s)
            if value is not None:
                values.append((label_key(s.labels, _BY_WORKER), value))
        for key, value in _aggregate("max", values).items():
            result.setdefault(key, value)
    return result


def _limits(reader: Reader) -> Vector:
    values = []
    for s in reader.series(names.MEMORY_LIMIT):
        value = promql.latest(s.samples, reader.now, reader.lookback)
        if value is not None:
            values.append((label_key(s.labels, _BY_WORKER), value))
    return _filter(_aggregate("max", values), ">", 0)


def _rss_ratio(reader: Reader) -> Vector:
    limits = _limits(reader)
    rss = _first_of(reader, lambda s: promql.latest(s.samples, reader.now, reader.lookback))
    return {k: v / limits[k] for k, v in rss.items() if k in limits}


@dataclass(frozen=True)
class MemoryRatio:
    """Worker RSS above ``ratio`` of its memory limit (workers without a limit never alert)."""

    ratio: float

    def promql(self) -> str:
        return f"{_rss_ratio_expr()}\n> {number(self.ratio)}"

    def metrics(self) -> dict[str, float]:
        return dict.fromkeys((*RSS_METRICS, names.MEMORY_LIMIT), 0.0)

    def evaluate(self, reader: Reader) -> Vector:
        return _filter(_rss_ratio(reader), ">", self.ratio)


@dataclass(frozen=True)
class MemoryGrowth:
    """RSS above ``floor`` of the limit and, extrapolated linearly, at the limit within ``horizon``."""

    floor: float
    window: float
    horizon: float

    def promql(self) -> str:
        rng, horizon = format_duration(self.window), number(self.horizon)
        predicted = _per_worker(f"predict_linear({{}}[{rng}], {horizon})")
        reaches_limit = f"{_paren(predicted)}\n>= on (worker, release) {_limit_expr()}"
        above_floor = f"{_rss_ratio_expr()}\n> {number(self.floor)}"
        return f"{_paren(reaches_limit)}\nand on (worker, release)\n{_paren(above_floor)}"

    def metrics(self) -> dict[str, float]:
        return dict.fromkeys((*RSS_METRICS, names.MEMORY_LIMIT), self.window)

    def evaluate(self, reader: Reader) -> Vector:
        limits = _limits(reader)
        predicted = _first_of(
            reader,
            lambda s: promql.predict_linear(s.samples, reader.now, self.window, self.horizon),
        )
        above_floor = _filter(_rss_ratio(reader), ">", self.floor)
        return {
            k: v
            for k, v in predicted.items()
            if k in limits and v >= limits[k] and k in above_floor
        }


@dataclass(frozen=True)
class CounterIncrease:
    """``sum by (by) (increase(metric[window])) > threshold`` (e.g. any OOM kill)."""

    metric: str
    window: float
    by: tuple[str, ...] = ("worker", "release")
    threshold: float = 0.0

    def promql(self) -> str:
        return (
            f"sum{_by(self.by)}(increase({self.metric}[{format_duration(self.window)}])) "
            f"> {number(self.threshold)}"
        )

    def metrics(self) -> dict[str, float]:
        return {self.metric: self.window}

    def evaluate(self, reader: Reader) -> Vector:
        values = []
        for s in reader.series(self.metric):
            value = promql.increase(s.samples, reader.now, self.window)
            if value is not None:
                values.append((label_key(s.labels, self.by), value))
        return _filter(_aggregate("sum", values), ">", self.threshold)


@dataclass(frozen=True)
class GaugeCompare:
    """``agg by (by) (metric{matchers}) op threshold`` over the latest samples."""

    metric: str
    agg: str
    by: tuple[str, ...]
    op: str
    threshold: float
    matchers: Mapping[str, str] = field(default_factory=dict)

    def promql(self) -> str:
        selector = self.metric
        if self.matchers:
            selector += (
                "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(self.matchers.items())) + "}"
            )
        return f"{self.agg}{_by(self.by)}({selector}) {self.op} {number(self.threshold)}"

    def metrics(self) -> dict[str, float]:
        return {self.metric: 0.0}

    def evaluate(self, reader: Reader) -> Vector:
        values = []
        for s in reader.series(self.metric):
            if any(s.labels.get(k) != v for k, v in self.matchers.items()):
                continue
            value = promql.latest(s.samples, reader.now, reader.lookback)
            if value is not None:
                values.append((label_key(s.labels, self.by), value))
        return _filter(_aggregate(self.agg, values), self.op, self.threshold)


@dataclass(frozen=True)
class DistinctValues:
    """More than one value of ``label`` seen on ``metric`` within ``window`` (a change)."""

    metric: str
    label: str
    window: float

    def promql(self) -> str:
        return (
            f"count(count by ({self.label}) "
            f"(max_over_time({self.metric}[{format_duration(self.window)}]))) > 1"
        )

    def metrics(self) -> dict[str, float]:
        return {self.metric: self.window}

    def evaluate(self, reader: Reader) -> Vector:
        seen = {
            s.labels.get(self.label, "")
            for s in reader.series(self.metric)
            if promql.max_over_time(s.samples, reader.now, self.window) is not None
        }
        return {(): float(len(seen))} if len(seen) > 1 else {}


@dataclass(frozen=True)
class Absent:
    """No series of ``metric`` equal to ``value`` now, although one was seen ``seen_within``.

    ``absent(metric == value) and on () count(max_over_time(metric[seen_within])) > 0``:
    true when the series went missing or stale (Prometheus marks a vanished target's series
    stale at once) or holds another value, but only where it existed lately, so a cluster
    that never runs the exporting process (Kubernetes has no supervisor) never fires.
    """

    metric: str
    value: float = 1.0
    seen_within: float = 86400.0

    def promql(self) -> str:
        return (
            f"absent({self.metric} == {number(self.value)})\nand on ()\n"
            f"count(max_over_time({self.metric}[{format_duration(self.seen_within)}])) > 0"
        )

    def metrics(self) -> dict[str, float]:
        return {self.metric: self.seen_within}

    def evaluate(self, reader: Reader) -> Vector:
        seen = False
        for s in reader.series(self.metric):
            if promql.latest(s.samples, reader.now, reader.lookback) == self.value:
                return {}
            if promql.max_over_time(s.samples, reader.now, self.seen_within) is not None:
                seen = True
        return {(): 1.0} if seen else {}


Condition = (
    ErrorRatio
    | LatencyRatio
    | MemoryRatio
    | MemoryGrowth
    | CounterIncrease
    | GaugeCompare
    | DistinctValues
    | Absent
)
