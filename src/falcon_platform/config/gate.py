"""The gate: the same policy for ``falcon config check``, ``falcon up`` and ``falcon worker``.

At start::

    outcome = enforce_gate(settings, spec, override_reason=args.override_gate,
                           allow_faults=args.allow_faults)
    if outcome.overridden:                      # prod with violations, started anyway
        journal.append("gate_override", outcome.to_dict()); log.error(outcome.summary())
    for warning in outcome.warnings: log.warning(warning.line())

``prod`` with violations raises ``PolicyViolationError`` naming all of them, unless an
override reason is given; ``staging`` only warns; ``dev`` checks types and ranges only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from falcon_platform.config.machine import MachineFacts, read_machine_facts
from falcon_platform.config.policy import Violation, evaluate_policy
from falcon_platform.config.settings import Settings, try_load_settings
from falcon_platform.config.spec import Spec
from falcon_platform.config.specfile import spec_problems
from falcon_platform.errors import ConfigError, PolicyViolationError, ReleaseRefusedError


@dataclass(frozen=True)
class GateOutcome:
    """What the gate decided; ``to_dict()`` is the journal entry's details."""

    profile: str
    errors: tuple[Violation, ...] = ()
    warnings: tuple[Violation, ...] = ()
    override_reason: str | None = None

    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def overridden(self) -> bool:
        """Errors were found and the operator started anyway, with a reason."""
        return bool(self.errors) and self.override_reason is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "passed": self.passed,
            "overridden": self.overridden,
            "override_reason": self.override_reason,
            "violations": [v.to_dict() for v in self.errors],
            "warnings": [v.to_dict() for v in self.warnings],
        }

    def summary(self) -> str:
        if self.overridden:
            rules = ", ".join(sorted({v.rule for v in self.errors}))
            return (
                f"CONFIG GATE OVERRIDDEN for profile {self.profile} "
                f"({len(self.errors)} violations: {rules}); reason: {self.override_reason}"
            )
        if self.errors:
            return f"config gate: {len(self.errors)} violations for profile {self.profile}"
        return f"config gate passed for profile {self.profile} ({len(self.warnings)} warnings)"


def format_violations(violations: list[Violation] | tuple[Violation, ...]) -> str:
    return "\n".join(f"  - {v.line()}" for v in violations)


def judge(violations: list[Violation], *, profile: str, override_reason: str | None) -> GateOutcome:
    """Pure: split findings into errors and warnings and apply the override."""
    errors = tuple(v for v in violations if v.severity == "error")
    warnings = tuple(v for v in violations if v.severity == "warning")
    return GateOutcome(profile, errors, warnings, override_reason if errors else None)


def enforce_gate(
    settings: Settings,
    spec: Spec,
    *,
    override_reason: str | None,
    allow_faults: bool,
    machine: MachineFacts | None = None,
    workers: int | None = None,
) -> GateOutcome:
    """Run the policy; raise ``PolicyViolationError`` listing every error unless overridden.

    ``override_reason`` must be a non-blank sentence (it is journalled); ``machine``
    defaults to this machine's facts (``/proc/meminfo``, cgroup limit, cores). ``workers``
    is the number of worker processes that will share the machine when it is not
    ``settings.workers``: a lone ``falcon worker`` (one per Kubernetes pod) passes 1, so its
    limit is compared with the pod's cgroup memory rather than node cores x limit.
    """
    if override_reason is not None and not override_reason.strip():
        raise ConfigError("--override-gate needs a reason, e.g. --override-gate 'INC-... hotfix'")
    facts = machine if machine is not None else read_machine_facts()
    violations = evaluate_policy(settings, spec, facts, allow_faults=allow_faults, workers=workers)
    outcome = judge(
        violations,
        profile=settings.profile,
        override_reason=override_reason.strip() if override_reason else None,
    )
    if outcome.errors and not outcome.overridden:
        raise PolicyViolationError(
            f"refusing to start: the {settings.profile} configuration fails the gate with "
            f"{len(outcome.errors)} violation(s):\n{format_violations(outcome.errors)}\n"
            "Fix them (see `falcon config check` and the runbook), or start anyway with "
            "--override-gate '<reason>' (journalled)."
        )
    return outcome


@dataclass(frozen=True)
class CheckReport:
    """Everything ``falcon config check`` found: problems loading, then the policy."""

    profile: str
    violations: list[Violation] = field(default_factory=list)
    settings: Settings | None = None
    spec: Spec | None = None

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "ok": not self.errors,
            "errors": [v.to_dict() for v in self.errors],
            "warnings": [v.to_dict() for v in self.warnings],
        }


def check_config(
    *,
    profile: str | None,
    env_file: Path | None,
    spec_path: Path | None,
    machine: MachineFacts,
    allow_faults: bool = False,
) -> CheckReport:
    """Load settings and spec and evaluate the policy, collecting every problem."""
    settings, problems = try_load_settings(profile=profile, env_file=env_file)
    violations = [
        Violation(
            p.kind,
            p.variable,
            p.value,
            f"{p.why} (from {p.source}).",
            "see `falcon config show` for the accepted settings"
            if p.kind == "unknown-variable"
            else "give a value of the right type within the documented range",
        )
        for p in problems
    ]
    if spec_path is None and settings is not None and settings.sources["spec_path"] != "default":
        spec_path = settings.spec_path  # set on purpose: it must exist
    spec, spec_errors = spec_problems(spec_path)
    violations.extend(
        Violation(
            "spec-invalid",
            str(spec_path or "falcon.yaml"),
            "-",
            message,
            "edit the spec file",
        )
        for message in spec_errors
    )
    chosen = settings.profile if settings is not None else (profile or "dev")
    if settings is not None:
        # A broken spec must not hide the settings' own violations (every problem at once):
        # judge them against the default spec, beside the spec-invalid error.
        judged = spec if spec is not None else Spec()
        violations.extend(evaluate_policy(settings, judged, machine, allow_faults=allow_faults))
    return CheckReport(chosen, violations, settings, spec)


