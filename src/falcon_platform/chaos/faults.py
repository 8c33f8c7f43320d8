"""Fault injection: the only debug switch in Falcon, guarded and always visible.

Faults come only from ``FALCON_FAULTS`` (``leak_mb_per_request=5,error_ratio=0.2``),
parsed strictly, and never run under the ``prod`` profile unless the command line
also says ``--allow-faults``::

    injector = build_injector(settings, allow_faults=args.allow_faults)
    if injector.active:                       # serving: before inference
        await injector.on_request()           # may allocate, sleep, burn CPU, raise or exit
    response.headers["Falcon-Faults"] = injector.header_value()   # when not None

Visibility (issue 5): ``build_injector`` logs a WARNING at start and then every
minute from a daemon thread (independent of traffic and of the event loop);
serving adds the header and the ``falcon_faults_active{fault=...}`` gauge
(``ServingMetrics.bind_faults(lambda: injector.active)``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from falcon_platform.config.faults import parse_faults
from falcon_platform.errors import ConfigError, FalconError

if TYPE_CHECKING:
    from falcon_platform.config.settings import Settings

logger = logging.getLogger("falcon.chaos")

# How often the "faults are on" WARNING repeats.
ANNOUNCE_INTERVAL_S = 60.0
# Exit code of the crash_after fault: EX_SOFTWARE, distinct from OOM (137) and signals.
CRASH_EXIT_CODE = 70


class InjectedFaultError(FalconError):
    code = "injected_fault"
    http_status = 500


class FaultInjector:
    """Applies the active faults to each request. ``FaultInjector()`` injects nothing."""

    def __init__(
        self,
        active: dict[str, float] | None = None,
        *,
        seed: int | None = None,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.active: dict[str, float] = dict(active or {})
        self.seed = seed
        self.requests = 0
        self._rng = random.Random(seed)  # noqa: S311 - chaos, not cryptography
        # Kept on purpose so RSS really grows, like the seed's debug code did.
        self._leaked: list[bytes] = []
        self._exit = exit_process  # tests pass a recorder; real runs die at once
        self._stop_announcing = threading.Event()
        self._announcer: threading.Thread | None = None

    @property
    def leaked_bytes(self) -> int:
        return sum(len(chunk) for chunk in self._leaked)

    def start_announcing(self, *, profile: str, interval_s: float = ANNOUNCE_INTERVAL_S) -> None:
        """Repeat the WARNING every ``interval_s`` in a daemon thread until stopped.

        A thread, not an asyncio task: it must keep talking when the loop is blocked
        (cpu_burn_ms) or idle, and it needs no wiring in the serving lifespan.
        """
        if not self.active or self._announcer is not None:
            return

        def repeat() -> None:
            while not self._stop_announcing.wait(interval_s):
                log_faults_active(self, profile=profile)

        self._announcer = threading.Thread(target=repeat, name="falcon-faults", daemon=True)
        self._announcer.start()

    def stop_announcing(self) -> None:
        self._stop_announcing.set()
        if self._announcer is not None:
            self._announcer.join(timeout=1.0)
            self._announcer = None

    def header_value(self) -> str | None:
        """The ``Falcon-Faults`` header, e.g. ``error_ratio=0.2,latency_ms=50``; None if off."""
        if not self.active:
            return None
        return ",".join(f"{k}={v:g}" for k, v in sorted(self.active.items()))

    async def on_request(self) -> None:
        """Apply the active faults to one request; may sleep, allocate, raise or exit."""
        if not self.active:
            return
        self.requests += 1
        crash_after = self.active.get("crash_after")
        if crash_after is not None and self.requests >= crash_after:
            logger.critical(
                "injected fault crash_after=%g: exiting with code %d after %d requests",
                crash_after,
                CRASH_EXIT_CODE,
                self.requests,
            )
            logging.shutdown()
            self._exit(CRASH_EXIT_CODE)
        leak = self.active.get("leak_mb_per_request")
        if leak is not None:
            # b"\x01" * n writes every page, so the memory is resident, not just reserved.
            self._leaked.append(b"\x01" * int(leak * 1_048_576))
        burn = self.active.get("cpu_burn_ms")
        if burn is not None:
            deadline = time.perf_counter() + burn / 1000
            while time.perf_counter() < deadline:
                pass
        latency = self.active.get("latency_ms")
        if latency is not None:
            await asyncio.sleep(latency / 1000)
        ratio = self.active.get("error_ratio")
        if ratio is not None and self._rng.random() < ratio:
            raise InjectedFaultError(f"injected fault error_ratio={ratio:g} (FALCON_FAULTS)")


def build_injector(
    settings: Settings, *, allow_faults: bool, announce_every_s: float | None = ANNOUNCE_INTERVAL_S
) -> FaultInjector:
    """The injector for ``settings.faults``; refuses ``prod`` unless ``allow_faults``.

    ``allow_faults`` must come from the command line (``--allow-faults``), never from
    the environment, so an env file alone can never turn faults on in production.
    Logs a WARNING naming the faults when any are active, and again every
    ``announce_every_s`` seconds (None: only at start; ``stop_announcing()`` ends it).
    """
    faults, seed = parse_faults(settings.faults)
    if faults and settings.profile == "prod" and not allow_faults:
        raise ConfigError(
            f"FALCON_FAULTS={settings.faults!r} is refused under the prod profile: remove it "
            "from the environment/env file, or run a deliberate drill with --allow-faults"
        )
    injector = FaultInjector(faults, seed=seed)
    if faults:
        where = f"{settings.profile}, worker {settings.worker_id}"
        log_faults_active(injector, profile=where)
        if announce_every_s is not None:
            injector.start_announcing(profile=where, interval_s=announce_every_s)
    return injector


def log_faults_active(injector: FaultInjector, *, profile: str) -> None:
    """The WARNING line that says faults are on (at start and every minute): this worker's
    requests and leaked memory so far (each worker counts its own)."""
    logger.warning(
        "FAULT INJECTION ACTIVE (profile %s): %s; requests so far %d, leaked %d MB",
        profile,
        injector.header_value(),
        injector.requests,
        injector.leaked_bytes // 1_048_576,
    )
