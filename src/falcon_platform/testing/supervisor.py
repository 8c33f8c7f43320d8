"""Test helpers for the runtime: a real `falcon up` in a subprocess, and open-model load.

Used by ``tests/integration/test_supervisor_*.py`` and ``tests/e2e/test_supervisor_*.py``::

    sup = start_supervisor(tmp_path, workers=2, spec_yaml=SHORT_BACKOFF, model_dir=model_dir)
    with LoadGenerator(sup.url, rps=200) as load:      # falcon_platform.loadtest underneath
        time.sleep(10)
    assert load.result().success_ratio >= 0.995
    sup.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from falcon_platform.testing.net import free_port


def train_model(home: Path) -> Path:
    """Train the default model once into ``home`` and return its directory."""
    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model

    settings = Settings(home=home)
    return Path(ensure_model(settings))


@dataclass
class RunningSupervisor:
    proc: subprocess.Popen[bytes]
    home: Path
    port: int
    control_port: int
    env: dict[str, str]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``falcon <args>`` against this supervisor (same FALCON_* environment)."""
        return subprocess.run(
            [sys.executable, "-m", "falcon_platform.cli", *args],
            env={**self.env, "COLUMNS": "200"},  # Rich wraps tables to 80 columns without a TTY
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.home.parent,
        )

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(self.control_url + "/status", timeout=10).json()
        return body

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind} if kind else {}
        found: list[dict[str, Any]] = httpx.get(
            self.control_url + "/events", params=params, timeout=10
        ).json()["events"]
        return found

    def wait_for_event(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        kind: str,
        timeout: float,
    ) -> dict[str, Any]:
        """Poll the journal until an event of ``kind`` matches ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                for event in self.events(kind):
                    if predicate(event):
                        return event
            time.sleep(0.2)
        raise AssertionError(f"no matching {kind} event within {timeout}s:\n{self.log_tail()}")

    def wait_until(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
    ) -> dict[str, Any]:
        """Poll /status until ``predicate(status)``; raise naming ``what`` and the last status."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"supervisor exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                last = self.status()
                if predicate(last):
                    return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status: {last}")

    def wait_for_json(
        self, path: str, predicate: Callable[[Any], bool], *, timeout: float, what: str
    ) -> Any:
        """Poll ``GET <control API><path>`` (from loopback: no token) until ``predicate(body)``;
        return the body, or raise naming ``what`` and the last body."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                last = httpx.get(self.control_url + path, timeout=10).json()
                if predicate(last):
                    return last
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last {path}: {last}")

    def wait_ready(self, n: int, timeout: float = 120.0) -> dict[str, Any]:
        return self.wait_until(
            lambda s: sum(1 for w in s["workers"] if w["state"] == "ready") >= n,
            timeout=timeout,
            what=f"{n} ready workers",
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C (SIGINT) and wait; SIGKILL the group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def request_log_ids(self) -> dict[str, int]:
        """The client's X-Request-ID -> rows in the embedded SQLite request log (the row's key
        is the server's own id; the one a client sent is ``client_request_id``)."""
        db = self.home / "data" / "falcon.db"
        with contextlib.closing(sqlite3.connect(str(db))) as conn:
            return dict(
                conn.execute(
                    "SELECT client_request_id, COUNT(*) FROM request_log "
                    "WHERE client_request_id IS NOT NULL GROUP BY client_request_id"
                ).fetchall()
            )


