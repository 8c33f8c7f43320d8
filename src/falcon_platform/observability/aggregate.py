"""Merge every worker's Prometheus exposition (plus the supervisor's) into one /metrics.

One HELP/TYPE per family, all samples under it, so an external Prometheus scrapes the
control port once instead of every private worker socket::

    text = merge_expositions(
        [WorkerExposition("w1", "r1", w1_text), WorkerExposition("w2", "r1", w2_text)],
        extra=[supervisor_registry],
    )

Parsing and rendering use prometheus_client's own parser and ``generate_latest`` (no
hand-written text format).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample


@dataclass(frozen=True, slots=True)
class WorkerExposition:
    worker: str
    release: str
    text: str


def parse_exposition(text: str, *, worker: str, release: str) -> list[Metric]:
    """Families of one worker's exposition; samples lacking ``worker``/``release`` get them.

    Malformed text raises ``ValueError`` (the caller counts a scrape failure).
    """
    families = []
    for family in text_string_to_metric_families(text):
        fixed = []
        for sample in family.samples:
            labels = dict(sample.labels)
            labels.setdefault("worker", worker)
            labels.setdefault("release", release)
            fixed.append(
                Sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
            )
        family.samples = fixed
        families.append(family)
    return families


class _Merged(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for family in self._families:
            target = merged.get(family.name)
            if target is None:
                target = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = target
            elif target.type != family.type:
                continue  # a worker disagreeing on a type would make the whole page invalid
            target.samples.extend(family.samples)
        yield from merged.values()


def merge_expositions(
    workers: Iterable[WorkerExposition], extra: Iterable[CollectorRegistry] = ()
) -> str:
    """The merged exposition text (Prometheus text format 0.0.4)."""
    families: list[Metric] = []
    for exposition in workers:
        try:
            families.extend(
                parse_exposition(
                    exposition.text, worker=exposition.worker, release=exposition.release
                )
            )
        except ValueError:
            continue  # counted as a scrape failure where the text was fetched
    for registry in extra:
        families.extend(registry.collect())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families))
    return generate_latest(registry).decode()
