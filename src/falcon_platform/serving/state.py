"""The serving state shared by the public app, the fast path and the admin app.

Lifecycle: ``starting`` → (model loaded, stores started, warmed up) ``ready`` →
(``begin_drain()``, SIGTERM) ``draining``. ``/readyz`` answers 200 only when
ready; ``begin_drain()`` flips it to 503 at once, while in-flight and new
requests on open connections are still answered::

    state = app.state.falcon          # a ServingState
    state.begin_drain()               # the supervisor/worker calls this first on SIGTERM
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from falcon_platform.chaos.faults import FaultInjector
from falcon_platform.config.settings import Settings
from falcon_platform.model.base import ServableModel
from falcon_platform.serving.batcher import MicroBatcher
from falcon_platform.serving.metrics import ServingMetrics
from falcon_platform.stores.base import (
    IdempotencyStore,
    RequestLogSink,
    ResponseCache,
    StoreStats,
)

Phase = Literal["starting", "ready", "draining"]


class StoresLike(Protocol):
    """What serving needs from ``stores.factory.Stores`` (structural, so fakes fit too)."""

    @property
    def cache(self) -> ResponseCache: ...
    @property
    def idempotency(self) -> IdempotencyStore: ...
    @property
    def request_log(self) -> RequestLogSink: ...

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def status(self) -> Mapping[str, Mapping[str, Any]]: ...
    def degraded(self) -> frozenset[str]: ...
    def stats(self) -> StoreStats: ...


@dataclass
class ServingState:
    settings: Settings
    metrics: ServingMetrics
    faults: FaultInjector
    model: ServableModel | None = None
    stores: StoresLike | None = None
    batcher: MicroBatcher | None = None
    phase: Phase = "starting"
    public_metrics: bool = True  # GET /metrics on the public port

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    def begin_drain(self) -> None:
        """Fail readiness now; keep answering what arrives until the server stops."""
        self.phase = "draining"

    def readiness(self, *, details: bool = False) -> tuple[int, dict[str, Any]]:
        """``/readyz`` status code and body (dependencies listed; degraded ones don't fail it).

        ``details`` (the private admin socket only: ``falcon status``) adds each store's
        details; the public port shows backend and state, never paths or database URLs."""
        stores = self.stores
        dependencies: dict[str, dict[str, Any]] = {}
        for name, status in stores.status().items() if stores else ():
            entry = dict(status)
            if not details:
                entry.pop("details", None)
            dependencies[name] = entry
        body: dict[str, Any] = {
            "status": self.phase,
            "ready": self.ready,
            "worker_id": self.settings.worker_id,
            "release": self.settings.release,
            "model_version": self.model.version if self.model is not None else None,
            "dependencies": dependencies,
            "degraded": sorted(stores.degraded()) if stores else [],
        }
        return (200 if self.ready else 503), body
