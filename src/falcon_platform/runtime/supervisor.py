"""The supervisor: one process that owns the public socket and keeps N workers alive.

Learned from gunicorn's arbiter, with the state on the instance and the decisions in pure
functions (``runtime.plan``, ``runtime.policy``, ``runtime.lifecycle``). Signal handlers only
queue; one loop does: wait for a signal or the tick -> handle signals -> reap exited workers
-> kill the unhealthy -> reconcile desired vs observed -> advance a rolling restart. Probes,
the memory watchdog and the SLI scrape run as periodic tasks that only *observe* (except the
watchdog's SIGKILL at the hard limit, where reaction time is the point)::

    supervisor = Supervisor(settings, spec, journal, sli=SLIStore(...))
    exit_code = asyncio.run(supervisor.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import random
import signal
import socket
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from falcon_platform.clock import Clock, SystemClock
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import RuntimeStateError
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.runtime import policy
from falcon_platform.runtime import status as status_view
from falcon_platform.runtime.journal import EventJournal, EventKind
from falcon_platform.runtime.lifecycle import WorkerEvent, WorkerState
from falcon_platform.runtime.memory import MemoryEnforcer, WatchdogEnforcer, rss_bytes
from falcon_platform.runtime.metrics import SupervisorMetrics
from falcon_platform.runtime.observers import WorkerObservers
from falcon_platform.runtime.plan import NewSlot, Retire, Spawn, plan
from falcon_platform.runtime.slots import Release, Slot
from falcon_platform.runtime.spawner import Spawner
from falcon_platform.runtime.standby import become_subreaper

log = logging.getLogger("falcon.supervisor")

_TICK_S = 0.25
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; keep a margin


@dataclass(frozen=True)
class PeriodicTask:
    """Extra work on the supervisor's loop, e.g. the alert evaluator (``interval_s`` apart)."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[None]]


@dataclass
class RollingRestart:
    to_release: str
    pending: list[str]
    started_wall: float
    current_old: str | None = None
    current_new: str | None = None
    replaced: int = 0
    failed: str | None = None
    finished_wall: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_release": self.to_release,
            "pending": list(self.pending),
            "replacing": self.current_old,
            "replacement": self.current_new,
            "replaced": self.replaced,
            "failed": self.failed,
            "started_at": self.started_wall,
            "finished_at": self.finished_wall,
            "done": self.finished_wall is not None,
        }


def admin_socket_dir(run_dir: Path) -> Path:
    """Where worker admin sockets live; a short /tmp path when ``run_dir`` is too deep for AF_UNIX."""
    preferred = run_dir / "workers"
    if len(str(preferred.resolve() / "w9999.sock")) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"falcon-{digest}"


