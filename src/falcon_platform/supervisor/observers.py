"""The supervisor's eyes on each worker's private admin socket: liveness probes and scrapes.

Observers only record what they see (probe failures on the slot, expositions, SLI samples);
the supervisor loop decides what to do about it::

    observers = WorkerObservers(metrics, sli)
    failed = await observers.probe(ready_slots, timeout_s=1.0)   # slots whose probe failed
    await observers.scrape(live_slots, now, extra_points)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from falcon_platform.observability.aggregate import WorkerExposition, merge_expositions
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.supervisor.admin_client import AdminClient
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.status import Point


class WorkerObservers:
    def __init__(self, metrics: SupervisorMetrics, sli: SLIStore | None) -> None:
        self.metrics = metrics
        self.sli = sli
        self._clients: dict[str, AdminClient] = {}
        self._expositions: dict[str, WorkerExposition] = {}

    def client(self, slot: Slot) -> AdminClient:
        client = self._clients.get(slot.slot_id)
        if client is None or client.socket_path != slot.admin_socket:
            client = AdminClient(slot.admin_socket)
            self._clients[slot.slot_id] = client
        return client

    def forget(self, slot_id: str) -> None:
        """The worker is gone: drop its client and its last exposition."""
        self._expositions.pop(slot_id, None)
        client = self._clients.pop(slot_id, None)
        if client is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(client.aclose())

    async def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()

    async def probe(self, slots: Sequence[Slot], *, timeout_s: float) -> list[Slot]:
        """Probe /healthz of each slot; update its consecutive failure count; return the failed."""
        results = await asyncio.gather(
            *(self.client(s).healthz(timeout_s=timeout_s) for s in slots)
        )
        failed = []
        for slot, ok in zip(slots, results, strict=True):
            slot.liveness_failures = 0 if ok else slot.liveness_failures + 1
            if not ok:
                failed.append(slot)
        return failed

    async def scrape(self, slots: Sequence[Slot], now: float, extra: Sequence[Point]) -> None:
        """Fetch every worker's /metrics: keep it for /metrics and its SLIs in the store."""
        texts = await asyncio.gather(*(self.client(s).metrics(timeout_s=1.0) for s in slots))
        for slot, text in zip(slots, texts, strict=True):
            if text is None:
                self.metrics.scrape_failures.labels(worker=slot.slot_id).inc()
                continue
            self._expositions[slot.slot_id] = WorkerExposition(slot.slot_id, slot.release, text)
            if self.sli is not None:
                try:
                    self.sli.ingest_exposition(now, text, worker=slot.slot_id, release=slot.release)
                except ValueError:
                    self.metrics.scrape_failures.labels(worker=slot.slot_id).inc()
        if self.sli is not None:
            self.sli.record_many(now, extra)

    def merged_metrics(self, extra: Sequence[CollectorRegistry] = ()) -> str:
        return merge_expositions(
            list(self._expositions.values()), extra=[self.metrics.registry, *extra]
        )

    async def readyz(self, slot: Slot) -> dict[str, Any] | None:
        return await self.client(slot).readyz_body(timeout_s=1.0)
