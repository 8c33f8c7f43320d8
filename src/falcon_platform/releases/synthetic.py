"""Synthetic canary traffic: enough requests for a verdict when users send too few.

Off by default (``canary.synthetic_rps: 0``). When a step's analysis is inconclusive only for
lack of canary requests, the rollout runner sends ``synthetic_rps`` requests/s (open model,
the load-testing engine) to the canary workers -- and only to them -- on their private admin
sockets (``POST /synthetic/infer``), for at most ``synthetic_max_duration`` per step::

    traffic = SyntheticTraffic(rps=5, max_s=60)
    traffic.start([Path("/run/falcon/admin/c1.sock")])
    ...
    summary = await traffic.stop()     # sent, ok, failed, statuses, seconds

Why the admin socket rather than the shared public one: on the shared socket the kernel hands
most requests to the stable workers, and a header saying "synthetic" could be sent by any
client. Only the supervisor can reach the admin socket (0600), so a worker counts what arrives
there in ``falcon_synthetic_*`` and never in ``falcon_requests_total`` or the request log: SLOs,
alerts and incidents see user traffic only, while the judge adds the synthetic requests to the
canary's requests, errors and latency (``releases.window``). The answers' label distribution
and confidence stay compared on user answers only: synthetic texts are not distributed like
users', so comparing them with stable's user answers would be a false shift.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from falcon_platform.config.spec import CanarySpec
from falcon_platform.releases.judge import Analysis, Verdict

SYNTHETIC_BASE_PATH = "/synthetic"  # + /infer: serving.admin.SYNTHETIC_PATH
CONNECTIONS_PER_WORKER = 8  # in flight per canary worker; more are dropped (open model)
TIMEOUT_S = 10.0
STOP_GRACE_S = 1.0  # answers in flight waited for when the step ends


def wants_synthetic(analysis: Analysis, spec: CanarySpec, *, running: bool, used_s: float) -> bool:
    """Start synthetic traffic now? Only when it is on, not already running, this step has
    budget left, and the analysis waits for nothing but canary requests (a failing or
    passing step, or one waiting for something else, gets none). Pure."""
    if spec.synthetic_rps <= 0 or running or used_s >= spec.synthetic_max_duration:
        return False
    if analysis.verdict is not Verdict.INCONCLUSIVE:
        return False
    waiting = [c for c in analysis.checks if c.get("passed") is None]
    return bool(waiting) and all(c.get("check") == "requests" for c in waiting)


class SyntheticTraffic:
    """One step's synthetic traffic: one open-model engine per canary worker, in this loop."""

    def __init__(self, *, rps: float, max_s: float) -> None:
        self.rps = rps
        self.max_s = max_s
        self._stop = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._recorders: list[Any] = []
        self._started: float | None = None
        self._workers = 0

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    @property
    def seconds(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    def start(self, sockets: Sequence[Path]) -> None:
        """Send ``rps`` in total, split evenly over the workers' admin ``sockets``, until
        ``stop()`` or ``max_s`` seconds."""
        from falcon_platform.loadtest.engine import Engine
        from falcon_platform.loadtest.plan import LoadPlan
        from falcon_platform.loadtest.recorder import Recorder
        from falcon_platform.loadtest.requests import RequestSource, Target

        if not sockets or self.running:
            return
        self._started = time.monotonic()
        self._workers = len(sockets)
        rate = self.rps / len(sockets)
        loop = asyncio.get_running_loop()
        for sock in sockets:
            target = Target("localhost", 0, SYNTHETIC_BASE_PATH, uds=str(sock))
            source = RequestSource(target, texts="corpus", request_id_prefix="synthetic-")
            recorder = Recorder()
            engine = Engine(target, source, recorder, connections=CONNECTIONS_PER_WORKER,
                            timeout_s=TIMEOUT_S)  # fmt: skip
            plan = LoadPlan.constant(rate=rate, duration=self.max_s)
            self._recorders.append(recorder)
            self._tasks.append(loop.create_task(engine.drive_open(plan, self._stop)))

    async def stop(self) -> dict[str, Any]:
        """Stop sending; wait up to ``STOP_GRACE_S`` for the answers in flight (an abort must
        not wait for a hung canary), then drop the rest; what was sent and answered."""
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return self.summary()

    def summary(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        transport: dict[str, int] = {}
        sent = dropped = 0
        for rec in self._recorders:
            sent += rec.n_sent
            dropped += rec.n_dropped
            for code, n in rec.statuses.items():
                statuses[str(code)] = statuses.get(str(code), 0) + n
            for kind, n in rec.transport_errors.items():
                if n:
                    transport[kind] = transport.get(kind, 0) + n
        ok = sum(n for code, n in statuses.items() if code.startswith("2"))
        return {
            "rps": self.rps,
            "workers": self._workers,
            "seconds": round(self.seconds, 3),
            "sent": sent,
            "ok": ok,
            "failed": sent - ok,
            "dropped": dropped,
            "statuses": statuses,
            "transport_errors": transport,
        }
