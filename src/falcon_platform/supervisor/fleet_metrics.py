"""The supervisor's own Prometheus metrics (names in ``observability.names``).

One registry per supervisor (not the global one), served merged with every worker's
exposition on the control port's /metrics and sampled into the SLI store.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from falcon_platform.observability import names


class SupervisorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.up = Gauge(names.SUPERVISOR_UP, "1 while the supervisor runs.", registry=r)
        self.restarts = Counter(
            names.WORKER_RESTARTS, "Worker restarts.", ["worker", "release"], registry=r
        )
        self.oom_kills = Counter(
            names.WORKER_OOM_KILLS,
            "Workers OOM-killed (exit 137).",
            ["worker", "release"],
            registry=r,
        )
        self.limit_recycles = Counter(
            names.WORKER_LIMIT_RECYCLES,
            "Workers recycled at the soft memory limit.",
            ["worker", "release"],
            registry=r,
        )
        self.liveness_kills = Counter(
            names.WORKER_LIVENESS_KILLS,
            "Workers killed by the liveness probe.",
            ["worker", "release"],
            registry=r,
        )
        self.rollouts_aborted = Counter(
            names.ROLLOUTS_ABORTED,
            "Rollouts aborted (stable release restored), by release and reason.",
            ["release", "reason"],
            registry=r,
        )
        self.crash_loop = Gauge(
            names.CRASH_LOOP, "1 while the release is in CrashLoopBackOff.", ["release"], registry=r
        )
        self.workers = Gauge(names.WORKERS, "Workers by state.", ["release", "state"], registry=r)
        self.workers_ready = Gauge(names.WORKERS_READY, "Ready workers.", ["release"], registry=r)
        self.workers_desired = Gauge(
            names.WORKERS_DESIRED, "Desired workers.", ["release"], registry=r
        )
        self.worker_rss = Gauge(
            names.WORKER_RSS,
            "Worker resident memory sampled by the supervisor.",
            ["worker", "release"],
            registry=r,
        )
        self.worker_pss = Gauge(
            names.WORKER_PSS,
            "Worker proportional set size (PSS) sampled by the supervisor; the memory limits "
            "apply to it.",
            ["worker", "release"],
            registry=r,
        )
        self.scrape_failures = Counter(
            names.SCRAPE_FAILURES, "Failed scrapes of a worker's /metrics.", ["worker"], registry=r
        )
        self.up.set(1)