def start_supervisor(
    tmp_path: Path,
    *,
    workers: int = 2,
    spec_yaml: str | None = None,
    model_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = (),
    wait_ready: bool = True,
    ready_timeout: float = 120.0,
) -> RunningSupervisor:
    """Start ``falcon up`` (foreground mode, in its own process group) on free ports."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    port, control_port = free_port(), free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    full_env.update(
        {
            "FALCON_HOME": str(home),
            "FALCON_PORT": str(port),
            "FALCON_CONTROL_PORT": str(control_port),
            "FALCON_LOG_LEVEL": "WARNING",
            "FALCON_SHUTDOWN_GRACE_S": "10",
            "FALCON_SLI_SCRAPE_INTERVAL_S": "0.5",
        }
    )
    if spec_yaml is not None:
        spec_path = tmp_path / "falcon.yaml"
        spec_path.write_text(spec_yaml)
        full_env["FALCON_SPEC_PATH"] = str(spec_path)
    else:
        # The default spec. (An explicit FALCON_SPEC_PATH must exist: config.specfile.)
        spec_path = tmp_path / "falcon.yaml"
        spec_path.write_text("{}\n")
        full_env["FALCON_SPEC_PATH"] = str(spec_path)
    if model_dir is not None:
        full_env["FALCON_MODEL_PATH"] = str(model_dir)
    full_env.update(env or {})
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "falcon_platform.cli",
                "up",
                "--workers",
                str(workers),
                *args,
            ],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            start_new_session=True,
        )
    sup = RunningSupervisor(proc, home, port, control_port, full_env, log_path)
    if wait_ready:
        try:
            sup.wait_ready(workers, timeout=ready_timeout)
        except BaseException:
            sup.stop(timeout=20)
            raise
    return sup


@dataclass
class LoadTally:
    """What a :class:`LoadGenerator` saw, in the terms the supervisor tests assert on."""

    ok_ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # transport errors, and "dropped"
    elapsed_s: float = 0.0
    p99_ms: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return len(self.ok_ids)

    @property
    def failed(self) -> int:
        return self.total - self.ok

    @property
    def success_ratio(self) -> float:
        return self.ok / self.total if self.total else 0.0

    @property
    def rps(self) -> float:
        return self.total / max(1e-9, self.elapsed_s)

    def describe(self) -> str:
        return (
            f"{self.total} requests at {self.rps:.0f} rps, ok {self.ok} ({self.success_ratio:.4%}), "
            f"p99 {self.p99_ms:.1f} ms, statuses {self.statuses}, errors {self.errors}"
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """One request a recording :class:`LoadGenerator` saw (``record=True``)."""

    t: float  # seconds since the load started, when the request was scheduled
    status: int  # 0 = transport error
    latency_ms: float  # from the scheduled start (open model)
    request_id: str
    cache_hit: bool  # a 2xx body's "cache_hit"
    degraded: str  # the falcon-degraded header ("redis", ...), "" when not degraded


class LoadGenerator:
    """POST /infer at a constant ``rps`` until the block ends (``falcon_platform.loadtest``).

    Open model: requests go out on schedule whatever the server does, so a failed or stalled
    worker shows up as errors or latency, never as requests quietly not sent; one that cannot
    get a connection (``connections`` in flight) is counted as ``errors["dropped"]``. Each
    request carries a unique ``X-Request-ID`` (``ok_ids`` lists those answered 2xx) and a
    fresh connection (``Connection: close``), so a draining worker never holds an idle
    keep-alive connection a client could race against: what is measured is the server.

    ``texts`` sends those texts in turn instead of unique ones (a workload the response cache
    can hit); ``prefix`` fixes the request-id prefix (to find the rows in the request log);
    ``record`` keeps a :class:`Sample` per request (``samples()``), timed by ``now()``.
    """

    def __init__(
        self,
        url: str,
        *,
        rps: float,
        timeout: float = 10.0,
        connections: int = 256,
        keep_alive: bool = False,  # bench/flood.py: a client that reuses its connections
        texts: Sequence[str] | None = None,
        prefix: str | None = None,
        record: bool = False,
    ) -> None:
        from falcon_platform.loadtest import LoadOptions, LoadPlan

        self.url = url
        self._prefix = prefix if prefix is not None else f"lg{uuid.uuid4().hex[:8]}-"
        self._plan = LoadPlan.open_ended(rps)
        self._options = LoadOptions(
            connections=connections,
            timeout_s=timeout,
            texts="corpus" if texts is not None else "unique",
            corpus=tuple(texts) if texts is not None else None,
            keep_alive=keep_alive,
            request_id_prefix=self._prefix,
        )
        self._record = record
        self._ok: list[int] = []
        self._samples: list[Sample] = []
        self._run: Any = None
        self._tally = LoadTally()

    def _seen(self, outcome: Any) -> None:
        ok = 200 <= outcome.status < 300
        if ok:
            self._ok.append(outcome.index)  # list.append is atomic under the GIL
        if self._record:
            hit = ok and bool(json.loads(outcome.body).get("cache_hit"))
            self._samples.append(
                Sample(
                    t=outcome.scheduled_t,
                    status=outcome.status,
                    latency_ms=outcome.latency_s * 1000,
                    request_id=f"{self._prefix}{outcome.index:08d}",
                    cache_hit=hit,
                    degraded=outcome.headers.get("falcon-degraded", ""),
                )
            )

    def __enter__(self) -> LoadGenerator:
        from falcon_platform.loadtest import start_load

        self._run = start_load(self._plan, self.url, options=self._options,
                               on_response=self._seen, capture=self._record)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        result = self._run.stop()
        errors = dict(result.transport_errors)
        if result.dropped:
            errors["dropped"] = result.dropped
        self._tally = LoadTally(
            ok_ids=[f"{self._prefix}{i:08d}" for i in sorted(self._ok)],
            statuses=dict(result.statuses),
            errors=errors,
            elapsed_s=result.elapsed_s,
            p99_ms=result.latency.p99_ms,
        )

    def now(self) -> float:
        """Seconds since the load started (the clock of every :attr:`Sample.t`)."""
        return float(self._run.now()) if self._run is not None else 0.0

    def result(self) -> LoadTally:
        return self._tally

    def samples(self) -> list[Sample]:
        """Every request seen (``record=True``), in the order they were scheduled."""
        return sorted(self._samples, key=lambda s: s.t)
