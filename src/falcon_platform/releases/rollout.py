"""Rollouts: gate -> canary steps with analysis -> promoted | aborted (stable restored).

Argo Rollouts' basic canary by replica ratio, on one machine: every worker shares the public
socket, so a release's share of traffic is its share of the ready workers. A runner task in
the supervisor's event loop moves ``Supervisor.desired`` and journals every transition with
the numbers that decided it::

    rollouts = Rollouts(manager)
    rollouts.deploy(env, reason="...", created_by="ana@host")     # returns at once
    rollouts.status(); rollouts.promote("looks good"); rollouts.abort("pager")
    await rollouts.rollback(to=None, reason="r3 is slow")

Canary counts and phase moves are pure (``canary_workers``, ``PHASES``); the judge is
``releases.judge``; the gate ``releases.gate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from falcon_platform.errors import FalconError, InvalidInputError, RuntimeStateError
from falcon_platform.events.journal import EventKind
from falcon_platform.releases.gate import (
    ModelFacts,
    judge_model_gate,
    model_facts,
    run_load_gate,
)
from falcon_platform.releases.judge import Analysis, CanaryLimits, Verdict, judge_canary
from falcon_platform.releases.manager import ReleaseManager
from falcon_platform.releases.record import GOOD_STATES, ReleaseRecord, ReleaseState, with_gate
from falcon_platform.releases.synthetic import SyntheticTraffic, wants_synthetic
from falcon_platform.releases.window import EventList, release_window
from falcon_platform.supervisor.lifecycle import WorkerState

log = logging.getLogger("falcon.releases")
MB = 1_048_576


class Phase(StrEnum):
    GATE = "gate"
    CANARY = "canary"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    ABORTING = "aborting"
    ABORTED = "aborted"
    REFUSED = "refused"


# The rollout's state machine (STYLE.md 7): anything else is a bug.
PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.GATE: frozenset({Phase.CANARY, Phase.REFUSED, Phase.ABORTING}),
    Phase.CANARY: frozenset({Phase.CANARY, Phase.PROMOTING, Phase.ABORTING}),
    Phase.PROMOTING: frozenset({Phase.PROMOTED, Phase.ABORTING}),
    Phase.ABORTING: frozenset({Phase.ABORTED}),
    Phase.PROMOTED: frozenset(),
    Phase.ABORTED: frozenset(),
    Phase.REFUSED: frozenset(),
}
DONE = frozenset({Phase.PROMOTED, Phase.ABORTED, Phase.REFUSED})


class AbortCause(StrEnum):
    """Why a rollout was aborted: the ``reason`` label of ``falcon_rollouts_aborted_total``
    (alert FalconCanaryAborted) and ``cause`` in the ``rollout_aborted`` event."""

    ANALYSIS = "analysis"  # the canary judge failed the canary
    INCONCLUSIVE = "inconclusive"  # no verdict within the step's pause + inconclusive_timeout
    MANUAL = "manual"  # `falcon rollout abort` (or the control API)
    STARTUP = "startup"  # the release's workers could not start or become ready
    ERROR = "error"  # the runner itself failed


def canary_workers(total: int, weight: int) -> int:
    """Workers of the canary for a step of ``weight`` percent of ``total`` (pure): at least one,
    at most all; rounded up so a 10% step on 3 workers still runs one canary worker."""
    if weight <= 0:
        return 0
    return max(1, min(total, math.ceil(total * weight / 100)))


@dataclass
class Rollout:
    release: str
    from_release: str
    total_workers: int
    steps: list[dict[str, Any]]
    started_at: float
    phase: Phase = Phase.GATE
    step: int = 0  # 1-based; 0 = before the first
    weight: int = 0
    canary_workers: int = 0
    first_canary_traffic_at: float | None = None
    step_traffic_at: float | None = None
    finished_at: float | None = None
    reason: str | None = None  # why it ended (refused / aborted) or "promoted"
    waiting: str | None = None  # what it waits for now, for a human
    last_analysis: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    canary_peak_memory_mb: float | None = None
    memory_limit_mb: float | None = None
    skip_gate_reason: str | None = None
    analyses: int = 0
    synthetic: dict[str, Any] | None = None  # the last step's synthetic traffic, if any

    def move(self, phase: Phase) -> None:
        if phase not in PHASES[self.phase]:
            raise RuntimeStateError(f"rollout of {self.release}: {self.phase} -> {phase}")
        self.phase = phase

    @property
    def done(self) -> bool:
        return self.phase in DONE

    def to_dict(self) -> dict[str, Any]:
        to_abort = (
            round(self.finished_at - self.first_canary_traffic_at, 3)
            if self.phase is Phase.ABORTED
            and self.finished_at is not None
            and self.first_canary_traffic_at is not None
            else None
        )
        return {
            "release": self.release,
            "from_release": self.from_release,
            "phase": str(self.phase),
            "done": self.done,
            "step": self.step,
            "steps": self.steps,
            "weight": self.weight,
            "canary_workers": self.canary_workers,
            "total_workers": self.total_workers,
            "canary_share": round(self.canary_workers / self.total_workers, 3)
            if self.total_workers
            else None,
            "started_at": self.started_at,
            "first_canary_traffic_at": self.first_canary_traffic_at,
            "finished_at": self.finished_at,
            "seconds_from_first_canary_traffic_to_abort": to_abort,
            "reason": self.reason,
            "waiting": self.waiting,
            "gate": self.gate,
            "skip_gate_reason": self.skip_gate_reason,
            "last_analysis": self.last_analysis,
            "analyses": self.analyses,
            "canary_peak_memory_mb": self.canary_peak_memory_mb,
            "memory_limit_mb": self.memory_limit_mb,
            "synthetic": self.synthetic,
        }


class _Stop(Exception):
    def __init__(
        self, reason: str, *, promote: bool = False, cause: AbortCause = AbortCause.ANALYSIS
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.promote = promote
        self.cause = cause


@dataclass
class _Requests:
    abort: str | None = None
    promote: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Rollouts:
    """Runs one rollout or rollback at a time in the supervisor's loop."""

    def __init__(self, manager: ReleaseManager, *, engine: Any = None) -> None:
        self.manager = manager
        self.sup = manager.supervisor
        self.journal = manager.journal
        self.engine = engine  # the request log's database (labels, confidence)
        self.current: Rollout | None = None
        self.last_rollback: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._requests = _Requests()
        self._busy = False

    # ----------------------------------------------------------------- API
    def status(self) -> dict[str, Any]:
        return {
            "rollout": self.current.to_dict() if self.current is not None else None,
            "stable": self.manager.stable_id,
            "last_rollback": self.last_rollback,
        }

    def _check_idle(self) -> None:
        if self._busy:
            what = self.current.release if self.current is not None else "a rollback"
            raise RuntimeStateError(
                f"a rollout ({what}) is in progress; follow it with `falcon rollout status`, "
                "or `falcon rollout abort`"
            )
        rolling = self.sup.rolling
        if rolling is not None and rolling.finished_wall is None:
            raise RuntimeStateError("a rolling restart is in progress; wait for it to finish")
        if self.sup.stopping:
            raise RuntimeStateError("the supervisor is stopping")

    def deploy(
        self,
        env: Mapping[str, str],
        *,
        reason: str,
        created_by: str,
        skip_gate_reason: str | None = None,
        allow_faults: bool = False,
    ) -> dict[str, Any]:
        """Create a release and start rolling it out (in the background); the status."""
        self._check_idle()
        record = self.manager.create(
            env,
            reason=reason,
            created_by=created_by,
            skip_gate_reason=skip_gate_reason,
            allow_faults=allow_faults,
        )
        stable = self.manager.stable_id
        total = max(1, sum(self.sup.desired.values()))
        steps = [{"weight": s.weight, "pause": s.pause} for s in self.sup.spec.canary.steps]
        rollout = Rollout(
            record.id, stable, total, steps, self.sup.clock.now(),
            skip_gate_reason=record.skip_gate_reason,
            memory_limit_mb=(self.sup.limits.limit_bytes / MB)
            if self.sup.limits.limit_bytes
            else None,
        )  # fmt: skip
        self.current = rollout
        self._requests = _Requests()
        self._busy = True
        # Every reason exported at 0 from the start: increase() (alert FalconCanaryAborted, in
        # Prometheus and the local evaluator) cannot see a series whose first sample is 1.
        for cause in AbortCause:
            self.sup.metrics.rollouts_aborted.labels(release=record.id, reason=cause)
        self.journal.record(
            EventKind.ROLLOUT_STARTED,
            release=record.id,
            details={
                "from_release": stable,
                "to_release": record.id,
                "reason": record.reason,
                "steps": steps,
                "total_workers": total,
                "skip_gate": record.skip_gate_reason,
            },
        )
        self._task = asyncio.get_running_loop().create_task(self._run(rollout, record))
        return self.status()

    def promote(self, reason: str) -> dict[str, Any]:
        rollout = self._active()
        self._requests.promote = reason or "promoted by hand"
        self._requests.wake.set()
        del rollout
        return self.status()

    def abort(self, reason: str) -> dict[str, Any]:
        rollout = self._active()
        self._requests.abort = reason or "aborted by hand"
        self._requests.wake.set()
        del rollout
        return self.status()

    def _active(self) -> Rollout:
        if self.current is None or self.current.done:
            raise RuntimeStateError("no rollout is in progress; see `falcon rollout status`")
        return self.current

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # ----------------------------------------------------------------- the runner
    async def _run(self, rollout: Rollout, record: ReleaseRecord) -> None:
        try:
            record = await self._gate(rollout, record)
            if rollout.done:
                return
            try:
                record = self.manager.move(record, ReleaseState.CANARY, "gate passed")
                await self._canary(rollout, record)
            except _Stop as stop:
                if stop.promote:
                    await self._promote(rollout, record, stop.reason)
                else:
                    await self._abort(rollout, record, stop.reason, stop.cause)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("rollout of %s failed", rollout.release)
            if not rollout.done:
                with contextlib.suppress(Exception):
                    await self._abort(rollout, record, f"rollout error: {exc}", AbortCause.ERROR)
        finally:
            self._busy = False

    async def _gate(self, rollout: Rollout, record: ReleaseRecord) -> ReleaseRecord:
        gates = self.sup.spec.gates
        now = self.sup.clock.now()
        config_check = {"check": "config", "passed": True, "detail": "the config gate passed"}
        if rollout.skip_gate_reason is not None:
            rollout.gate = {"verdict": "skipped", "reason": rollout.skip_gate_reason}
            record = self.manager.save(with_gate(record, rollout.gate, now=now))
            self.journal.record(
                EventKind.GATE_SKIPPED,
                release=rollout.release,
                details={"reason": rollout.skip_gate_reason, "to_release": rollout.release},
            )
            rollout.move(Phase.CANARY)
            return record
        model_checks = self._model_checks(rollout)
        if not all(c["passed"] for c in model_checks):
            rollout.gate = {"verdict": "refused", "checks": [config_check, *model_checks]}
        elif not gates.load_test:
            rollout.gate = {"verdict": "passed", "checks": [config_check, *model_checks]}
        else:
            rollout.waiting = (
                f"load gate: one {rollout.release} worker on a private port, "
                f"{gates.load_test_rps:g} req/s for {gates.load_test_duration:g} s"
            )
            argv, env = self.sup.worker_invocation(rollout.release)
            result = await run_load_gate(
                argv, env, gate=gates, limit_mb=rollout.memory_limit_mb,
                release=rollout.release, boot_timeout_s=self.sup.spec.probes.startup_timeout,
            )  # fmt: skip
            rollout.gate = {
                "verdict": "passed" if result.passed else "refused",
                "checks": [config_check, *model_checks, *result.checks],
                "numbers": result.numbers,
            }
        rollout.waiting = None
        now = self.sup.clock.now()
        record = self.manager.save(with_gate(record, rollout.gate, now=now))
        if rollout.gate["verdict"] == "refused":
            failing = [c["detail"] for c in rollout.gate["checks"] if not c["passed"]]
            why = "gate refused: " + "; ".join(failing)
            self.journal.record(
                EventKind.GATE_REFUSED,
                release=rollout.release,
                details={"path": "deploy", "refused": why, "to_release": rollout.release,
                         **rollout.gate},
            )  # fmt: skip
            record = self.manager.move(record, ReleaseState.REFUSED, why)
            rollout.reason = why
            rollout.move(Phase.REFUSED)
            rollout.finished_at = now
            return record
        self.journal.record(
            EventKind.GATE_PASSED,
            release=rollout.release,
            details={"to_release": rollout.release, **rollout.gate},
        )
        rollout.move(Phase.CANARY)
        return record

    def _model_checks(self, rollout: Rollout) -> list[dict[str, Any]]:
        """The model gate: the release's model against the stable release's (metadata)."""

        def model_dir(release_id: str) -> Any:
            release = self.sup.releases.get(release_id)
            settings = release.settings if release is not None else None
            return (settings or self.sup.settings).resolved_model_path

        try:
            new = model_facts(model_dir(rollout.release))
        except FalconError as exc:
            return [{"check": "model", "passed": False, "detail": exc.detail}]
        try:
            stable: ModelFacts | None = model_facts(model_dir(rollout.from_release))
        except FalconError:
            stable = None
        return judge_model_gate(stable, new, self.sup.spec.gates)

    async def _canary(self, rollout: Rollout, record: ReleaseRecord) -> None:
        spec = self.sup.spec.canary
        limits = CanaryLimits.from_spec(spec, memory_limit_mb=rollout.memory_limit_mb)
        n, stable, canary = rollout.total_workers, rollout.from_release, rollout.release
        for index, step in enumerate(spec.steps, start=1):
            if step.weight >= 100:
                break
            c = canary_workers(n, step.weight)
            rollout.step, rollout.weight = index, step.weight
            # surge: the canary workers start beside the full stable pool, then stable shrinks
            self.sup.set_desired({stable: n, canary: c})
            rollout.waiting = f"step {index}: {c} {canary} worker(s) starting"
            await self._wait_ready(canary, c, rollout)
            self.sup.set_desired({stable: max(0, n - c), canary: c})
            rollout.canary_workers = c
            traffic_at = self._ready_since(canary) or self.sup.clock.now()
            if rollout.first_canary_traffic_at is None:
                rollout.first_canary_traffic_at = traffic_at
            rollout.step_traffic_at = traffic_at
            self.journal.record(
                EventKind.ROLLOUT_STEP,
                release=canary,
                details={"step": index, "weight": step.weight, "canary_workers": c,
                         "stable_workers": n - c, "from_release": stable, "to_release": canary,
                         "pause_s": step.pause},
            )  # fmt: skip
            record = await self._analyse_step(rollout, record, limits, step.pause)
        raise _Stop("every step passed", promote=True)

    async def _analyse_step(
        self, rollout: Rollout, record: ReleaseRecord, limits: CanaryLimits, pause: float
    ) -> ReleaseRecord:
        """The step's analyses until a verdict; synthetic traffic (``releases.synthetic``)
        while it waits for canary requests, when the spec turns it on, stopped at the end."""
        spec = self.sup.spec.canary
        traffic = SyntheticTraffic(rps=spec.synthetic_rps, max_s=spec.synthetic_max_duration)
        try:
            return await self._judge_step(rollout, record, limits, pause, traffic)
        finally:
            if traffic.started:
                summary = await traffic.stop()
                rollout.synthetic = summary
                self.journal.record(
                    EventKind.CANARY_SYNTHETIC_TRAFFIC,
                    release=rollout.release,
                    details={"phase": "stopped", "step": rollout.step, **summary},
                )

    def _start_synthetic(self, rollout: Rollout, traffic: SyntheticTraffic, seen: int) -> None:
        sockets = [
            s.admin_socket for s in self.sup.slots.values()
            if s.release == rollout.release and s.state is WorkerState.READY
        ]  # fmt: skip
        traffic.start(sockets)
        if not traffic.started:
            return
        rollout.synthetic = {"rps": traffic.rps, "workers": len(sockets), "running": True}
        self.journal.record(
            EventKind.CANARY_SYNTHETIC_TRAFFIC,
            release=rollout.release,
            details={"phase": "started", "step": rollout.step, "rps": traffic.rps,
                     "workers": len(sockets), "max_s": traffic.max_s,
                     "canary_requests_before": seen},
        )  # fmt: skip

    async def _judge_step(
        self,
        rollout: Rollout,
        record: ReleaseRecord,
        limits: CanaryLimits,
        pause: float,
        traffic: SyntheticTraffic,
    ) -> ReleaseRecord:
        spec = self.sup.spec.canary
        started = rollout.step_traffic_at or self.sup.clock.now()
        while True:
            self._requests.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requests.wake.wait(), timeout=spec.interval)
            if self._requests.abort is not None:
                raise _Stop(f"aborted by hand: {self._requests.abort}", cause=AbortCause.MANUAL)
            if self._requests.promote is not None:
                raise _Stop(f"promoted by hand: {self._requests.promote}", promote=True)
            now = self.sup.clock.now()
            elapsed = now - started
            analysis = await self._analyse(rollout, limits, start=started, end=now,
                                           step_left_s=max(pause - elapsed, spec.interval))  # fmt: skip
            if analysis.failed:
                record = self._keep_step(record, rollout, analysis)
                raise _Stop("canary analysis failed: " + "; ".join(analysis.reasons))
            if analysis.verdict is Verdict.PASS and elapsed >= pause:
                return self._keep_step(record, rollout, analysis)
            if analysis.verdict is Verdict.INCONCLUSIVE:
                rollout.waiting = "; ".join(analysis.reasons)
                if wants_synthetic(analysis, spec, running=traffic.running,
                                   used_s=traffic.seconds):  # fmt: skip
                    self._start_synthetic(rollout, traffic, analysis.canary.requests)
                if traffic.running:
                    rollout.waiting += (f" (sending {traffic.rps:g} synthetic req/s to the "
                                        "canary, not counted as user traffic)")  # fmt: skip
                elif spec.synthetic_rps <= 0:
                    rollout.waiting += " (canary.synthetic_rps is 0: no synthetic traffic)"
                if elapsed >= pause + spec.inconclusive_timeout:
                    record = self._keep_step(record, rollout, analysis)
                    raise _Stop(
                        f"no verdict after {elapsed:.0f} s: " + "; ".join(analysis.reasons),
                        cause=AbortCause.INCONCLUSIVE,
                    )
            else:
                rollout.waiting = f"step {rollout.step}: {pause - elapsed:.0f} s of the pause left"

    async def _analyse(
        self, rollout: Rollout, limits: CanaryLimits, *, start: float, end: float,
        step_left_s: float,
    ) -> Analysis:  # fmt: skip
        """Read both windows and judge them off the supervisor's loop (its own SLI reader):
        the watchdog and the probes must not wait for the analysis."""

        exits = EventList(self.journal.query(
            since=start, until=end, kinds=[EventKind.WORKER_EXITED, EventKind.LIMIT_RECYCLE]
        ))  # fmt: skip

        def measure() -> Analysis:
            sli = self.sup.sli.open_reader() if self.sup.sli is not None else None
            try:
                canary = release_window(sli, exits, self.engine, rollout.release,
                                        start=start, end=end)  # fmt: skip
                stable = release_window(sli, exits, self.engine, rollout.from_release,
                                        start=start, end=end)  # fmt: skip
            finally:
                if sli is not None:
                    sli.close()
            return judge_canary(canary, stable, limits, step_left_s=step_left_s)

        analysis = await asyncio.to_thread(measure)
        peak = self._canary_peak_mb(rollout.release)
        seen = [x for x in (peak, analysis.canary.memory_mb, rollout.canary_peak_memory_mb) if x]
        rollout.canary_peak_memory_mb = round(max(seen), 1) if seen else None
        rollout.analyses += 1
        rollout.last_analysis = {"step": rollout.step, "weight": rollout.weight,
                                 "at": end, **analysis.to_dict()}  # fmt: skip
        self.journal.record(
            EventKind.CANARY_ANALYSIS,
            release=rollout.release,
            details={"step": rollout.step, "weight": rollout.weight,
                     "from_release": rollout.from_release, "to_release": rollout.release,
                     "window_s": round(end - start, 3), **analysis.to_dict()},
        )  # fmt: skip
        return analysis

    def _keep_step(
        self, record: ReleaseRecord, rollout: Rollout, analysis: Analysis
    ) -> ReleaseRecord:
        from falcon_platform.releases.record import with_step

        step = {"step": rollout.step, "weight": rollout.weight, **analysis.to_dict()}
        return self.manager.save(with_step(record, step, now=self.sup.clock.now()))

    def _canary_peak_mb(self, release: str) -> float | None:
        peaks = [s.peak_rss_bytes for s in self.sup.slots.values() if s.release == release]
        peaks = [p for p in peaks if p]
        return max(peaks) / MB if peaks else None

    def _ready_since(self, release: str) -> float | None:
        times = [
            s.ready_wall
            for s in self.sup.slots.values()
            if s.release == release and s.state is WorkerState.READY and s.ready_wall
        ]
        return min(times) if times else None

    async def _wait_ready(self, release: str, n: int, rollout: Rollout | None) -> None:
        """Until ``n`` workers of ``release`` are ready; _Stop when they cannot be (boot
        failure, crash loop, an operator's abort, the startup timeout)."""
        deadline = self.sup.clock.monotonic() + self.sup.spec.probes.startup_timeout
        while self.sup.ready_count(release) < n:
            if rollout is not None and self._requests.abort is not None:
                raise _Stop(f"aborted by hand: {self._requests.abort}", cause=AbortCause.MANUAL)
            failed = [
                s for s in self.sup.slots.values()
                if s.release == release and s.state in (WorkerState.FAILED, WorkerState.BACKOFF)
            ]  # fmt: skip
            if failed or self.sup.crash_looping.get(release):
                why = failed[0].boot_message if failed and failed[0].boot_message else None
                raise _Stop(
                    f"{release} workers cannot start ({why or 'exited while starting'})",
                    cause=AbortCause.STARTUP,
                )
            if self.sup.clock.monotonic() > deadline:
                raise _Stop(
                    f"{release}: {n} worker(s) not ready within the startup timeout",
                    cause=AbortCause.STARTUP,
                )
            await asyncio.sleep(0.1)

    async def _restore(self, keep: str, drop: str, n: int) -> None:
        """Full ``keep`` pool first (surge), then ``drop`` drained (requests in flight finish)."""
        current = dict(self.sup.desired)
        self.sup.set_desired({**current, keep: n, drop: current.get(drop, 0)})
        with contextlib.suppress(_Stop):
            await self._wait_ready(keep, n, None)
        self.sup.set_desired({keep: n, drop: 0})

    async def _abort(
        self, rollout: Rollout, record: ReleaseRecord, reason: str, cause: AbortCause
    ) -> None:
        del record  # the stored one has every step kept so far
        rollout.move(Phase.ABORTING)
        rollout.waiting = f"restoring {rollout.from_release} to {rollout.total_workers} worker(s)"
        now = self.sup.clock.now()
        self.journal.record(
            EventKind.ROLLBACK_STARTED,
            release=rollout.release,
            details={"from_release": rollout.release, "to_release": rollout.from_release,
                     "reason": reason, "automatic": True, "step": rollout.step},
        )  # fmt: skip
        peak = self._canary_peak_mb(rollout.release)
        if peak is not None:
            rollout.canary_peak_memory_mb = round(max(peak, rollout.canary_peak_memory_mb or 0), 1)
        share = rollout.canary_workers / rollout.total_workers if rollout.total_workers else 0
        finished_at = now
        rollout.finished_at = finished_at  # traffic decided: stable restoring from here
        await self._restore(rollout.from_release, rollout.release, rollout.total_workers)
        self.manager.move(self.manager.get(rollout.release), ReleaseState.ABORTED, reason)
        rollout.reason = reason
        rollout.waiting = None
        rollout.move(Phase.ABORTED)
        details = {
            "reason": reason,
            "cause": str(cause),
            "from_release": rollout.from_release,
            "to_release": rollout.release,
            "step": rollout.step,
            "weight": rollout.weight,
            "verdict": (rollout.last_analysis or {}).get("verdict"),
            "analysis": rollout.last_analysis,
            "canary_share": round(share, 3),
            "first_canary_traffic_at": rollout.first_canary_traffic_at,
            "aborted_at": finished_at,
            "seconds_from_first_canary_traffic_to_abort": rollout.to_dict()[
                "seconds_from_first_canary_traffic_to_abort"
            ],
            "canary_peak_memory_mb": rollout.canary_peak_memory_mb,
            "memory_limit_mb": rollout.memory_limit_mb,
        }
        # The event in the same step as the phase (no await between them): whoever sees the
        # rollout aborted finds its event. The incident opens from the event; the alert
        # FalconCanaryAborted fires from the counter below and attaches to that incident.
        self.journal.record(EventKind.ROLLOUT_ABORTED, release=rollout.release, details=details)
        self.journal.record(
            EventKind.ROLLBACK_FINISHED,
            release=rollout.from_release,
            details={"from_release": rollout.release, "to_release": rollout.from_release,
                     "reason": reason, "automatic": True,
                     "ready_workers": self.sup.ready_count(rollout.from_release)},
        )  # fmt: skip
        log.error("rollout of %s aborted: %s", rollout.release, reason)
        # The 0s exported when the rollout started must reach the SLI store before the 1, or
        # increase() sees nothing (an abort by hand a second after the deploy). Prometheus,
        # scraping less often, can still miss an abort that quick: docs/RUNBOOK.md says so.
        exported_at = rollout.started_at + 2 * self.sup.settings.sli_scrape_interval_s
        if (wait := exported_at - self.sup.clock.now()) > 0:
            await asyncio.sleep(wait)
        self.sup.metrics.rollouts_aborted.labels(release=rollout.release, reason=cause).inc()

    async def _promote(self, rollout: Rollout, record: ReleaseRecord, reason: str) -> None:
        rollout.move(Phase.PROMOTING)
        n = rollout.total_workers
        rollout.waiting = f"starting {n} {rollout.release} worker(s)"
        try:
            self.sup.set_desired({rollout.from_release: n - rollout.canary_workers,
                                  rollout.release: n})  # fmt: skip
            await self._wait_ready(rollout.release, n, rollout)
        except _Stop as stop:
            await self._abort(rollout, record, stop.reason, stop.cause)
            return
        self.sup.set_desired({rollout.release: n, rollout.from_release: 0})
        rollout.canary_workers = n
        old = self.manager.get(rollout.from_release)
        self.manager.move(old, ReleaseState.SUPERSEDED, f"{rollout.release} promoted")
        self.manager.move(self.manager.get(rollout.release), ReleaseState.STABLE, reason)
        self.manager.stable_id = rollout.release
        rollout.finished_at = self.sup.clock.now()
        rollout.reason = reason
        rollout.waiting = None
        rollout.move(Phase.PROMOTED)
        self.journal.record(
            EventKind.ROLLOUT_PROMOTED,
            release=rollout.release,
            details={"from_release": rollout.from_release, "to_release": rollout.release,
                     "reason": reason, "steps": rollout.step, "analyses": rollout.analyses},
        )  # fmt: skip

    # ----------------------------------------------------------------- rollback
    def rollback_target(self, to: str | None) -> ReleaseRecord:
        stable = self.manager.stable_id
        if to is not None:
            target = self.manager.get(to)
            if target.id == stable:
                raise InvalidInputError(f"{to} is the stable release already")
        else:
            current = self.manager.get(stable)
            candidates = [
                r for r in reversed(self.manager.list())
                if r.id != stable and r.state in GOOD_STATES
            ]  # fmt: skip
            preferred = [r for r in candidates if r.id == current.from_release]
            if not preferred and not candidates:
                raise RuntimeStateError(
                    f"no earlier good release to roll back to from {stable}; see `falcon releases list`"
                )
            target = (preferred or candidates)[0]
        if target.state not in (*GOOD_STATES, ReleaseState.ROLLED_BACK):
            raise InvalidInputError(
                f"{target.id} is {target.state}: only a release that ran as stable can be "
                "rolled back to (see `falcon releases list`)"
            )
        self.manager.restore(target)  # created before this supervisor started: rebuilt
        return target

    async def rollback(self, to: str | None, reason: str) -> dict[str, Any]:
        """Back to the previous (or the named) good release under load: its workers start
        beside the current ones, then the current ones drain. Returns when done."""
        self._check_idle()
        self.manager.adopt_running()
        target = self.rollback_target(to)
        current_id = self.manager.stable_id
        n = max(1, sum(self.sup.desired.values()))
        started = self.sup.clock.now()
        self._busy = True
        try:
            self.journal.record(
                EventKind.ROLLBACK_STARTED,
                release=current_id,
                details={"from_release": current_id, "to_release": target.id,
                         "reason": reason, "automatic": False},
            )  # fmt: skip
            self.sup.set_desired({**self.sup.desired, target.id: n, current_id: n})
            try:
                await self._wait_ready(target.id, n, None)
            except _Stop as stop:
                self.sup.set_desired({current_id: n, target.id: 0})
                raise RuntimeStateError(f"rollback to {target.id} failed: {stop.reason}") from None
            self.sup.set_desired({target.id: n, current_id: 0})
            self.manager.move(self.manager.get(current_id), ReleaseState.ROLLED_BACK, reason)
            self.manager.move(target, ReleaseState.STABLE, f"rolled back from {current_id}")
            self.manager.stable_id = target.id
            finished = self.sup.clock.now()
            self.last_rollback = {
                "from_release": current_id,
                "to_release": target.id,
                "reason": reason,
                "started_at": started,
                "finished_at": finished,
                "seconds": round(finished - started, 3),
            }
            self.journal.record(
                EventKind.ROLLBACK_FINISHED,
                release=target.id,
                details={**self.last_rollback, "automatic": False},
            )
            return self.last_rollback
        finally:
            self._busy = False
