"""What the generator saw, recorded as it happens (HDR histograms, counts, per-second series).

Latency is recorded from each request's *scheduled* start (coordinated omission corrected:
a stalled server delays the requests that should have been sent during the stall, and their
wait counts). The time from the actual send is kept too (``service``), and so is the
generator's own lag behind its schedule, so a late generator is visible, not hidden::

    rec = Recorder()
    rec.scheduled(t=0.5); rec.sent(t=0.5, lag_s=0.0003)
    rec.response(t=0.5, status=200, latency_s=0.004, service_s=0.0037)
    rec.latency.get_value_at_percentile(99)          # microseconds
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

# 1 us .. 1 h at 3 significant digits (0.1% resolution at any magnitude)
LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3

ERROR_KINDS = ("connect_error", "disconnected", "timeout", "protocol_error")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def _us(seconds: float) -> int:
    return min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000)))


@dataclass(slots=True)
class SecondBucket:
    """Requests *scheduled* in one second of the run, and what happened to them."""

    scheduled: int = 0
    sent: int = 0
    dropped: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))


class Recorder:
    """Mutable tallies, touched once or twice per request from the generator's event loop."""

    def __init__(self) -> None:
        self.latency = new_histogram()  # from the scheduled start (corrected)
        self.service = new_histogram()  # from the actual send (what a closed loop reports)
        self.lag = new_histogram()  # send time - scheduled time
        self.statuses: dict[int, int] = {}
        self.transport_errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.n_scheduled = 0
        self.n_sent = 0
        self.n_dropped = 0
        self.n_sent_late = 0  # sent after the planned end (the generator fell behind)
        self.seconds: list[SecondBucket] = []

    def _bucket(self, t: float) -> SecondBucket:
        i = int(t) if t > 0 else 0
        seconds = self.seconds
        while len(seconds) <= i:
            seconds.append(SecondBucket())
        return seconds[i]

    def scheduled(self, t: float) -> None:
        self.n_scheduled += 1
        self._bucket(t).scheduled += 1

    def dropped(self, t: float) -> None:
        self.n_dropped += 1
        self._bucket(t).dropped += 1

    def sent(self, t: float, lag_s: float, *, late: bool = False) -> None:
        self.n_sent += 1
        if late:
            self.n_sent_late += 1
        self._bucket(t).sent += 1
        self.lag.record_value(_us(lag_s))

    def response(self, t: float, status: int, latency_s: float, service_s: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latency.record_value(_us(latency_s))
        self.service.record_value(_us(service_s))
        bucket = self._bucket(t)
        if 200 <= status < 300:
            bucket.ok += 1
        else:
            bucket.errors += 1
        bucket.latencies_ms.append(latency_s * 1000)

    def failure(self, t: float, kind: str, latency_s: float | None = None) -> None:
        """A request that got no HTTP response. Time-outs enter the latency histogram at the
        time they were given up on (a lower bound); refused connections do not."""
        self.transport_errors[kind] = self.transport_errors.get(kind, 0) + 1
        bucket = self._bucket(t)
        bucket.errors += 1
        if kind == "timeout":
            bucket.timeouts += 1
        if latency_s is not None:
            self.latency.record_value(_us(latency_s))
            bucket.latencies_ms.append(latency_s * 1000)

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        bad_status = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return bad_status + sum(self.transport_errors.values())
