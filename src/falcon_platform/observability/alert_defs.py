"""Every Falcon alert, derived from the spec: the one source of truth.

The Prometheus rule renderer (``observability.rules``), the Grafana dashboard and the
supervisor's own evaluator (``observability.evaluator``) all read :func:`alert_defs`,
so a threshold changed in ``falcon.yaml`` changes every output at once::

    >>> from falcon_platform.config.spec import Spec
    >>> [d.name for d in alert_defs(Spec())][:2]
    ['FalconErrorBudgetBurn', 'FalconErrorBudgetBurn']
    >>> runbook_url("FalconWorkerOOMKilled")
    'https://github.com/falcon-platform/falcon/blob/main/docs/RUNBOOK.md#falconworkeroomkilled'

Severities follow Alertmanager habit: ``critical`` pages, ``warning`` opens a ticket,
``info`` is for the record. The spec's burn windows say ``page``/``ticket``; they map to
``critical``/``warning``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from falcon_platform.config.spec import Spec, format_duration
from falcon_platform.observability import names
from falcon_platform.observability.conditions import (
    ERROR_STATUS_REGEX,
    Absent,
    CounterIncrease,
    DistinctValues,
    ErrorRatio,
    GaugeCompare,
    LatencyRatio,
    MemoryGrowth,
    MemoryRatio,
    bucket_label,
    error_ratio_rule,
    errors_rule,
    number,
    requests_rule,
)
from falcon_platform.observability.conditions import Condition as Condition

RUNBOOK_BASE = "https://github.com/falcon-platform/falcon/blob/main/docs/RUNBOOK.md"
SEVERITY_OF_BURN = {"page": "critical", "ticket": "warning"}
LATENCY_WINDOW = 300.0
# Fires from falcon_rollouts_aborted_total, the counter beside the journal's rollout_aborted
# event; the incident watcher lets that event open the incident and only notes this alert.
CANARY_ABORTED = "FalconCanaryAborted"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: ``"Worker OOM-killed"`` -> ``worker-oom-killed``."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # GitHub keeps letters, digits, _, - and spaces
    return text.replace(" ", "-")


def runbook_url(alert_name: str) -> str:
    return f"{RUNBOOK_BASE}#{github_slug(alert_name)}"


@dataclass(frozen=True)
class AlertDef:
    """One alerting rule: ``condition`` true for ``for_s`` seconds fires it."""

    name: str
    severity: str
    group: str  # rule group in the rendered file: "falcon-slo" or "falcon-runtime"
    condition: Condition
    for_s: float
    summary: str  # may use {{ $labels.<name> }}; no $value, so both evaluators render it alike
    description: str
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def labels(self, service: str) -> dict[str, str]:
        return {"severity": self.severity, "service": service, **self.extra_labels}

    def annotations(self) -> dict[str, str]:
        return {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": runbook_url(self.name),
        }


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str


def _ratio_windows(spec: Spec) -> list[float]:
    windows = {spec.alerts.error_rate_window, spec.slo.window}
    for burn in spec.alerts.burn_windows:
        windows.update((burn.long, burn.short))
    return sorted(windows)


def recording_rules(spec: Spec) -> list[RecordingRule]:
    """The SLIs as recording rules: request rate, error rate and ratio per window, latency."""
    rules: list[RecordingRule] = []
    for rng in _ratio_windows(spec):
        w = format_duration(rng)
        rules += [
            RecordingRule(requests_rule(rng), f"sum(rate({names.REQUESTS}[{w}]))"),
            RecordingRule(
                errors_rule(rng),
                f'sum(rate({names.REQUESTS}{{status=~"{ERROR_STATUS_REGEX}"}}[{w}])) or vector(0)',
            ),
            RecordingRule(error_ratio_rule(rng), f"{errors_rule(rng)} / {requests_rule(rng)}"),
        ]
    w = format_duration(LATENCY_WINDOW)
    buckets = f"{names.REQUEST_DURATION}_bucket"
    for q in (0.5, 0.95, 0.99):
        rules.append(
            RecordingRule(
                f"falcon:request_latency_seconds:p{round(q * 100)}_rate{w}",
                f"histogram_quantile({q}, sum by (le) (rate({buckets}[{w}])))",
            )
        )
    le = bucket_label(spec.slo.latency_p95_ms / 1000)
    rules.append(
        RecordingRule(
            f"falcon:request_latency_good_ratio:rate{w}",
            f'sum(rate({buckets}{{le="{le}"}}[{w}]))\n/ sum(rate({names.REQUEST_DURATION}_count[{w}]))',
        )
    )
    return rules


def _burn_alerts(spec: Spec) -> list[AlertDef]:
    budget = 1 - spec.slo.availability
    out = []
    for burn in spec.alerts.burn_windows:
        threshold = float(number(burn.factor * budget))
        long_w, short_w = format_duration(burn.long), format_duration(burn.short)
        out.append(
            AlertDef(
                name="FalconErrorBudgetBurn",
                severity=SEVERITY_OF_BURN[burn.severity],
                group="falcon-slo",
                condition=ErrorRatio(
                    (burn.long, burn.short), threshold, spec.alerts.low_traffic_min_rps
                ),
                for_s=0.0,
                summary=f"Error budget burning {number(burn.factor)}x too fast ({long_w}/{short_w})",
                description=(
                    f"The error ratio over both {long_w} and {short_w} is above {number(threshold)}, "
                    f"{number(burn.factor)} times the budget of the {number(spec.slo.availability)} "
                    f"availability SLO; at this rate the {format_duration(spec.slo.window)} budget "
                    f"lasts {format_duration(round(spec.slo.window / burn.factor))}."
                ),
                extra_labels={
                    "slo": "availability",
                    "long_window": long_w,
                    "short_window": short_w,
                },
            )
        )
    return out


def alert_defs(spec: Spec) -> list[AlertDef]:
    """Every alert the spec asks for, in rendering order."""
    a = spec.alerts
    mem = number(a.memory_percent)
    return [
        *_burn_alerts(spec),
        AlertDef(
            name="FalconHighErrorRate",
            severity="critical",
            group="falcon-slo",
            condition=ErrorRatio(
                (a.error_rate_window,), a.error_rate_critical, a.low_traffic_min_rps
            ),
            for_s=a.error_rate_for,
            summary=f"More than {number(a.error_rate_critical * 100)}% of requests are failing",
            description=(
                f"The 5xx ratio over {format_duration(a.error_rate_window)} has been above "
                f"{number(a.error_rate_critical * 100)}% for {format_duration(a.error_rate_for)} "
                "(the rollback trigger). Look at the newest release first."
            ),
        ),
        AlertDef(
            name="FalconHighLatency",
            # A ticket, not a page: slow answers still answer; the error alerts page when
            # requests fail (a timeout is an error).
            severity="warning",
            group="falcon-slo",
            condition=LatencyRatio(
                spec.slo.latency_p95_ms / 1000,
                LATENCY_WINDOW,
                spec.slo.latency_target,
                a.low_traffic_min_rps,
            ),
            for_s=a.latency_for,
            summary=f"p{number(spec.slo.latency_target * 100)} latency above "
            f"{number(spec.slo.latency_p95_ms)} ms",
            description=(
                f"Fewer than {number(spec.slo.latency_target * 100)}% of requests over the last "
                f"{format_duration(LATENCY_WINDOW)} were answered within "
                f"{number(spec.slo.latency_p95_ms)} ms, for {format_duration(a.latency_for)}: "
                "the latency objective is missed. Look at the newest release and at load."
            ),
            extra_labels={"slo": "latency"},
        ),
        AlertDef(
            name="FalconWorkerMemoryHigh",
            severity="warning",
            group="falcon-runtime",
            condition=MemoryRatio(a.memory_percent / 100),
            for_s=a.memory_for,
            summary=f"Worker {{{{ $labels.worker }}}} uses more than {mem}% of its memory limit",
            description=(
                f"Resident memory of worker {{{{ $labels.worker }}}} (release {{{{ $labels.release }}}}) "
                f"has been above {mem}% of its limit for {format_duration(a.memory_for)}; "
                "at the limit it is OOM-killed."
            ),
        ),
        AlertDef(
            name="FalconWorkerMemoryGrowth",
            severity="warning",
            group="falcon-runtime",
            condition=MemoryGrowth(
                a.memory_growth_percent / 100, a.memory_growth_window, a.memory_growth_horizon
            ),
            for_s=a.memory_growth_for,
            summary="Worker {{ $labels.worker }} will reach its memory limit soon",
            description=(
                "Resident memory of worker {{ $labels.worker }} (release {{ $labels.release }}) is above "
                f"{number(a.memory_growth_percent)}% of its limit and, at its growth over the last "
                f"{format_duration(a.memory_growth_window)}, reaches the limit within "
                f"{format_duration(a.memory_growth_horizon)}: a leak. Expect OOM kills."
            ),
        ),
        AlertDef(
            name="FalconWorkerOOMKilled",
            severity="critical",
            group="falcon-runtime",
            condition=CounterIncrease(names.WORKER_OOM_KILLS, a.oom_kill_window),
            for_s=0.0,
            summary="Worker {{ $labels.worker }} was OOM-killed",
            description=(
                "Worker {{ $labels.worker }} (release {{ $labels.release }}) exceeded its memory "
                f"limit and was killed (exit 137) within the last {format_duration(a.oom_kill_window)}."
            ),
        ),
        AlertDef(
            name="FalconWorkerRecycling",
            severity="critical",
            group="falcon-runtime",
            # By release: each recycle starts a new worker (a surge), so a leak shows as many
            # workers recycled once each, not one worker recycled many times.
            condition=CounterIncrease(
                names.WORKER_LIMIT_RECYCLES,
                a.recycle_window,
                by=("release",),
                threshold=a.recycle_max,
            ),
            for_s=0.0,
            summary="Workers of release {{ $labels.release }} keep reaching their soft memory limit: a leak",
            description=(
                "Workers of release {{ $labels.release }} were recycled at the soft memory limit "
                f"more than {a.recycle_max} times in {format_duration(a.recycle_window)}. "
                "Recycling hides the leak from users for now (no request fails), not from the "
                "next OOM kill: roll the release back."
            ),
        ),
        AlertDef(
            name=CANARY_ABORTED,
            severity="critical",
            group="falcon-runtime",
            # Pages at once and holds for the window: the abort itself takes seconds (Falcon
            # restored the stable release), the page is so a person reads why.
            condition=CounterIncrease(
                names.ROLLOUTS_ABORTED, a.canary_aborted_window, by=("release", "reason")
            ),
            for_s=0.0,
            summary="Rollout of release {{ $labels.release }} aborted ({{ $labels.reason }}); "
            "the stable release serves",
            description=(
                "Falcon aborted the rollout of release {{ $labels.release }} (reason: "
                f"{{{{ $labels.reason }}}}) within the last {format_duration(a.canary_aborted_window)}: "
                "the stable release was restored to full size and the canary workers drained. "
                "`falcon releases show {{ $labels.release }}` has the failed step's numbers; "
                "the incident is in `falcon incident list`."
            ),
        ),
        AlertDef(
            name="FalconCrashLoop",
            severity="critical",
            group="falcon-runtime",
            condition=GaugeCompare(names.CRASH_LOOP, "max", ("release",), ">", 0),
            for_s=0.0,
            summary="Release {{ $labels.release }} is crash-looping",
            description=(
                f"Workers of release {{{{ $labels.release }}}} restarted more than "
                f"{spec.restart.crash_loop_restarts} times in "
                f"{format_duration(spec.restart.crash_loop_window)}; restarts are backed off."
            ),
        ),
        AlertDef(
            name="FalconNoReadyWorker",
            severity="critical",
            group="falcon-runtime",
            condition=GaugeCompare(names.WORKERS_READY, "sum", (), "<", 1),
            for_s=a.no_ready_worker_for,
            summary="No Falcon worker is ready: every request fails",
            description=(
                f"No worker has passed its readiness probe for {format_duration(a.no_ready_worker_for)}."
            ),
        ),
        AlertDef(
            name="FalconSupervisorDown",
            severity="critical",
            group="falcon-runtime",
            condition=Absent(names.SUPERVISOR_UP),
            for_s=a.supervisor_absent_for,
            summary="The Falcon supervisor is not running",
            description=(
                "No falcon_supervisor_up == 1 for "
                f"{format_duration(a.supervisor_absent_for)}: the supervisor (and with it "
                "restarts, memory limits, probes and the local alerts) is gone, or Prometheus "
                "cannot scrape it. Its workers drain and exit when it dies."
            ),
        ),
        AlertDef(
            name="FalconFaultsActiveInProd",
            severity="critical",
            group="falcon-runtime",
            condition=GaugeCompare(
                names.FAULTS_ACTIVE,
                "max",
                ("worker", "release", "fault"),
                ">",
                0,
                {"profile": "prod"},
            ),
            for_s=0.0,
            summary="Fault injection {{ $labels.fault }} is active in production",
            description=(
                "Worker {{ $labels.worker }} (release {{ $labels.release }}) runs the prod profile "
                "with the fault injector {{ $labels.fault }} on."
            ),
        ),
        AlertDef(
            name="FalconConfigChanged",
            severity="info",
            group="falcon-runtime",
            condition=DistinctValues(names.CONFIG_INFO, "fingerprint", a.config_change_window),
            for_s=0.0,
            summary="Falcon's configuration fingerprint changed",
            description=(
                "More than one configuration fingerprint was seen in the last "
                f"{format_duration(a.config_change_window)}: settings or spec changed."
            ),
        ),
        AlertDef(
            name="FalconRequestLogBacklog",
            severity="warning",
            group="falcon-runtime",
            condition=GaugeCompare(
                names.REQUEST_LOG_PENDING, "sum", (), ">", a.request_log_pending_budget
            ),
            for_s=0.0,
            summary="Request-log rows are piling up on local disk",
            description=(
                f"More than {a.request_log_pending_budget} request-log rows wait on local disk "
                "for the database."
            ),
        ),
    ]


def alert_names(spec: Spec) -> list[str]:
    """Distinct alert names, in rendering order."""
    return list(dict.fromkeys(d.name for d in alert_defs(spec)))
