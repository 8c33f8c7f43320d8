"""Fault injection: the only debug switch in Falcon (stub; issue 5 fills it in).

The serving layer calls ``await injector.on_request()`` before inference when
``injector.active`` is non-empty, and adds ``Falcon-Faults: <header_value()>``
to every response while faults are active.
"""

from __future__ import annotations

from falcon_platform.errors import FalconError


class InjectedFaultError(FalconError):
    code = "injected_fault"
    http_status = 500


class FaultInjector:
    def __init__(self, active: dict[str, float] | None = None) -> None:
        self.active: dict[str, float] = dict(active or {})

    def header_value(self) -> str | None:
        if not self.active:
            return None
        return ",".join(f"{k}={v:g}" for k, v in sorted(self.active.items()))

    async def on_request(self) -> None:
        """Apply the active faults to one request; may sleep, allocate, raise or exit."""
        return
