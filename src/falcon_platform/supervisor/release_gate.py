"""The gate for every path that starts workers, as the supervisor runs it.

``config.gate.judge_release_env`` decides (pure); this shell gives it what a new worker will
really get (the supervisor's environment, working directory, env file and pinned profile, the
machine's facts now) and journals what it decided::

    gate = ReleaseGate(profile="prod", env_file=Path("/etc/falcon/prod.env"), spec=spec)
    verdict = gate.judge({"FALCON_LOG_LEVEL": "DEBUG"}, path="restart", override_reason=None,
                         allow_faults=False, workers=2)
    record_verdict(journal, verdict, release="r2")     # gate_refused / gate_override
    verdict.raise_if_refused()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from falcon_platform.config.gate import ReleasePath, ReleaseVerdict, judge_release_env
from falcon_platform.config.machine import MachineFacts, read_machine_facts
from falcon_platform.config.spec import Spec
from falcon_platform.events.journal import EventJournal, EventKind

log = logging.getLogger("falcon.supervisor")


class ReleaseGate:
    def __init__(
        self,
        *,
        profile: str,
        env_file: Path | None,
        spec: Spec,
        base_environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        machine: Callable[[], MachineFacts] = read_machine_facts,
    ) -> None:
        self.profile = profile
        self.env_file = env_file.resolve() if env_file is not None else None
        self.spec = spec
        self.base_environ = dict(os.environ if base_environ is None else base_environ)
        self.cwd = cwd if cwd is not None else Path.cwd()
        self._machine = machine

    def judge(
        self,
        env: Mapping[str, str],
        *,
        path: ReleasePath,
        override_reason: str | None,
        allow_faults: bool,
        workers: int | None,
    ) -> ReleaseVerdict:
        return judge_release_env(
            path=path,
            profile=self.profile,
            env=env,
            base_environ=self.base_environ,
            env_file=self.env_file,
            cwd=self.cwd,
            spec=self.spec,
            machine=self._machine(),
            override_reason=override_reason,
            allow_faults=allow_faults,
            workers=workers,
        )

    def worker_args(self) -> list[str]:
        """What every worker is started with so it loads what was judged (the profile pinned:
        an environment can never switch a worker to another profile)."""
        args = ["--profile", self.profile]
        if self.env_file is not None:
            args += ["--env-file", str(self.env_file)]
        return args


def gate_args(
    verdict: ReleaseVerdict, *, override_reason: str | None, allow_faults: bool
) -> tuple[str, ...]:
    """The worker arguments that carry this release's own gate decision (its workers check
    again at boot, with the override given for *this* release, not for another)."""
    args: tuple[str, ...] = ()
    if verdict.outcome is not None and verdict.outcome.overridden and override_reason:
        args += ("--override-gate", override_reason.strip())
    if allow_faults:
        args += ("--allow-faults",)
    return args


def record_verdict(journal: EventJournal, verdict: ReleaseVerdict, *, release: str | None) -> None:
    """Journal a refusal (``gate_refused``) or an override (``gate_override``); say it loudly."""
    if verdict.refused is not None:
        journal.record(EventKind.GATE_REFUSED, release=release, details=verdict.to_dict())
        log.error("config gate refused the %s: %s", verdict.path, verdict.refused.splitlines()[0])
    elif verdict.outcome is not None and verdict.outcome.overridden:
        journal.record(EventKind.GATE_OVERRIDE, release=release, details=verdict.to_dict())
        log.error("%s (%s)", verdict.outcome.summary(), verdict.path)