# Settings that belong to the deployment, not to a release: a restart or a deploy cannot change
# them (the profile decides which policy applies; the rest are where the supervisor lives).
DEPLOYMENT_FIXED = (
    "FALCON_PROFILE",
    "FALCON_HOME",
    "FALCON_HOST",
    "FALCON_PORT",
    "FALCON_CONTROL_HOST",
    "FALCON_CONTROL_PORT",
    "FALCON_CONTROL_SOCKET",
    "FALCON_WORKER_ID",
    "FALCON_RELEASE",
)
ReleasePath = Literal["up", "restart", "deploy"]


@dataclass(frozen=True)
class ReleaseVerdict:
    """What the gate decided about the settings a set of new workers will run with."""

    path: ReleasePath
    profile: str
    env_keys: tuple[str, ...]
    outcome: GateOutcome | None  # None: refused before the policy (fixed setting, bad value)
    refused: str | None  # why the workers must not start; None: they may
    settings: Settings | None = None

    @property
    def allowed(self) -> bool:
        return self.refused is None

    def to_dict(self) -> dict[str, Any]:
        """The journal entry (``gate_refused`` / ``gate_override``): no secret, no value."""
        return {
            "path": self.path,
            "profile": self.profile,
            "env_keys": list(self.env_keys),
            "refused": self.refused,
            **(self.outcome.to_dict() if self.outcome is not None else {}),
        }

    def raise_if_refused(self) -> None:
        if self.refused is not None:
            raise ReleaseRefusedError(self.refused)


def judge_release_env(
    *,
    path: ReleasePath,
    profile: str,
    env: Mapping[str, str],
    base_environ: Mapping[str, str],
    env_file: Path | None,
    cwd: Path,
    spec: Spec,
    machine: MachineFacts,
    override_reason: str | None,
    allow_faults: bool,
    workers: int | None = None,
) -> ReleaseVerdict:
    """The gate on the *merged* settings new workers will run with, for every path that
    starts workers: ``falcon up`` (``env`` empty), a restart or a deploy (``env`` = the
    release's ``FALCON_*`` overrides). Pure: the caller passes the environment, the working
    directory and the machine's facts.

    The workers' settings are loaded exactly as a worker loads them: the deployment's
    ``profile`` (pinned: a worker gets ``--profile``), then ``env_file``, then
    ``base_environ`` updated with ``env``. ``env`` may not change a deployment-wide setting
    (``DEPLOYMENT_FIXED``: the profile above all, the seed incident's path). Violations refuse
    unless ``override_reason`` is given (journaled by the caller as ``gate_override``)::

        verdict = judge_release_env(path="restart", profile="prod", env={"FALCON_FAULTS": "x"},
                                    base_environ=os.environ, env_file=None, cwd=Path.cwd(),
                                    spec=spec, machine=facts, override_reason=None,
                                    allow_faults=False)
        verdict.refused   # "refusing the restart: the prod configuration fails the gate ..."
    """
    keys = tuple(sorted(env))
    what = {"up": "to start", "restart": "the restart", "deploy": "the deploy"}[path]

    def refuse(why: str, outcome: GateOutcome | None = None) -> ReleaseVerdict:
        return ReleaseVerdict(path, profile, keys, outcome, f"refusing {what}: {why}")

    if override_reason is not None and not override_reason.strip():
        return refuse("--override-gate needs a reason, e.g. --override-gate 'INC-... hotfix'")
    foreign = [k for k in keys if not k.startswith("FALCON_")]
    if foreign:
        return refuse(f"only FALCON_* variables can change in a release, not {foreign}")
    fixed = [k for k in keys if k in DEPLOYMENT_FIXED]
    if fixed:
        shown = ", ".join(f"{k}={env[k]!r}" if k != "FALCON_PROFILE" else k for k in fixed)
        return refuse(
            f"{shown} cannot change in a running {profile} deployment (the profile decides "
            "which policy applies; the others are where the supervisor lives). Start a new "
            "deployment with `falcon up` for that."
        )
    try:
        settings, problems = try_load_settings(
            profile=profile, env_file=env_file, environ={**base_environ, **env}, cwd=cwd
        )
    except ConfigError as exc:
        return refuse(exc.detail)
    if settings is None:
        return refuse("; ".join(p.message() for p in problems))
    found = evaluate_policy(settings, spec, machine, allow_faults=allow_faults, workers=workers)
    reason = override_reason.strip() if override_reason else None
    outcome = judge(found, profile=settings.profile, override_reason=reason)
    if outcome.errors and not outcome.overridden:
        return refuse(
            f"the {settings.profile} configuration the new workers would run with fails the "
            f"gate with {len(outcome.errors)} violation(s):\n"
            f"{format_violations(outcome.errors)}\n"
            "Fix them (see `falcon config check` and the runbook), or pass "
            "--override-gate '<reason>' (journalled).",
            outcome,
        )
    return ReleaseVerdict(path, profile, keys, outcome, None, settings)
