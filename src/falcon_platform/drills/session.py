"""One drill in progress: the deployment's control API, the paced load, the journal, the clock.

The scenarios (:mod:`falcon_platform.drills.scenarios`) act through a :class:`Session`;
everything here is I/O (HTTP to the control API, the load generator's thread, signals)::

    with Session(settings, spec, client, name="kill-worker", rps=20) as s:
        s.start_load(); s.wait_events(lambda evs: ..., timeout=30, what="the exit")
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from falcon_platform.client.control import ControlClient
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.drills.judge import Answer
from falcon_platform.errors import FalconError
from falcon_platform.loadtest import BackgroundLoad, LoadOptions, LoadPlan, start_load
from falcon_platform.loadtest.engine import Outcome

POLL_S = 0.25


class DrillAbortedError(FalconError):
    """A drill could not go on (the deployment did something the drill cannot judge)."""

    code = "drill_aborted"


class Session:
    """What a running drill holds: settings, spec, control client, load, timings."""

    def __init__(
        self,
        settings: Settings,
        spec: Spec,
        client: ControlClient,
        *,
        name: str,
        rps: float,
        started_at: float,
        note: Callable[[str, float], None],
    ) -> None:
        self.settings, self.spec, self.client = settings, spec, client
        self.name, self.rps, self.started_at = name, rps, started_at
        self.note = note
        self.status: dict[str, Any] = client.status()
        self.url: str = str(self.status["supervisor"]["url"])
        self.prefix = f"drill-{name}-{uuid.uuid4().hex[:8]}-"
        self.injected_at: float | None = None
        self.restored_at: float | None = None
        self.rollback_at: float | None = None
        self.measured: dict[str, Any] = {}
        self._raw: list[tuple[int, float, float, int]] = []  # (index, sched, latency, status)
        self._load: BackgroundLoad | None = None
        self._t0_wall = 0.0
        self.cleanups: list[Callable[[], None]] = []

    # --- load ---------------------------------------------------------------------------
    def start_load(self) -> None:
        options = LoadOptions(
            texts="unique", keep_alive=False, timeout_s=10.0, connections=256,
            request_id_prefix=self.prefix,
        )  # fmt: skip
        self._load = start_load(
            LoadPlan.open_ended(self.rps), self.url, options=options, on_response=self._seen
        )
        self._t0_wall = time.time() - self._load.now()
        self.note(f"load started: {self.rps:g} requests/s on {self.url}", self._t0_wall)

    def _seen(self, o: Outcome) -> None:
        self._raw.append((o.index, o.scheduled_t, o.latency_s, o.status))  # atomic under the GIL

    def stop_load(self) -> None:
        if self._load is not None:
            result = self._load.stop()
            self._load = None
            dropped = result.dropped
            self.measured["load"] = {
                "sent": result.sent, "dropped": dropped, "p99_ms": round(result.latency.p99_ms, 1)
            }  # fmt: skip
            self.note(f"load stopped: {result.sent} sent, {result.errors} failed", time.time())

    def answers(self) -> list[Answer]:
        t0 = self._t0_wall
        return [(t0 + s, t0 + s + lat, status) for _, s, lat, status in list(self._raw)]

    def ok_request_ids(self) -> list[str]:
        return [f"{self.prefix}{i:08d}" for i, _, _, st in list(self._raw) if 200 <= st < 300]

    def failed_since(self, since: float) -> tuple[int, int]:
        answers = [a for a in self.answers() if a[0] >= since]
        return sum(1 for a in answers if not 200 <= a[2] < 300), len(answers)

    # --- the deployment -----------------------------------------------------------------
    def refresh(self) -> dict[str, Any]:
        self.status = self.client.status()
        return self.status

    def events(self, kinds: Sequence[str] = ()) -> list[dict[str, Any]]:
        return self.client.events(since=self.started_at - 1, kinds=kinds, limit=100_000)

    def wait_events(
        self,
        found: Callable[[list[dict[str, Any]]], Mapping[str, Any] | None],
        *,
        timeout: float,
        kinds: Sequence[str] = (),
    ) -> Mapping[str, Any] | None:
        """Poll the journal until ``found(events)`` returns an event, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FalconError):
                hit = found(self.events(kinds))
                if hit is not None:
                    return hit
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def ready_workers(self, status: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        status = status or self.status
        return [w for w in status["workers"] if w["state"] == "ready"]

    def current_release(self) -> str:
        desired: dict[str, int] = self.status["supervisor"]["desired"]
        return max(desired, key=lambda r: desired[r])

    def pick_victim(self) -> dict[str, Any]:
        ready = self.ready_workers(self.refresh())
        if not ready:
            raise DrillAbortedError("no ready worker to inject into; see `falcon status`")
        return min(ready, key=lambda w: (w.get("restarts", 0), str(w["worker"])))

    def roll_out(self, env: Mapping[str, str], *, allow_faults: bool, timeout: float) -> str:
        """Rolling restart into a release with ``env``; wait until it is done; its id."""
        body = self.client.restart(env, allow_faults=allow_faults)
        release = str(body["to_release"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rolling = self.refresh()["supervisor"].get("rolling_restart") or {}
            if rolling.get("to_release") == release and rolling.get("done"):
                if rolling.get("failed"):
                    raise DrillAbortedError(
                        f"rolling restart to {release} failed: {rolling['failed']}"
                    )
                return release
            time.sleep(POLL_S)
        raise DrillAbortedError(f"rolling restart to {release} not done within {timeout:g} s")

    def wait_steady(self, timeout: float) -> tuple[bool, str]:
        """Wait until :func:`steady_problem` finds nothing; (ok, why not)."""
        deadline = time.monotonic() + timeout
        why = ""
        while True:
            with contextlib.suppress(FalconError):
                why = steady_problem(self.refresh())
                if not why:
                    return True, "every desired worker ready, healthy"
            if time.monotonic() >= deadline:
                return False, why
            time.sleep(POLL_S)

    def __enter__(self) -> Session:
        return self

    def run_cleanups(self) -> None:
        """Undo every injection still in place (each cleanup runs once, newest first)."""
        while self.cleanups:
            cleanup = self.cleanups.pop()
            try:
                cleanup()
            except Exception as exc:
                self.note(f"restore step failed: {exc}", time.time())

    def __exit__(self, *exc: object) -> None:
        self.run_cleanups()
        with contextlib.suppress(Exception):
            self.stop_load()


def steady_problem(status: Mapping[str, Any]) -> str:
    """Why the deployment is not in its steady state ('' when it is). Pure."""
    sup = status["supervisor"]
    if sup.get("state") != "running":
        return f"the supervisor is {sup.get('state')}"
    if not sup.get("healthy", False):
        return f"unhealthy: {sup.get('health')}"
    rolling = sup.get("rolling_restart")
    if rolling and not rolling.get("done"):
        return f"a rolling restart to {rolling.get('to_release')} is in progress"
    desired = sum(int(n) for n in sup.get("desired", {}).values())
    ready = sum(1 for w in status["workers"] if w["state"] == "ready")
    if ready < desired:
        return f"{ready} of {desired} desired workers ready"
    current = max(sup["desired"], key=lambda r: sup["desired"][r]) if sup.get("desired") else None
    env = (sup.get("releases", {}).get(current) or {}).get("env", {}) if current else {}
    if str(env.get("FALCON_FAULTS", "")).strip():
        return f"release {current} runs with FALCON_FAULTS={env['FALCON_FAULTS']!r}"
    return ""
