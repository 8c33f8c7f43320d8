"""The supervisor's own metrics (``supervisor.fleet_metrics``): which families it declares, of
which type and labels, on a private registry, read back through prometheus_client's parser.

The names are written out here (what dashboards, alert rules and runbooks query), not taken
from ``observability.names``: renaming a series must fail this test.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics

# family name (as the parser reports it) -> (type, label names of its samples)
FAMILIES = {
    "falcon_supervisor_up": ("gauge", set()),
    "falcon_worker_restarts": ("counter", {"worker", "release"}),
    "falcon_worker_oom_kills": ("counter", {"worker", "release"}),
    "falcon_worker_limit_recycles": ("counter", {"worker", "release"}),
    "falcon_worker_liveness_kills": ("counter", {"worker", "release"}),
    "falcon_rollouts_aborted": ("counter", {"release", "reason"}),
    "falcon_crash_loop": ("gauge", {"release"}),
    "falcon_workers": ("gauge", {"release", "state"}),
    "falcon_workers_ready": ("gauge", {"release"}),
    "falcon_workers_desired": ("gauge", {"release"}),
    "falcon_worker_resident_memory_bytes": ("gauge", {"worker", "release"}),
    "falcon_worker_proportional_memory_bytes": ("gauge", {"worker", "release"}),
    "falcon_scrape_failures": ("counter", {"worker"}),
}


def _exposition(metrics: SupervisorMetrics) -> dict[str, tuple[str, list[Sample]]]:
    text = generate_latest(metrics.registry).decode()
    # *_created series exist unless a ServingMetrics in this process disabled them globally
    return {
        f.name: (f.type, [s for s in f.samples if not s.name.endswith("_created")])
        for f in text_string_to_metric_families(text)
        if not f.name.endswith("_created")
    }


def test_a_fresh_supervisor_declares_every_family_and_only_up_has_a_sample() -> None:
    families = _exposition(SupervisorMetrics())
    assert {name: kind for name, (kind, _) in families.items()} == {
        name: kind for name, (kind, _) in FAMILIES.items()
    }
    samples = {s.name: s.value for _, found in families.values() for s in found}
    assert samples == {"falcon_supervisor_up": 1.0}


def test_every_family_carries_exactly_its_labels() -> None:
    metrics = SupervisorMetrics()
    for counter in (
        metrics.restarts,
        metrics.oom_kills,
        metrics.limit_recycles,
        metrics.liveness_kills,
    ):
        counter.labels(worker="w1", release="r1").inc()
    metrics.scrape_failures.labels(worker="w1").inc(2)
    metrics.rollouts_aborted.labels(release="r2", reason="analysis").inc()
    metrics.crash_loop.labels(release="r1").set(1)
    metrics.workers.labels(release="r1", state="ready").set(2)
    metrics.workers_ready.labels(release="r1").set(2)
    metrics.workers_desired.labels(release="r1").set(3)
    metrics.worker_rss.labels(worker="w1", release="r1").set(1e8)
    metrics.worker_pss.labels(worker="w1", release="r1").set(6e7)
    for name, (kind, samples) in _exposition(metrics).items():
        want_kind, want_labels = FAMILIES[name]
        assert kind == want_kind, name
        assert samples, name
        for sample in samples:
            assert set(sample.labels) == want_labels, sample
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for _, samples in _exposition(metrics).values()
        for s in samples
    }
    assert values[("falcon_worker_restarts_total", (("release", "r1"), ("worker", "w1")))] == 1.0
    assert values[("falcon_scrape_failures_total", (("worker", "w1"),))] == 2.0
    assert values[("falcon_workers_desired", (("release", "r1"),))] == 3.0
    aborted = ("falcon_rollouts_aborted_total", (("reason", "analysis"), ("release", "r2")))
    assert values[aborted] == 1.0


def test_each_supervisor_has_its_own_registry_not_the_global_one() -> None:
    """Two supervisors in one process (tests, the console) must not share counts, and the
    process-wide registry stays free of supervisor series."""
    a, b = SupervisorMetrics(), SupervisorMetrics()
    a.restarts.labels(worker="w1", release="r1").inc()
    assert (
        b.registry.get_sample_value(
            "falcon_worker_restarts_total", {"worker": "w1", "release": "r1"}
        )
        is None
    )
    assert REGISTRY.get_sample_value("falcon_supervisor_up") is None