def open_public_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker inherits (SO_REUSEADDR so a restart can rebind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeStateError(
                f"{host}:{port} is already in use; is Falcon already running (`falcon status`)? "
                "Otherwise set FALCON_PORT to a free port."
            ) from exc
        raise RuntimeStateError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


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
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.journal = journal
        self.sli = sli
        self.enforcer: MemoryEnforcer = enforcer if enforcer is not None else WatchdogEnforcer()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.metrics = SupervisorMetrics()
        self.limits = policy.memory_limits(
            spec.workers.memory_limit_mb,
            spec.workers.memory_soft_limit_percent,
            settings.memory_limit_mb,
            settings.memory_soft_limit_percent,
        )
        base = Release(settings.release, {}, self.clock.now())
        self.releases: dict[str, Release] = {base.id: base}
        self.desired: dict[str, int] = {base.id: workers or settings.worker_count}
        self.slots: dict[str, Slot] = {}
        self.rolling: RollingRestart | None = None
        self.crash_looping: dict[str, bool] = {}
        self._restart_times: dict[str, deque[float]] = {}
        self._next_index = 0
        self._periodic = list(periodic)
        self._worker_args = list(worker_args)
        self._rng = rng
        self._sock = sock
        self._port: int | None = None
        self._spawn_paused_until = 0.0
        self._signals: deque[int] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_reason = ""
        self.observers = WorkerObservers(self.metrics, sli)
        self._tasks: list[asyncio.Task[None]] = []
        self._socket_dir = admin_socket_dir(settings.run_dir)
        self.use_standby = standby
        self._spawner: Spawner | None = None
        self.started_wall = self.clock.now()
        self.started_mono = self.clock.monotonic()

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

    def request_stop(self, reason: str = "requested") -> None:
        """Drain every worker and exit the loop (Ctrl-C, SIGTERM, `falcon down`)."""
        if not self._stopping:
            self._stopping = True
            self._stop_reason = reason
        self._wake.set()

    def start_rolling_restart(self, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Replace every worker one by one (start new, wait ready, drain old).

        With ``env`` (``FALCON_*`` overrides) the new workers form a new release.
        """
        if self.rolling is not None and self.rolling.finished_wall is None:
            raise RuntimeStateError("a rolling restart is already in progress; see `falcon status`")
        if self._stopping:
            raise RuntimeStateError("the supervisor is stopping")
        current = (
            max(self.desired, key=lambda r: self.desired[r])
            if self.desired
            else self.settings.release
        )
        target = current
        if env:
            bad = [k for k in env if not k.startswith("FALCON_")]
            if bad:
                raise RuntimeStateError(
                    f"only FALCON_* variables can change in a release, not {bad}"
                )
            merged = {**self.releases[current].env, **env}
            target = self._next_release_id()
            self.releases[target] = Release(target, merged, self.clock.now())
        old = [
            s.slot_id for s in sorted(self.slots.values(), key=lambda s: s.index) if self._counts(s)
        ]
        # Zygotes hold the model as it was when they started: new workers must read it afresh,
        # so a new zygote preloads for the target release and the surge workers wait for it.
        if self._spawner is not None:
            self._spawner.stand_down()
        self.rolling = RollingRestart(target, old, self.clock.now())
        self.journal.record(
            EventKind.ROLLING_RESTART_STARTED,
            release=target,
            details={"workers": old, "from_release": current, "env_keys": sorted(env or {})},
        )
        self._wake.set()
        return self.rolling.to_dict()

    def set_desired(self, desired: Mapping[str, int]) -> None:
        """Desired workers per release (the canary moves counts between releases)."""
        unknown = [r for r in desired if r not in self.releases]
        if unknown:
            raise RuntimeStateError(f"unknown release(s) {unknown}; known: {sorted(self.releases)}")
        self.desired = {r: max(0, int(n)) for r, n in desired.items()}
        self._wake.set()

    def add_release(self, env: Mapping[str, str]) -> Release:
        release = Release(self._next_release_id(), dict(env), self.clock.now())
        self.releases[release.id] = release
        return release

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
                "rss_bytes": rss_bytes(os.getpid()),
                "zygote": self._spawner.status() if self._spawner is not None else {},
            },
            "workers": workers,
        }

    def metrics_text(self) -> str:
        self._update_gauges()
        return self.observers.merged_metrics()

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
        self._socket_dir.mkdir(parents=True, exist_ok=True)
        self.journal.record(
            EventKind.SUPERVISOR_STARTED,
            release=self.settings.release,
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
            asyncio.create_task(self._every(self.spec.probes.period, self._probe_all)),
            asyncio.create_task(
                self._every(self.spec.workers.watchdog_interval, self._watch_memory)
            ),
            asyncio.create_task(self._every(self.settings.sli_scrape_interval_s, self._scrape_all)),
            asyncio.create_task(self._every(60.0, self._compact)),
        ]
        self._tasks += [
            asyncio.create_task(self._every(t.interval_s, t.run)) for t in self._periodic
        ]
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._next_wait())
                self._wake.clear()
                self._handle_signals()
                self._reap()
                now = self.clock.monotonic()
                self._kill_unhealthy(now)
                if self._stopping:
                    if self._stop_all(now):
                        break
                    continue
                self._maintain_standbys()
                self._reconcile(now)
                self._advance_rolling()
                self._update_crash_loop()
        finally:
            await self._shutdown()
        return 0

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

    async def _every(self, interval: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            started = time.monotonic()
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing observer must not take the supervisor down
                log.exception("periodic task failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    # ----------------------------------------------------------------- spawn
    def _next_release_id(self) -> str:
        numbers = [int(r[1:]) for r in self.releases if r[:1] == "r" and r[1:].isdigit()]
        return f"r{max(numbers, default=0) + 1}"

    def _new_slot(self, release: str, *, surge: bool = False) -> Slot:
        self._next_index += 1
        slot_id = f"w{self._next_index}"
        slot = Slot(
            slot_id, release, self._next_index, self._socket_dir / f"{slot_id}.sock", surge=surge
        )
        self.slots[slot_id] = slot
        return slot

    def _maintain_standbys(self) -> None:
        """Keep one zygote per release that has (or is rolling to) workers, except for a
        release that cannot boot; workers are forked from it once it is warm."""
        if self._stopping or self._spawner is None:
            return
        rolling_to = None
        if self.rolling is not None and self.rolling.finished_wall is None:
            rolling_to = self.rolling.to_release
        for release in set(self.desired) | set(self._spawner.standbys) | {rolling_to or ""}:
            if not release:
                continue
            # while rolling, only the target release forks new workers
            wanted = release == rolling_to if rolling_to else self.desired.get(release, 0) > 0
            if not wanted:
                self._spawner.stand_down(release)
                continue
            pool = [s for s in self.slots.values() if s.release == release and self._counts(s)]
            allowed = not any(s.state is WorkerState.FAILED for s in pool)
            self._spawner.maintain_standby(release, allowed=allowed)

    def _spawn(self, slot: Slot) -> None:
        assert self._spawner is not None
        started = self._spawner.spawn(slot.release, slot.slot_id, slot.admin_socket)
        proc, read_fd, from_standby = started.proc, started.notify_fd, started.from_standby
        slot.reset_process_flags()
        slot.proc = proc
        slot.notify_fd = read_fd
        slot.notify_buffer = b""
        slot.started_wall = self.clock.now()
        slot.started_mono = self.clock.monotonic()
        slot.restart_at = None
        slot.move(WorkerEvent.SPAWN)
        slot.extra["forked"] = from_standby
        # Export the counters at 0 from the start: increase() (alert FalconWorkerOOMKilled, in
        # Prometheus and in the local evaluator) cannot see a series whose first sample is 1.
        for counter in (self.metrics.oom_kills, self.metrics.restarts):
            counter.labels(worker=slot.slot_id, release=slot.release)
        try:
            self.enforcer.attach(slot.slot_id, proc.pid, self.limits.limit_bytes)
        except OSError as exc:
            log.warning("could not put %s in its memory cgroup: %s", slot.slot_id, exc)
        asyncio.get_running_loop().add_reader(read_fd, self._on_notify, slot.slot_id)
        self.journal.record(
            EventKind.WORKER_STARTED,
            release=slot.release,
            worker=slot.slot_id,
            details={
                "pid": proc.pid,
                "restarts": slot.restarts,
                "memory_limit_bytes": self.limits.limit_bytes,
                "memory_enforcement": self.enforcer.kind,
                "surge": slot.surge,
                "from_zygote": from_standby,
                "zygote_warm": started.standby_warm,
            },
        )

    def _on_notify(self, slot_id: str) -> None:
        slot = self.slots.get(slot_id)
        if slot is None or slot.notify_fd is None:
            return
        try:
            chunk = os.read(slot.notify_fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            self._close_notify(slot)
            return
        slot.notify_buffer += chunk
        *lines, slot.notify_buffer = slot.notify_buffer.split(b"\n")
        for raw in lines:
            message = raw.decode(errors="replace").strip()
            if message == "ready":
                self._on_ready(slot)
            elif message.startswith("boot_failed"):
                slot.boot_message = message.removeprefix("boot_failed").strip()

    def _close_notify(self, slot: Slot) -> None:
        if slot.notify_fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(slot.notify_fd)
            with contextlib.suppress(OSError):
                os.close(slot.notify_fd)
            slot.notify_fd = None

    def _on_ready(self, slot: Slot) -> None:
        if slot.state is not WorkerState.STARTING:
            return
        slot.move(WorkerEvent.READY)
        slot.ready_wall = self.clock.now()
        slot.ready_mono = self.clock.monotonic()
        slot.boot_failures = 0
        boot_s = slot.ready_mono - (slot.started_mono or slot.ready_mono)
        details: dict[str, Any] = {"pid": slot.pid, "boot_s": round(boot_s, 3)}
        if slot.last_exit is not None and slot.last_exit_wall is not None and not slot.surge:
            details["since_exit_s"] = round(slot.ready_wall - slot.last_exit_wall, 3)
            details["backoff_s"] = round(slot.backoff_s or 0.0, 3)
            details["restart_latency_s"] = round(
                slot.ready_wall - slot.last_exit_wall - (slot.backoff_s or 0.0), 3
            )
        self.journal.record(
            EventKind.WORKER_READY, release=slot.release, worker=slot.slot_id, details=details
        )
        self._wake.set()

    # ----------------------------------------------------------------- reap
    def _reap(self) -> None:
        if self._spawner is not None:
            self._spawner.reap()
        for slot in list(self.slots.values()):
            if slot.proc is None or not slot.live:
                continue
            code = slot.proc.poll()
            if code is not None:
                self._on_exit(slot, code)

    def _on_exit(self, slot: Slot, returncode: int) -> None:
        if slot.notify_fd is not None:
            self._on_notify(slot.slot_id)  # a last "boot_failed <why>" may be waiting
            self._close_notify(slot)
        now_wall, now_mono = self.clock.now(), self.clock.monotonic()
        cgroup_oom = False
        with contextlib.suppress(OSError):
            cgroup_oom = self.enforcer.oom_killed(slot.slot_id)
        oom = cgroup_oom or slot.watchdog_killed
        peaks = [p for p in (slot.peak_rss_bytes, self.enforcer.peak_bytes(slot.slot_id)) if p]
        was_ready = slot.ready_mono is not None
        info = policy.classify_exit(
            returncode,
            oom_killed=oom,
            was_ready=was_ready,
            expected=slot.retiring or self._stopping,
            liveness_killed=slot.liveness_killed,
            recycled=slot.recycling,
            peak_rss_bytes=max(peaks) if peaks else None,
        )
        self.enforcer.release(slot.slot_id)
        slot.move(WorkerEvent.EXIT)
        slot.last_exit = info
        slot.last_exit_wall = now_wall
        healthy_for = now_mono - slot.ready_mono if slot.ready_mono is not None else 0.0
        pid = slot.proc.pid if slot.proc is not None else None
        details: dict[str, Any] = {
            "pid": pid,
            "exit_code": info.exit_code,
            "signal": info.signal,
            "reason": info.reason.value,
            "oom_killed": info.oom_killed,
            "oom_enforcement": (self.enforcer.kind if cgroup_oom else "watchdog") if oom else None,
            "peak_rss_bytes": info.peak_rss_bytes,
            "memory_limit_bytes": self.limits.limit_bytes,
            "during_boot": info.during_boot,
            "uptime_s": round(now_mono - (slot.started_mono or now_mono), 3),
            "healthy_for_s": round(healthy_for, 3),
        }
        if slot.boot_message:
            details["boot_message"] = slot.boot_message
        if slot.watchdog_killed:
            details["watchdog_killed_at"] = slot.extra.get("watchdog_kill_wall")
            details["watchdog_rss_bytes"] = slot.extra.get("watchdog_kill_rss")
        self.journal.record(
            EventKind.WORKER_EXITED, release=slot.release, worker=slot.slot_id, details=details
        )
        labels = {"worker": slot.slot_id, "release": slot.release}
        if info.oom_killed:
            self.metrics.oom_kills.labels(**labels).inc()
        self.observers.forget(slot.slot_id)
        if not was_ready or returncode != 0:
            asyncio.get_running_loop().create_task(self._ship_orphans(slot))
        decision = policy.decide_after_exit(
            info,
            # a surge worker that never became ready is dropped: the rolling restart stops
            retiring=slot.retiring or self._stopping or (slot.surge and not was_ready),
            recycling=slot.recycling,
            previous_attempt=slot.attempt,
            boot_failures=slot.boot_failures,
            healthy_for_s=healthy_for,
            spec=self.spec.restart,
            u=self._rng(),
        )
        slot.attempt, slot.boot_failures = decision.attempt, decision.boot_failures
        if decision.action is policy.AfterExit.RETIRE:
            slot.move(WorkerEvent.RETIRE)
            return
        if decision.action is policy.AfterExit.REPLACE:
            # Soft limit: replace at once; a planned recycle is not a crash and adds no back-off.
            slot.move(WorkerEvent.SCHEDULE_RESTART)
            slot.restart_at = now_mono
            slot.backoff_s = 0.0
            return
        if decision.action is policy.AfterExit.GIVE_UP:
            slot.move(WorkerEvent.GIVE_UP)
            why = slot.boot_message or f"exit code {info.exit_code}"
            self.journal.record(
                EventKind.WORKER_GAVE_UP,
                release=slot.release,
                worker=slot.slot_id,
                details={
                    "boot_failures": slot.boot_failures,
                    "reason": why,
                    "hint": "fix the cause, then `falcon restart`",
                },
            )
            log.error(
                "worker %s failed to boot %d times, not retrying: %s",
                slot.slot_id,
                slot.boot_failures,
                why,
            )
            return
        delay = decision.delay_s
        slot.move(WorkerEvent.SCHEDULE_RESTART)
        slot.restart_at = now_mono + delay
        slot.backoff_s = delay
        slot.restarts += 1
        self.metrics.restarts.labels(**labels).inc()
        self._note_restart(slot.release)
        self.journal.record(
            EventKind.RESTART_SCHEDULED,
            release=slot.release,
            worker=slot.slot_id,
            details={
                "backoff_s": round(delay, 3),
                "attempt": slot.attempt,
                "restarts": slot.restarts,
                "after": info.reason.value,
                "boot_failures": slot.boot_failures,
            },
        )

    def _note_restart(self, release: str) -> None:
        self._restart_times.setdefault(release, deque(maxlen=1000)).append(self.clock.monotonic())
        self._update_crash_loop()

    async def _ship_orphans(self, slot: Slot) -> None:
        """Ship request-log segments a dead worker left on disk (so a SIGKILL loses no row)."""
        from falcon_platform.stores.request_log import ship_orphans

        try:
            report = await asyncio.to_thread(
                ship_orphans, self.settings, slot.slot_id, timeout_s=self.settings.shutdown_grace_s
            )
        except Exception as exc:  # the next exit or the worker's own restart ships them
            log.warning("shipping %s's request-log segments failed: %s", slot.slot_id, exc)
            return
        if report.rows_shipped or report.segments_left:
            self.journal.record(
                EventKind.ORPHANS_SHIPPED,
                release=slot.release,
                worker=slot.slot_id,
                details={"rows": report.rows_shipped, "segments_left": report.segments_left},
            )

    # ----------------------------------------------------------------- kill the unhealthy
    def _signal(self, slot: Slot, sig: int) -> None:
        if slot.proc is not None and slot.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.proc.pid, sig)

    def _drain(self, slot: Slot, *, retiring: bool = False, recycling: bool = False) -> None:
        if slot.state in (WorkerState.DRAINING, WorkerState.KILLING):
            return
        slot.retiring = slot.retiring or retiring
        slot.recycling = slot.recycling or recycling
        slot.move(WorkerEvent.DRAIN)
        slot.deadline = self.clock.monotonic() + self.settings.shutdown_grace_s + 5.0
        self._signal(slot, signal.SIGTERM)

    def _kill(self, slot: Slot, *, why: str, details: Mapping[str, Any]) -> None:
        if slot.state is WorkerState.KILLING:
            return
        slot.move(WorkerEvent.KILL)
        slot.liveness_killed = True
        slot.deadline = self.clock.monotonic() + self.spec.probes.kill_grace
        # A hung (or SIGSTOPped) worker cannot act on SIGTERM: the deadline escalates to SIGKILL.
        self._signal(slot, signal.SIGTERM)
        self.metrics.liveness_kills.labels(worker=slot.slot_id, release=slot.release).inc()
        self.journal.record(
            EventKind.LIVENESS_KILL,
            release=slot.release,
            worker=slot.slot_id,
            details={
                "pid": slot.pid,
                "why": why,
                "kill_grace_s": self.spec.probes.kill_grace,
                **details,
            },
        )

    def _kill_unhealthy(self, now: float) -> None:
        probes = self.spec.probes
        for slot in list(self.slots.values()):
            if slot.state is WorkerState.STARTING and slot.started_mono is not None:
                if now - slot.started_mono > probes.startup_timeout:
                    self._kill(
                        slot,
                        why="startup timeout",
                        details={"startup_timeout_s": probes.startup_timeout},
                    )
            elif (
                slot.state is WorkerState.READY
                and slot.liveness_failures >= probes.failure_threshold
            ):
                self._kill(
                    slot,
                    why="liveness probe failed",
                    details={
                        "failures": slot.liveness_failures,
                        "period_s": probes.period,
                        "timeout_s": probes.timeout,
                    },
                )
            elif (
                slot.state in (WorkerState.DRAINING, WorkerState.KILLING)
                and slot.deadline is not None
                and now >= slot.deadline
                and slot.proc is not None
                and slot.proc.returncode is None
                and not slot.extra.get("sigkilled")
            ):
                slot.extra["sigkilled"] = True
                log.warning("%s did not exit within its grace: SIGKILL", slot.slot_id)
                self._signal(slot, signal.SIGKILL)

    # ----------------------------------------------------------------- reconcile
    def _counts(self, slot: Slot) -> bool:
        return not slot.retiring and not slot.surge and slot.state is not WorkerState.STOPPED

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
            del self.slots[slot_id]

    def _zygote_pending(self, release: str) -> bool:
        return self._spawner is not None and self._spawner.zygote_pending(release)

    def _retire(self, slot: Slot) -> None:
        if slot.live:
            self._drain(slot, retiring=True)
        else:
            slot.retiring = True
            slot.move(WorkerEvent.RETIRE)

    def _advance_rolling(self) -> None:
        rolling = self.rolling
        if rolling is None or rolling.finished_wall is not None:
            return
        if rolling.current_new is not None:
            new = self.slots.get(rolling.current_new)
            old = self.slots.get(rolling.current_old or "")
            if new is not None and new.state is WorkerState.READY:
                new.surge = False
                if old is not None:
                    if old.release != new.release:
                        self.desired[old.release] = max(0, self.desired.get(old.release, 0) - 1)
                        self.desired[new.release] = self.desired.get(new.release, 0) + 1
                    self._retire(old)
                rolling.replaced += 1
                rolling.current_old = rolling.current_new = None
            elif new is None or new.state not in (WorkerState.STARTING, WorkerState.NEW):
                why = (
                    new.boot_message if new else None
                ) or "the replacement worker did not become ready"
                if new is not None:
                    self._retire(new)
                rolling.failed = why
                rolling.finished_wall = self.clock.now()
                self.journal.record(
                    EventKind.ROLLING_RESTART_FINISHED,
                    release=rolling.to_release,
                    details={**rolling.to_dict(), "ok": False},
                )
                return
            else:
                return
        while rolling.pending:
            old_id = rolling.pending.pop(0)
            old = self.slots.get(old_id)
            if old is None or not self._counts(old):
                continue
            new = self._new_slot(rolling.to_release, surge=True)
            rolling.current_old, rolling.current_new = old_id, new.slot_id
            if not self._zygote_pending(new.release):
                self._spawn(new)  # else reconcile forks it once the new zygote is warm
            return
        rolling.finished_wall = self.clock.now()
        self.journal.record(
            EventKind.ROLLING_RESTART_FINISHED,
            release=rolling.to_release,
            details={**rolling.to_dict(), "ok": True},
        )

    def _update_crash_loop(self) -> None:
        now = self.clock.monotonic()
        for release in set(self.desired) | set(self._restart_times):
            times = self._restart_times.get(release, deque())
            looping = policy.crash_looping(list(times), now, self.spec.restart)
            was = self.crash_looping.get(release, False)
            if looping != was:
                self.crash_looping[release] = looping
                kind = EventKind.CRASH_LOOP_ENTERED if looping else EventKind.CRASH_LOOP_LEFT
                self.journal.record(
                    kind,
                    release=release,
                    details={
                        "restarts_in_window": policy.recent_restarts(
                            list(times), now, self.spec.restart
                        ),
                        "window_s": self.spec.restart.crash_loop_window,
                        "threshold": self.spec.restart.crash_loop_restarts,
                    },
                )
            self.metrics.crash_loop.labels(release=release).set(1 if looping else 0)

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
                self._signal(slot, signal.SIGKILL)
        if self._spawner is not None:
            await self._spawner.close()
        await self.observers.close()
        self.enforcer.close()
        if self._sock is not None:
            self._sock.close()
        self.journal.record(
            EventKind.SUPERVISOR_STOPPED,
            release=self.settings.release,
            details={"pid": os.getpid(), "reason": self._stop_reason or "loop ended"},
        )
        if self.sli is not None:
            self.sli.close()

    # ----------------------------------------------------------------- observers
    async def _probe_all(self) -> None:
        ready = [s for s in self.slots.values() if s.state is WorkerState.READY]
        for slot in await self.observers.probe(ready, timeout_s=self.spec.probes.timeout):
            log.warning(
                "%s liveness probe failed (%d in a row)", slot.slot_id, slot.liveness_failures
            )
            self._wake.set()

    async def _watch_memory(self) -> None:
        for slot in list(self.slots.values()):
            if not slot.live or slot.proc is None:
                continue
            rss = rss_bytes(slot.proc.pid)
            if rss is None:
                continue
            slot.rss_bytes = rss
            slot.peak_rss_bytes = max(slot.peak_rss_bytes, rss)
            action = policy.memory_action(
                rss,
                self.limits,
                # A zygote-forked worker shares the model's pages, which the kernel charges to
                # the zygote: its cgroup sees less than its RSS, so the watchdog holds the line.
                kernel_enforced=self.enforcer.kernel_enforced and not slot.extra.get("forked"),
                already_recycling=slot.recycling
                or slot.state in (WorkerState.DRAINING, WorkerState.KILLING),
            )
            if action is policy.MemoryAction.KILL and not slot.watchdog_killed:
                slot.watchdog_killed = True
                self._signal(slot, signal.SIGKILL)  # at once: the limit is the limit
                slot.extra["watchdog_kill_wall"] = self.clock.now()
                slot.extra["watchdog_kill_rss"] = rss
                self._wake.set()
            elif action is policy.MemoryAction.RECYCLE and slot.state is WorkerState.READY:
                self.metrics.limit_recycles.labels(worker=slot.slot_id, release=slot.release).inc()
                self.journal.record(
                    EventKind.LIMIT_RECYCLE,
                    release=slot.release,
                    worker=slot.slot_id,
                    details={
                        "pid": slot.pid,
                        "rss_bytes": rss,
                        "soft_limit_bytes": self.limits.soft_bytes,
                        "memory_limit_bytes": self.limits.limit_bytes,
                    },
                )
                self._drain(slot, recycling=True)
                self._wake.set()

    async def _scrape_all(self) -> None:
        live = [
            s for s in self.slots.values() if s.state in (WorkerState.READY, WorkerState.DRAINING)
        ]
        self._update_gauges()
        points = status_view.supervisor_points(self.metrics, self.slots.values(), self.limits)
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


__all__ = ["PeriodicTask", "RollingRestart", "Supervisor", "admin_socket_dir", "open_public_socket"]
