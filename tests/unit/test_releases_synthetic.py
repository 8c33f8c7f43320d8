"""Synthetic canary traffic: when the runner starts it (pure), and how the judge's window
counts it (the real SLI store, fed the expositions a worker serves)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from falcon_platform.config.spec import CanarySpec
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.releases.judge import Analysis, CanaryLimits, WindowStats, judge_canary
from falcon_platform.releases.synthetic import STOP_GRACE_S, SyntheticTraffic, wants_synthetic
from falcon_platform.releases.window import EventList, release_window

ON = CanarySpec(synthetic_rps=10, synthetic_max_duration=30, min_requests=100)
STABLE = WindowStats(requests=1000, errors=0, p95_ms=20.0, memory_mb=110.0,
                     memory_slope_mb_per_min=0.0, mean_confidence=0.7)  # fmt: skip


def _analysis(canary: WindowStats, spec: CanarySpec = ON) -> Analysis:
    limits = CanaryLimits.from_spec(spec, memory_limit_mb=512)
    return judge_canary(canary, STABLE, limits, step_left_s=60)


def test_synthetic_traffic_starts_only_for_a_step_short_of_requests_with_budget_left() -> None:
    few = _analysis(WindowStats(requests=12, p95_ms=20.0, memory_mb=110.0))
    enough = _analysis(WindowStats(requests=500, p95_ms=20.0, memory_mb=110.0))
    failing = _analysis(WindowStats(requests=12, p95_ms=20.0, memory_mb=110.0, oom_kills=1))
    assert wants_synthetic(few, ON, running=False, used_s=0)
    assert not wants_synthetic(few, CanarySpec(), running=False, used_s=0)  # off by default
    assert not wants_synthetic(few, ON, running=True, used_s=3)
    assert not wants_synthetic(few, ON, running=False, used_s=30)
    assert not wants_synthetic(enough, ON, running=False, used_s=0)
    assert not wants_synthetic(failing, ON, running=False, used_s=0)


def _exposition(user: dict[str, int], synthetic: dict[str, int], slow: int) -> str:
    """A worker's /metrics: user and synthetic counters by status, and one latency bucket
    each (``slow`` synthetic requests above 0.5 s)."""
    lines = ["# TYPE falcon_requests_total counter"]
    for status, n in user.items():
        lines.append(f'falcon_requests_total{{worker="c1",release="r2",endpoint="/infer",'
                     f'status="{status}",cache="miss"}} {n}')  # fmt: skip
    lines.append("# TYPE falcon_synthetic_requests_total counter")
    for status, n in synthetic.items():
        lines.append(f'falcon_synthetic_requests_total{{worker="c1",release="r2",'
                     f'status="{status}"}} {n}')  # fmt: skip
    lines.append("# TYPE falcon_synthetic_request_duration_seconds histogram")
    total = sum(synthetic.values())
    for le, n in (("0.5", total - slow), ("+Inf", total)):
        lines.append(f'falcon_synthetic_request_duration_seconds_bucket{{worker="c1",'
                     f'release="r2",le="{le}"}} {n}')  # fmt: skip
    lines.append(
        f'falcon_synthetic_request_duration_seconds_count{{worker="c1",release="r2"}} {total}'
    )
    lines.append('falcon_synthetic_request_duration_seconds_sum{worker="c1",release="r2"} 1')
    return "\n".join(lines) + "\n"


def test_the_judges_window_adds_synthetic_requests_to_the_canarys_own(tmp_path: Path) -> None:
    store = SLIStore(tmp_path / "sli.db", retention_s=3600)
    store.ingest_exposition(100.0, _exposition({"200": 5}, {"200": 0}, 0), worker="c1",
                            release="r2")  # fmt: skip
    store.ingest_exposition(110.0, _exposition({"200": 9}, {"200": 90, "503": 10}, 10),
                            worker="c1", release="r2")  # fmt: skip
    stats = release_window(store, EventList([]), None, "r2", start=101.0, end=111.0)
    # user 9 - 5 = 4, synthetic 100 (10 of them 503): the judge sees 104 requests, 10 errors
    assert (stats.requests, stats.errors, stats.synthetic_requests) == (104, 10, 100)
    # p95 of 100 observations, 90 under 0.5 s: rank 95 falls in the +Inf bucket -> 0.5 s
    assert stats.p95_ms == 500.0
    store.close()


def test_the_rollout_line_says_what_synthetic_traffic_the_canary_got() -> None:
    from falcon_platform.cli.releases_cli import rollout_line

    base = {"release": "r2", "from_release": "r1", "phase": "promoted", "done": True,
            "reason": "every step passed", "steps": [], "synthetic": None}  # fmt: skip
    assert "synthetic" not in rollout_line(base)
    summary = {"rps": 20.0, "workers": 1, "sent": 62, "ok": 62, "failed": 0}
    assert rollout_line({**base, "synthetic": summary}).endswith(
        "; synthetic traffic: 62 requests at 20/s (0 failed)"
    )


async def _unix_server(
    path: Path,
    *,
    answer: bool,
    connections: set[asyncio.StreamWriter],
    answered: asyncio.Event | None = None,
) -> asyncio.Server:
    """A UNIX-socket HTTP server: answers every request 200 (keep-alive; ``answered`` is set
    after the tenth), or never answers. Each accepted connection goes into ``connections``
    (``Server.close`` leaves them open: :func:`_close_all` closes them)."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if answer:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    await writer.drain()
                    nonlocal count
                    count += 1
                    if count >= 10 and answered is not None:
                        answered.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:  # also when the test's loop cancels a hung handler: else the writer is
            writer.close()  # collected after the loop closed ("loop is closed", a later test fails)

    return await asyncio.start_unix_server(handle, path=str(path))


async def _close_all(servers: list[asyncio.Server], connections: set[asyncio.StreamWriter]) -> None:
    """Close the listeners and every accepted connection while the loop runs (a hung server's
    connections would otherwise be collected after the loop closed: unclosed transports)."""
    for server in servers:
        server.close()
    for writer in connections:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in connections), return_exceptions=True)
    for server in servers:
        await server.wait_closed()


@pytest.mark.serial  # measures how long stop() takes
async def test_synthetic_traffic_reaches_each_socket_and_stops_at_once_on_a_hung_one(
    tmp_path: Path,
) -> None:
    """Requests go to the admin sockets given (the load engine over UNIX sockets), split
    evenly; stop() returns within its grace even when a canary never answers (an abort must
    not wait for a hung canary), counting the unanswered ones as failed."""
    answered = asyncio.Event()
    connections: set[asyncio.StreamWriter] = set()
    good = await _unix_server(
        tmp_path / "c1.sock", answer=True, connections=connections, answered=answered
    )
    hung = await _unix_server(tmp_path / "c2.sock", answer=False, connections=connections)
    try:
        traffic = SyntheticTraffic(rps=40, max_s=30)
        traffic.start([tmp_path / "c1.sock", tmp_path / "c2.sock"])
        assert traffic.running
        await asyncio.wait_for(answered.wait(), timeout=10)
        t0 = time.monotonic()
        summary = await traffic.stop()
        stopped_in = time.monotonic() - t0
    finally:
        await _close_all([good, hung], connections)
    assert not traffic.running
    assert stopped_in < STOP_GRACE_S + 1.0, stopped_in
    assert summary["workers"] == 2
    assert summary["ok"] >= 10
    assert summary["statuses"] == {"200": summary["ok"]}  # only the answering socket answered
    assert summary["failed"] == summary["sent"] - summary["ok"] > 0  # the hung one's requests
