"""The supervisor: one process that owns the public socket and keeps N workers alive.

Learned from gunicorn's arbiter, with the state on the instance and the decisions in pure
functions (``supervisor.plan``, ``supervisor.restarts``, ``supervisor.lifecycle``). Signal handlers only
queue; one loop does: wait for a signal or the tick -> handle signals -> reap exited workers
-> kill the unhealthy -> reconcile desired vs observed -> advance a rolling restart. Probes,
the memory watchdog and the SLI scrape run as periodic tasks that only *observe* (except the
watchdog's SIGKILL at the hard limit, where reaction time is the point)::

    supervisor = Supervisor(settings, spec, journal, sli=SLIStore(...))
    exit_code = asyncio.run(supervisor.run())

This module is the loop and the control API; each step lives in its own module and gets the
state it needs passed in: ``launch`` (start a worker, hear it boot), ``exits`` (after an exit:
restart, back-off, give up; CrashLoopBackOff), ``termination`` (drain, liveness kills),
``watchdog`` (memory), ``rolling`` (rolling restarts), ``periodic`` and ``sockets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from falcon_platform.clock import Clock, SystemClock
from falcon_platform.config import memory
from falcon_platform.config.gate import ReleasePath, ReleaseVerdict
from falcon_platform.config.private_dir import ensure_private_dir
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import RuntimeStateError
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.supervisor import status as status_view
from falcon_platform.supervisor.enforcers import MemoryEnforcer, WatchdogEnforcer, rss_bytes
from falcon_platform.supervisor.exits import CrashLoopTracker, ExitHandler
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.launch import WorkerLauncher
from falcon_platform.supervisor.lifecycle import WorkerEvent, WorkerState
from falcon_platform.supervisor.observers import WorkerObservers
from falcon_platform.supervisor.plan import NewSlot, Retire, Spawn, counts, plan
from falcon_platform.supervisor.release_gate import ReleaseGate, gate_args, record_verdict
from falcon_platform.supervisor.responder import UnavailableResponder
from falcon_platform.supervisor.restarts import ExitReason
from falcon_platform.supervisor.rolling import (
    RollingRestart,
    advance_rolling,
    note_dropped_slot,
    plan_rolling_restart,
    rolling_to,
)
from falcon_platform.supervisor.sd_notify import SystemdNotifier
from falcon_platform.supervisor.slots import Release, Slot, next_release_id
from falcon_platform.supervisor.sockets import admin_socket_dir, open_public_socket
from falcon_platform.supervisor.spawner import Spawner
from falcon_platform.supervisor.termination import drain, kill_unhealthy, signal_worker
from falcon_platform.supervisor.timers import PeriodicTask, run_every
from falcon_platform.supervisor.unready import SlotOutlook, cannot_boot, decide_unready
from falcon_platform.supervisor.watchdog import MemoryWatchdog
from falcon_platform.worker.zygote import become_subreaper

log = logging.getLogger("falcon.supervisor")

_TICK_S = 0.25


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        spec: Spec,
        journal: EventJournal,
        *,
        sli: SLIStore | None = None,
        enforcer: MemoryEnforcer | None = None,
        clock: Clock | None = None,
        workers: int | None = None,
        periodic: Sequence[PeriodicTask] = (),
        worker_args: Sequence[str] = (),
        rng: Callable[[], float] = random.random,
        sock: socket.socket | None = None,
        standby: bool = True,
        answer_when_unready: bool = True,
        release_gate: ReleaseGate | None = None,
        base_gate_args: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.journal = journal
        self.sli = sli
        self.enforcer: MemoryEnforcer = enforcer if enforcer is not None else WatchdogEnforcer()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.metrics = SupervisorMetrics()
        self.limits = memory.memory_limits(
            spec.workers.memory_limit_mb,
            spec.workers.memory_soft_limit_percent,
            settings.memory_limit_mb,
            settings.memory_soft_limit_percent,
        )
        base = Release(settings.release, {}, self.clock.now(), tuple(base_gate_args))
        self.release_gate = release_gate
        self.releases: dict[str, Release] = {base.id: base}
        # Release ids taken outside this supervisor's memory (the release store's, kept here by
        # the release manager): a new release never reuses one after a restart.
        self.taken_release_ids: set[str] = set()
        self.desired: dict[str, int] = {base.id: workers or settings.worker_count}
        self.slots: dict[str, Slot] = {}
        self.rolling: RollingRestart | None = None
        self._next_index = 0
        # recycles of drained workers, handed to the release's next replacement slot
        self._recycles_carried: dict[str, int] = {}
        self._periodic = list(periodic)
        self._worker_args = list(worker_args)
        self._sock = sock
        self._port: int | None = None
        self._spawn_paused_until = 0.0
        self._signals: deque[int] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_reason = ""
        self.observers = WorkerObservers(self.metrics, sli)
        self._crash_loops = CrashLoopTracker(spec.restart, journal, self.metrics, self.clock)
        self.crash_looping: dict[str, bool] = self._crash_loops.looping
        self._exits = ExitHandler(
            settings,
            spec.restart,
            journal,
            self.metrics,
            self.enforcer,
            self.limits,
            self.observers,
            self._crash_loops,
            self.clock,
            rng,
        )
        self._launcher = WorkerLauncher(
            journal=journal,
            metrics=self.metrics,
            enforcer=self.enforcer,
            limits=self.limits,
            clock=self.clock,
            on_ready=self._wake.set,
        )
        self._watchdog = MemoryWatchdog(
            self.limits, self.enforcer, clock=self.clock, metrics=self.metrics, journal=journal
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._socket_dir = admin_socket_dir(settings.run_dir)
        self.use_standby = standby
        self._spawner: Spawner | None = None
        self.started_wall = self.clock.now()
        self.started_mono = self.clock.monotonic()
        self.answer_when_unready = answer_when_unready
        self.responder: UnavailableResponder | None = None
        self._no_ready_since: float | None = self.started_mono
        self._unavailable_since: float | None = None
        self.ever_ready = False
        self.unbootable: str | None = None
        self._unbootable_reported = False
        self.on_unbootable: Callable[[str], None] | None = None
        self.systemd = SystemdNotifier.from_environ(os.environ, os.getpid())

    # ----------------------------------------------------------------- public (control API)
    @property
    def url(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if self.settings.tls_certfile else "http"
        return f"{scheme}://{shown}:{self.port}"

    @property
    def port(self) -> int:
        if self._port is None and self._sock is not None:
            self._port = int(self._sock.getsockname()[1])  # cached: the socket closes at shutdown
        return self._port if self._port is not None else self.settings.port

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    def request_stop(self, reason: str = "requested") -> None:
        """Drain every worker and exit the loop (Ctrl-C, SIGTERM, `falcon down`)."""
        if not self._stopping:
            self._stopping = True
            self._stop_reason = reason
            self.systemd.send("STOPPING=1", f"STATUS=stopping: {reason}")
        self._wake.set()

    def start_rolling_restart(
        self,
        env: Mapping[str, str] | None = None,
        *,
        override_reason: str | None = None,
        allow_faults: bool = False,
    ) -> dict[str, Any]:
        """Replace every worker one by one (start new, wait ready, drain old).

        With ``env`` (``FALCON_*`` overrides) the new workers form a new release. Either way
        the gate judges the settings the new workers will run with first (the env file is read
        again): refused -> ``ReleaseRefusedError`` (journaled ``gate_refused``), nothing
        changes; overridden -> journaled ``gate_override``.
        """
        rolling, release, current = plan_rolling_restart(
            self.rolling,
            stopping=self._stopping,
            desired=self.desired,
            releases=self.releases,
            default_release=self.settings.release,
            env=env,
            slots=self.slots.values(),
            now=self.clock.now(),
            taken=self.taken_release_ids,
        )
        target = release if release is not None else self.releases[rolling.to_release]
        args, _ = self._judge(
            target.env,
            release=target.id,
            path="restart",
            override_reason=override_reason,
            allow_faults=allow_faults,
        )
        if release is not None:
            release.gate_args = args
            self.releases[release.id] = release
        else:
            target.gate_args = args
        # Zygotes hold the model as it was when they started: new workers must read it afresh,
        # so a new zygote preloads for the target release and the surge workers wait for it.
        if self._spawner is not None:
            self._spawner.stand_down()
        self.rolling = rolling
        self.journal.record(
            EventKind.ROLLING_RESTART_STARTED,
            release=rolling.to_release,
            details={
                "workers": list(rolling.pending),
                "from_release": current,
                "env_keys": sorted(env or {}),
            },
        )
        self._wake.set()
        return rolling.to_dict()

    def _judge(
        self,
        env: Mapping[str, str],
        *,
        release: str,
        path: ReleasePath,
        override_reason: str | None,
        allow_faults: bool,
    ) -> tuple[tuple[str, ...], ReleaseVerdict | None]:
        """Run the gate on what the new workers of ``release`` will run with; journal it;
        raise when refused; return the release's worker gate arguments and the verdict."""
        if self.release_gate is None:  # tests that build a bare supervisor
            return (("--allow-faults",) if allow_faults else ()), None
        verdict = self.release_gate.judge(
            env,
            path=path,
            override_reason=override_reason,
            allow_faults=allow_faults,
            workers=max(1, sum(self.desired.values())),
        )
        record_verdict(self.journal, verdict, release=release)
        verdict.raise_if_refused()
        args = gate_args(verdict, override_reason=override_reason, allow_faults=allow_faults)
        return args, verdict

    def set_desired(self, desired: Mapping[str, int]) -> None:
        """Desired workers per release (the canary moves counts between releases)."""
        unknown = [r for r in desired if r not in self.releases]
        if unknown:
            raise RuntimeStateError(f"unknown release(s) {unknown}; known: {sorted(self.releases)}")
        self.desired = {r: max(0, int(n)) for r, n in desired.items()}
        self._wake.set()

    def add_release(
        self,
        env: Mapping[str, str],
        *,
        override_reason: str | None = None,
        allow_faults: bool = False,
        release_id: str | None = None,
    ) -> Release:
        """A new release with ``env`` (what a deploy starts workers of), judged by the gate
        like every other path (``ReleaseRefusedError`` when refused). ``release_id`` names it
        (the release manager numbers releases across supervisor restarts); else the next
        ``r<n>`` after those this supervisor knows."""
        release_id = release_id or next_release_id([*self.releases, *self.taken_release_ids])
        if release_id in self.releases:
            raise RuntimeStateError(f"release {release_id} exists already")
        args, verdict = self._judge(
            env,
            release=release_id,
            path="deploy",
            override_reason=override_reason,
            allow_faults=allow_faults,
        )
        release = Release(release_id, dict(env), self.clock.now(), args)
        release.settings = verdict.settings if verdict is not None else None
        self.releases[release.id] = release
        return release

    def worker_invocation(self, release_id: str) -> tuple[list[str], dict[str, str]]:
        """(``falcon worker`` arguments, environment) exactly as this release's workers get
        them, for a worker started outside the pool (the deploy gate's private worker)."""
        release = self.releases[release_id]
        env = {**os.environ, **release.env}
        return [*self._worker_args, *release.gate_args], env

    def ready_count(self, release_id: str) -> int:
        """Workers of the release that are ready and count toward its desired number."""
        return sum(
            1
            for s in self.slots.values()
            if s.release == release_id
            and s.state is WorkerState.READY
            and not s.retiring
            and not s.surge
        )

    def health(self) -> tuple[bool, str]:
        """(enough workers ready?, one line why) for `falcon check-health`."""
        return status_view.health(
            self.desired, self.slots.values(), self.crash_looping, stopping=self._stopping
        )

    def status(self) -> dict[str, Any]:
        now_wall, now_mono = self.clock.now(), self.clock.monotonic()
        ok, why = self.health()
        workers = [
            status_view.worker_status(s, self.limits, self.crash_looping, now_wall, now_mono)
            for s in self._ordered_slots()
        ]
        return {
            "supervisor": {
                "pid": os.getpid(),
                "state": "stopping" if self._stopping else "running",
                "started_at": self.started_wall,
                "uptime_s": round(now_mono - self.started_mono, 3),
                "url": self.url,
                "host": self.settings.host,
                "port": self.port,
                "profile": self.settings.profile,
                "memory_enforcement": self.enforcer.kind,
                "memory_limit_bytes": self.limits.limit_bytes,
                "memory_soft_limit_bytes": self.limits.soft_bytes,
                "desired": dict(self.desired),
                "releases": {r.id: r.to_dict() for r in self.releases.values()},
                "crash_loop": dict(self.crash_looping),
                "rolling_restart": self.rolling.to_dict() if self.rolling else None,
                "healthy": ok,
                "health": why,
                "unbootable": self.unbootable,
                "rss_bytes": rss_bytes(os.getpid()),
                "zygote": self._spawner.status() if self._spawner is not None else {},
                "answering_503": self.responder is not None and self.responder.engaged,
                "answered_503_total": self.responder.answered_total if self.responder else 0,
            },
            "workers": workers,
        }

    def metrics_text(self) -> str:
        self._update_gauges()
        extra = [self.responder.metrics.registry] if self.responder is not None else []
        return self.observers.merged_metrics(extra)

    async def ready_worker_readyz(self) -> dict[str, Any] | None:
        """The /readyz body of one ready worker (store backends for `falcon status`)."""
        for slot in self._ordered_slots():
            if slot.state is WorkerState.READY:
                return await self.observers.readyz(slot)
        return None

    # ----------------------------------------------------------------- the loop
    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            loop.add_signal_handler(sig, self._queue_signal, sig)
        if self._sock is None:
            self._sock = open_public_socket(self.settings.host, self.settings.port)
        become_subreaper()  # zygote-forked workers become our children
        self._spawner = Spawner(
            self._sock.fileno(),
            self.releases,
            worker_args=self._worker_args,
            clock=self.clock,
            use_standby=self.use_standby,
            on_warm=self._wake.set,
        )
        _ = self.port
        ensure_private_dir(self._socket_dir)  # 0700, ours, no symlink: or refuse
        if self.answer_when_unready:
            from falcon_platform.stores.request_log import SpoolingRequestLog

            own = self.settings.model_copy(update={"worker_id": "supervisor"})
            self.responder = UnavailableResponder(
                self._sock, self.settings, clock=self.clock, request_log=SpoolingRequestLog(own)
            )
            await self.responder.start()
            self.responder.prepare(self._current_release())
        self.journal.record(
            EventKind.SUPERVISOR_STARTED,
            release=self._current_release(),  # the base, or the last stable release resumed
            details={
                "pid": os.getpid(),
                "url": self.url,
                "workers": dict(self.desired),
                "memory_enforcement": self.enforcer.kind,
                "memory_limit_bytes": self.limits.limit_bytes,
                "memory_soft_limit_bytes": self.limits.soft_bytes,
                "restart": self.spec.restart.model_dump(),
                "probes": self.spec.probes.model_dump(),
            },
        )
        self._tasks = [
            asyncio.create_task(run_every(self.spec.probes.period, self._probe_all)),
            asyncio.create_task(run_every(self.spec.workers.watchdog_interval, self._watch_memory)),
            asyncio.create_task(run_every(self.settings.sli_scrape_interval_s, self._scrape_all)),
            asyncio.create_task(run_every(60.0, self._compact)),
        ]
        self._tasks += [asyncio.create_task(run_every(t.interval_s, t.run)) for t in self._periodic]
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._next_wait())
                self._wake.clear()
                self.systemd.watchdog(self.clock.monotonic())  # the loop is alive
                self._handle_signals()
                self._reap()
                now = self.clock.monotonic()
                kill_unhealthy(
                    self.slots.values(),
                    self.spec.probes,
                    now,
                    clock=self.clock,
                    metrics=self.metrics,
                    journal=self.journal,
                )
                if self._stopping:
                    await self._update_availability(now)
                    if self._stop_all(now):
                        break
                    continue
                self._maintain_standbys()
                self._reconcile(now)
                advance_rolling(
                    self.rolling,
                    self.slots,
                    self.desired,
                    retire=self._retire,
                    start_replacement=self._start_replacement,
                    journal=self.journal,
                    clock=self.clock,
                )
                self._crash_loops.update(self.desired)
                await self._update_availability(now)
                self._report_if_nothing_can_boot()
        finally:
            await self._shutdown()
        return 0

    # ----------------------------------------------------------------- no worker ready
    def _current_release(self) -> str:
        """The release most workers should run (the one 503s and their rows are booked to)."""
        if not self.desired:
            return self.settings.release
        return max(sorted(self.desired), key=lambda r: self.desired[r])

    def _outlooks(self) -> list[SlotOutlook]:
        return [
            SlotOutlook(
                s.state,
                restart_at=s.restart_at,
                boot_failures=s.boot_failures,
                crash_looping=self.crash_looping.get(s.release, False),
                recycling=s.recycling
                or (s.last_exit is not None and s.last_exit.reason is ExitReason.RECYCLED),
                retiring=s.retiring or s.surge,
                boot_message=s.boot_message,
            )
            for s in self.slots.values()
        ]

    async def _update_availability(self, now: float) -> None:
        """Answer 503 ourselves while no worker is ready (``unready.decide_unready``)."""
        ready = any(s.state is WorkerState.READY for s in self.slots.values())
        if ready:
            self.ever_ready = True
            self._no_ready_since = None
        elif self._no_ready_since is None:
            self._no_ready_since = now
        responder = self.responder
        if responder is None:
            return
        release = self._current_release()
        responder.prepare(release)
        if ready:
            if responder.engaged:
                answered = responder.disengage()
                down_s = now - (self._unavailable_since or now)
                self._unavailable_since = None
                self.journal.record(
                    EventKind.SERVICE_AVAILABLE,
                    release=release,
                    details={"answered_503": answered, "unavailable_s": round(down_s, 3)},
                )
                log.warning(
                    "a worker is ready again; the supervisor answered %d with 503", answered
                )
            return
        decision = decide_unready(
            self._outlooks(),
            no_ready_since=self._no_ready_since if self._no_ready_since is not None else now,
            now=now,
            grace=self.spec.workers.no_ready_grace,
            stopping=self._stopping,
        )
        if not decision.answer:
            return
        switched_on = await responder.engage(
            release=release, retry_after_s=decision.retry_after_s, why=decision.why
        )
        if switched_on:
            self._unavailable_since = now
            self.journal.record(
                EventKind.SERVICE_UNAVAILABLE,
                release=release,
                details={
                    "why": decision.why,
                    "retry_after_s": decision.retry_after_s,
                    "no_ready_for_s": round(now - (self._no_ready_since or now), 3),
                },
            )
            log.error("no worker is ready (%s): answering requests with 503", decision.why)

    def _report_if_nothing_can_boot(self) -> None:
        """Every worker gave up booting and none was ever ready: say so once, loudly (log,
        journal, ``on_unbootable`` for the command line). The supervisor keeps answering 503
        and keeps the failed slots for the operator (`falcon status`, then `falcon restart`)."""
        why = cannot_boot(self._outlooks(), ever_ready=self.ever_ready)
        if why is None:
            self._unbootable_reported = False
            return
        if self._unbootable_reported:
            return
        self._unbootable_reported = True
        self.unbootable = why
        log.error("%s; answering 503 until fixed (`falcon restart`)", why)
        self.journal.record(
            EventKind.DEPLOYMENT_UNBOOTABLE,
            release=self._current_release(),
            details={"why": why, "hint": "fix the cause, then `falcon restart`"},
        )
        if self.on_unbootable is not None:
            self.on_unbootable(why)

    def _next_wait(self) -> float:
        """Sleep until the next tick, or sooner when a back-off ends (restart on time)."""
        now = self.clock.monotonic()
        due = [
            s.restart_at - now
            for s in self.slots.values()
            if s.state is WorkerState.BACKOFF and s.restart_at
        ]
        return max(0.005, min([_TICK_S, *due]))

    def _queue_signal(self, sig: int) -> None:
        # Signal handlers only queue (the arbiter's rule); the loop acts.
        self._signals.append(sig)
        self._wake.set()

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.popleft()
            if sig in (signal.SIGINT, signal.SIGTERM):
                self.request_stop(signal.Signals(sig).name)
            elif sig == signal.SIGHUP:
                with contextlib.suppress(RuntimeStateError):
                    self.start_rolling_restart()
            # SIGCHLD only wakes the loop; _reap does the work.

    def _reap(self) -> None:
        if self._spawner is not None:
            self._spawner.reap()
        for slot in list(self.slots.values()):
            if slot.proc is None or not slot.live:
                continue
            code = slot.proc.poll()
            if code is not None:
                self._launcher.finish(slot)
                self._exits.handle(slot, code, stopping=self._stopping, desired=self.desired)

    # ----------------------------------------------------------------- slots and processes
    def _new_slot(self, release: str, *, surge: bool = False) -> Slot:
        self._next_index += 1
        slot_id = f"w{self._next_index}"
        slot = Slot(
            slot_id, release, self._next_index, self._socket_dir / f"{slot_id}.sock", surge=surge
        )
        if not surge:
            slot.recycles = self._recycles_carried.pop(release, 0)
        self.slots[slot_id] = slot
        return slot

    def _spawn(self, slot: Slot) -> None:
        assert self._spawner is not None
        self._launcher.launch(slot, self._spawner)

    def _start_replacement(self, release: str) -> Slot:
        """A surge worker for a rolling restart (forked once the release's zygote is warm)."""
        slot = self._new_slot(release, surge=True)
        if not self._zygote_pending(slot.release):
            self._spawn(slot)  # else reconcile forks it once the new zygote is warm
        return slot

    def _zygote_pending(self, release: str) -> bool:
        return self._spawner is not None and self._spawner.zygote_pending(release)

    def _maintain_standbys(self) -> None:
        """Keep one zygote per release that has (or is rolling to) workers, except for a
        release that cannot boot; workers are forked from it once it is warm."""
        if self._stopping or self._spawner is None:
            return
        target = rolling_to(self.rolling)
        for release in set(self.desired) | set(self._spawner.standbys) | {target or ""}:
            if not release:
                continue
            # while rolling, only the target release forks new workers
            wanted = release == target if target else self.desired.get(release, 0) > 0
            if not wanted:
                self._spawner.stand_down(release)
                continue
            pool = [s for s in self.slots.values() if s.release == release and counts(s.view())]
            allowed = not any(s.state is WorkerState.FAILED for s in pool)
            self._spawner.maintain_standby(release, allowed=allowed)

    def _drain(self, slot: Slot, *, retiring: bool = False, recycling: bool = False) -> None:
        deadline = self.clock.monotonic() + self.settings.shutdown_grace_s + 5.0
        drain(slot, deadline=deadline, retiring=retiring, recycling=recycling)

    def _recycle(self, slot: Slot) -> None:
        """Soft limit reached: drain the worker as retiring, so the next reconcile starts its
        replacement (forked from the warm zygote) beside it, a surge like a Deployment's
        ``maxSurge``. Replaced in place instead, workers that leak in step (the seed's flag on
        every worker) drained together and left none ready for the drain and the boot (~3 s).
        The slot's recycle count moves on to the replacement. During a rolling restart the
        worker is replaced in place instead: the restart tracks its workers by slot, and a
        surge slot of the release it rolls away from would never be rolled."""
        if rolling_to(self.rolling) is not None:
            self._drain(slot, recycling=True)
            return
        carried = self._recycles_carried.get(slot.release, 0)
        self._recycles_carried[slot.release] = carried + slot.recycles + 1
        self._drain(slot, retiring=True, recycling=True)

    def _retire(self, slot: Slot) -> None:
        if slot.live:
            self._drain(slot, retiring=True)
        else:
            slot.retiring = True
            slot.move(WorkerEvent.RETIRE)

    def _reconcile(self, now: float) -> None:
        if now < self._spawn_paused_until:
            return
        try:
            for action in plan(self.desired, [s.view() for s in self.slots.values()], now):
                if isinstance(action, NewSlot):
                    slot = self._new_slot(action.release)
                    if not self._zygote_pending(slot.release):
                        self._spawn(slot)
                elif isinstance(action, Spawn):
                    slot = self.slots[action.slot_id]
                    if self._zygote_pending(slot.release):
                        continue  # fork it from the zygote the moment that is warm
                    slot.extra.pop("sigkilled", None)
                    self._spawn(slot)
                elif isinstance(action, Retire):
                    self._retire(self.slots[action.slot_id])
        except OSError as exc:
            # fork/exec or pipe failed (EAGAIN, EMFILE, ENOMEM): pause instead of spinning.
            log.error("cannot start a worker (%s); retrying in 5 s", exc)
            self._spawn_paused_until = now + 5.0
        for slot_id in [s.slot_id for s in self.slots.values() if s.state is WorkerState.STOPPED]:
            note_dropped_slot(self.rolling, self.slots.pop(slot_id))

    # ----------------------------------------------------------------- stop
    def _stop_all(self, now: float) -> bool:
        """Drain every live worker; True once none is left."""
        del now
        if self._spawner is not None:
            self._spawner.stand_down()
        for slot in self.slots.values():
            if slot.live:
                if slot.state in (WorkerState.STARTING, WorkerState.READY):
                    self._drain(slot, retiring=True)
            elif slot.state is not WorkerState.STOPPED:
                slot.retiring = True
                slot.move(WorkerEvent.RETIRE)
        return not any(s.live for s in self.slots.values())

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for slot in self.slots.values():  # only reached with live workers on an error path
            if slot.live:
                signal_worker(slot, signal.SIGKILL)
        if self._spawner is not None:
            await self._spawner.close()
        await self.observers.close()
        self.enforcer.close()
        if self.responder is not None:
            await self.responder.close()
        if self._sock is not None:
            self._sock.close()
        self.journal.record(
            EventKind.SUPERVISOR_STOPPED,
            release=self._current_release(),
            details={"pid": os.getpid(), "reason": self._stop_reason or "loop ended"},
        )
        if self.sli is not None:
            self.sli.close()

    # ----------------------------------------------------------------- periodic observers
    async def _probe_all(self) -> None:
        ready = [s for s in self.slots.values() if s.state is WorkerState.READY]
        for slot in await self.observers.probe(ready, timeout_s=self.spec.probes.timeout):
            log.warning(
                "%s liveness probe failed (%d in a row)", slot.slot_id, slot.liveness_failures
            )
            self._wake.set()

    async def _watch_memory(self) -> None:
        if self._watchdog.check(self.slots.values(), recycle=self._recycle):
            self._wake.set()

    async def _scrape_all(self) -> None:
        live = [
            s for s in self.slots.values() if s.state in (WorkerState.READY, WorkerState.DRAINING)
        ]
        self._update_gauges()
        points = status_view.supervisor_points(self.metrics, self.slots.values(), self.limits)
        if self.responder is not None:
            points += self.responder.sli_points()
        await self.observers.scrape(live, self.clock.now(), points)

    async def _compact(self) -> None:
        if self.sli is not None:
            self.sli.compact(self.clock.now())

    def _update_gauges(self) -> None:
        status_view.update_gauges(
            self.metrics, self.slots.values(), self.desired, self.crash_looping
        )

    def _ordered_slots(self) -> list[Slot]:
        return sorted(self.slots.values(), key=lambda s: s.index)


# Re-exported: ``service``, ``plugins``, ``control_api`` and tests import these from here.
__all__ = ["PeriodicTask", "RollingRestart", "Supervisor", "admin_socket_dir", "open_public_socket"]
