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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falcon_platform.config.machine import MachineFacts, read_machine_facts
from falcon_platform.config.policy import Violation, evaluate_policy
from falcon_platform.config.settings import Settings, try_load_settings
from falcon_platform.config.spec import Spec
from falcon_platform.config.specfile import spec_problems
from falcon_platform.errors import ConfigError, PolicyViolationError


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
    if settings is not None and spec is not None:
        violations.extend(evaluate_policy(settings, spec, machine, allow_faults=allow_faults))
    return CheckReport(chosen, violations, settings, spec)
