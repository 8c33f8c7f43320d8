"""The deployment policy: pure rules over (settings, spec, machine facts) -> violations.

Each rule has an id (the runbook has one subsection per id), says why the value is
dangerous and how to fix it, and never shows a secret. ``prod`` refuses (errors),
``staging`` warns where ``prod`` refuses, ``dev`` only gets type and range checks::

    violations = evaluate_policy(settings, spec, MachineFacts(24000, 2), allow_faults=False)
    [v.rule for v in violations if v.severity == "error"]   # e.g. ["faults-enabled"]
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from falcon_platform.config.faults import parse_faults
from falcon_platform.config.machine import MachineFacts
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import ConfigError

Severity = Literal["error", "warning"]

# Placeholders shipped in config/*.env(.example) and other well-known defaults: a secret
# equal to one of these is as good as none. Tests pin that every template placeholder is here.
TEMPLATE_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "change-me-admin-token",
        "change-me-database-password",
        "change-me-redis-password",
        "dev-admin-token-not-secret",
        "falcon-dev",
        "password",
        "postgres",
        "secret",
        "admin",
        "falcon",
        "token",
    }
)
MIN_TOKEN_CHARS = 16
# Words that make a secret a placeholder wherever they appear in it (compared after URL-decoding,
# lower-casing and dropping separators): "change-me-admin-token-2", "changemechangeme" and
# "change%2Dme" are the template's placeholder with a twist, not secrets.
PLACEHOLDER_WORDS = (
    "changeme",
    "replaceme",
    "placeholder",
    "example",
    "password",
    "passw0rd",
    "secret",
    "notsecret",
    "qwerty",
    "letmein",
    "123456",
)
# A secret must take at least 10**12 guesses by zxcvbn's estimate (dictionary words, repeats,
# sequences and keyboard runs count for little): `secrets.token_urlsafe(32)` scores ~10**43,
# 16 random hex digits ~10**15, "aaaaaaaaaaaaaaaa" 10**2.3, "password123" 10**2.8.
MIN_SECRET_GUESSES_LOG10 = 12.0
_SEPARATORS = re.compile(r"[-_.\s:/+~]")
# Share of the machine's memory the workers may take; the rest is for the supervisor, the OS
# and the page cache (the seed's workers all died together when the node ran out).
MEMORY_BUDGET_FRACTION = 0.9
# Request limits tighter than the schema's maxima; above these one request can hurt a worker.
REQUEST_LIMITS: dict[str, float] = {
    "max_body_bytes": 8 * 1_048_576,
    "max_text_chars": 100_000,
    "max_batch_items": 1024,
    "queue_max": 100_000,
    "inference_timeout_ms": 30_000,
}


@dataclass(frozen=True)
class Violation:
    """One finding: rule id, variable, bad value (secrets redacted), why, fix, severity."""

    rule: str
    variable: str
    value: str
    why: str
    fix: str
    severity: Severity = "error"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        return f"[{self.rule}] {self.variable}={self.value}: {self.why} Fix: {self.fix}"


@dataclass(frozen=True)
class _Context:
    settings: Settings
    spec: Spec
    machine: MachineFacts
    allow_faults: bool
    workers: int | None  # processes on this machine when not settings.workers (lone worker: 1)


Rule = Callable[[_Context], Iterator[Violation]]


def _secret(value: object) -> str:
    return "<unset>" if value is None else "<redacted>"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _faults(ctx: _Context) -> Iterator[Violation]:
    if not ctx.settings.faults.strip():
        return
    try:
        parse_faults(ctx.settings.faults)
    except ConfigError as exc:
        yield Violation(
            "faults-invalid",
            "FALCON_FAULTS",
            repr(ctx.settings.faults),
            f"the fault list does not parse: {exc.detail}",
            "correct the list or leave FALCON_FAULTS empty",
        )
        return
    yield Violation(
        "faults-enabled",
        "FALCON_FAULTS",
        repr(ctx.settings.faults),
        "fault injection degrades real traffic on purpose (the seed incident was a leak "
        "switched on in production).",
        "remove FALCON_FAULTS; for a deliberate drill pass --allow-faults on the command line",
        "warning" if ctx.allow_faults else "error",
    )


def _debug_switches(ctx: _Context) -> Iterator[Violation]:
    for name, value in sorted(ctx.settings.debug_switches.items()):
        yield Violation(
            "debug-switch",
            name,
            value,
            "a debug switch is on; debug code paths keep memory, log secrets or slow requests "
            "(DEBUG_MEMORY_GROWTH=true caused the seed outage).",
            f"delete {name} from the env file/environment; Falcon's only fault switch is "
            "FALCON_FAULTS, refused in prod",
        )


def _log_level(ctx: _Context) -> Iterator[Violation]:
    if ctx.settings.log_level == "DEBUG":
        yield Violation(
            "log-level-debug",
            "FALCON_LOG_LEVEL",
            "DEBUG",
            "DEBUG logs cost CPU and disk under load and may record request contents.",
            "set FALCON_LOG_LEVEL=INFO (or WARNING)",
        )


def _admin_token(ctx: _Context) -> Iterator[Violation]:
    token = ctx.settings.admin_token
    if token is None:
        yield Violation(
            "admin-token-missing",
            "FALCON_ADMIN_TOKEN",
            "<unset>",
            "without a token anyone who reaches the control API can deploy or stop workers.",
            "set FALCON_ADMIN_TOKEN to a random value: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'",
        )
        return
    weakness = secret_weakness(token.get_secret_value())
    if weakness is not None:
        yield Violation(
            "admin-token-default",
            "FALCON_ADMIN_TOKEN",
            "<redacted>",
            f"the token is weak: {weakness}; anyone who guesses it can deploy or stop workers.",
            "generate a new one: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )


def _database_password(ctx: _Context) -> Iterator[Violation]:
    url = ctx.settings.database_url
    password = urlsplit(url.get_secret_value()).password if url is not None else None
    if not password:
        yield Violation(
            "database-password-missing",
            "FALCON_DATABASE_URL",
            _secret(url),
            "production keeps the request log in PostgreSQL with a password; without one the "
            "log stays on one worker's disk or the database is open.",
            "set FALCON_DATABASE_URL=postgresql://falcon:<password>@<host>:5432/falcon",
        )
    elif (weakness := secret_weakness(_decoded(password))) is not None:
        yield Violation(
            "database-password-default",
            "FALCON_DATABASE_URL",
            "<redacted>",
            f"the database password is weak: {weakness}.",
            "set a generated password in FALCON_DATABASE_URL (and on the database): "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'",
        )


def _redis_password(ctx: _Context) -> Iterator[Violation]:
    url = ctx.settings.redis_url
    if url is None:
        return  # no Redis: the embedded cache and the machine's SQLite idempotency store
    password = urlsplit(url.get_secret_value()).password
    if not password:
        yield Violation(
            "redis-password-missing",
            "FALCON_REDIS_URL",
            "<redacted>",
            "Redis without a password lets anyone who reaches it read and replace stored "
            "idempotent answers and cached predictions.",
            "set requirepass on Redis and FALCON_REDIS_URL=redis://:<password>@<host>:6379/0",
        )
    elif (weakness := secret_weakness(_decoded(password))) is not None:
        yield Violation(
            "redis-password-default",
            "FALCON_REDIS_URL",
            "<redacted>",
            f"the Redis password is weak: {weakness}.",
            "set a generated password in FALCON_REDIS_URL (and requirepass on Redis)",
        )


def _decoded(text: str) -> str:
    """A URL's password as the server sees it: percent-decoding undone (twice-encoded too)."""
    for _ in range(3):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def secret_weakness(secret: str) -> str | None:
    """Why ``secret`` is too weak for production, or None (pure; never returns the secret).

    >>> secret_weakness("change-me-admin-token-2")
    'it contains the placeholder word "changeme"'
    >>> secret_weakness("aaaaaaaaaaaaaaaa")
    'it is guessable (about 10^2 guesses; at least 10^12 needed)'
    """
    if any(ch.isspace() for ch in secret):
        return "it contains whitespace (a copy-paste accident, or padding)"
    plain = _decoded(secret)
    if plain.strip().lower() in TEMPLATE_SECRETS:
        return "it is a template placeholder published in the repository"
    folded = _SEPARATORS.sub("", plain.lower())
    for word in PLACEHOLDER_WORDS:
        if word in folded:
            return f'it contains the placeholder word "{word}"'
    if len(plain) < MIN_TOKEN_CHARS:
        return f"it is shorter than {MIN_TOKEN_CHARS} characters"
    # zxcvbn (Dropbox's estimator, pure Python) is imported here: only the gate needs it.
    from zxcvbn import zxcvbn

    guesses_log10 = float(zxcvbn(plain[:100])["guesses_log10"])
    if guesses_log10 < MIN_SECRET_GUESSES_LOG10:
        return (
            f"it is guessable (about 10^{int(guesses_log10)} guesses; at least "
            f"10^{int(MIN_SECRET_GUESSES_LOG10)} needed)"
        )
    return None


def _memory(ctx: _Context) -> Iterator[Violation]:
    settings, spec, machine = ctx.settings, ctx.spec, ctx.machine
    limit = (
        settings.memory_limit_mb
        if settings.memory_limit_mb is not None
        else spec.workers.memory_limit_mb
    )
    if limit <= 0:
        yield Violation(
            "memory-limit-missing",
            "FALCON_MEMORY_LIMIT_MB",
            str(limit),
            "without a per-worker limit one leaking worker takes the whole machine down.",
            "set FALCON_MEMORY_LIMIT_MB (or workers.memory_limit_mb in falcon.yaml), e.g. 512",
        )
        return
    if ctx.workers is not None:
        workers = ctx.workers
    else:
        workers = settings.workers if settings.workers is not None else machine.cpu_count
    # A lone worker in its own container (one per Kubernetes pod): the container's limit is
    # the worker's hard limit, enforced by the kernel (OOMKilled, 137), and there is no
    # supervisor or other worker to leave room for.
    lone_in_container = ctx.workers == 1 and machine.cgroup_limited
    fraction = 1.0 if lone_in_container else MEMORY_BUDGET_FRACTION
    budget = int(machine.memory_mb * fraction)
    if workers * limit > budget:
        yield Violation(
            "memory-overcommit",
            "FALCON_WORKERS",
            f"{workers} x {limit} MB",
            f"{workers} workers x {limit} MB = {workers * limit} MB exceeds "
            f"{fraction:.0%} of the machine's {machine.memory_mb} MB "
            f"({machine.source}); the kernel OOM killer would act before Falcon's limits.",
            f"lower FALCON_WORKERS or FALCON_MEMORY_LIMIT_MB so workers x limit <= {budget} MB",
        )
    soft = (
        settings.memory_soft_limit_percent
        if settings.memory_soft_limit_percent is not None
        else spec.workers.memory_soft_limit_percent
    )
    if soft == 0:
        yield Violation(
            "memory-soft-limit-off",
            "FALCON_MEMORY_SOFT_LIMIT_PERCENT",
            "0",
            "without a soft limit a growing worker is killed mid-request instead of being "
            "recycled gracefully.",
            "set FALCON_MEMORY_SOFT_LIMIT_PERCENT=80",
            "warning",
        )


def _binds(ctx: _Context) -> Iterator[Violation]:
    s = ctx.settings
    has_cert, has_key = s.tls_certfile is not None, s.tls_keyfile is not None
    if has_cert != has_key:
        present = "FALCON_TLS_CERTFILE" if has_cert else "FALCON_TLS_KEYFILE"
        missing = "FALCON_TLS_KEYFILE" if has_cert else "FALCON_TLS_CERTFILE"
        yield Violation(
            "tls-incomplete",
            missing,
            "<unset>",
            f"{present} is set without {missing}, so TLS cannot start.",
            f"set {missing} as well, or remove {present}",
        )
    tls = has_cert and has_key
    for variable, host in (("FALCON_HOST", s.host), ("FALCON_CONTROL_HOST", s.control_host)):
        if variable == "FALCON_CONTROL_HOST" and s.control_socket is not None:
            continue  # the control API is on a UNIX socket; the TCP host is unused
        if not _is_loopback(host) and not tls:
            yield Violation(
                "bind-without-tls",
                variable,
                host,
                "a non-loopback address without TLS sends requests and the admin token in the "
                "clear.",
                f"set FALCON_TLS_CERTFILE and FALCON_TLS_KEYFILE, or bind {variable}=127.0.0.1 "
                "behind a TLS-terminating proxy",
            )


def _request_limits(ctx: _Context) -> Iterator[Violation]:
    for name, maximum in REQUEST_LIMITS.items():
        value = getattr(ctx.settings, name)
        if value > maximum:
            yield Violation(
                "request-limits",
                f"FALCON_{name.upper()}",
                _num(value),
                "request limits this loose let one client exhaust a worker's memory or queue.",
                f"set FALCON_{name.upper()} <= {_num(maximum)} (default "
                f"{_num(Settings.model_fields[name].default)})",
            )


def _privacy_and_gates(ctx: _Context) -> Iterator[Violation]:
    if ctx.settings.log_inputs:
        yield Violation(
            "log-inputs",
            "FALCON_LOG_INPUTS",
            "true",
            "request texts are stored in the request log; they may hold personal data.",
            "set FALCON_LOG_INPUTS=false unless you have a retention agreement",
            "warning",
        )
    if not ctx.spec.gates.config_check:
        yield Violation(
            "spec-gate-disabled",
            "falcon.yaml gates.config_check",
            "false",
            "deploys would skip this check.",
            "set gates.config_check: true",
            "warning",
        )


RULES: tuple[Rule, ...] = (
    _faults,
    _debug_switches,
    _log_level,
    _admin_token,
    _database_password,
    _redis_password,
    _memory,
    _binds,
    _request_limits,
    _privacy_and_gates,
)
# Every rule id, for docs and tests (the runbook has one subsection per id).
RULE_IDS = (
    "faults-invalid",
    "faults-enabled",
    "debug-switch",
    "log-level-debug",
    "admin-token-missing",
    "admin-token-default",
    "database-password-missing",
    "database-password-default",
    "redis-password-missing",
    "redis-password-default",
    "memory-limit-missing",
    "memory-overcommit",
    "memory-soft-limit-off",
    "tls-incomplete",
    "bind-without-tls",
    "request-limits",
    "log-inputs",
    "spec-gate-disabled",
)


def evaluate_policy(
    settings: Settings,
    spec: Spec,
    machine: MachineFacts,
    *,
    allow_faults: bool,
    workers: int | None = None,
) -> list[Violation]:
    """All findings for ``settings.profile``: prod as is, staging as warnings, dev none.

    Exception: an unparsable ``FALCON_FAULTS`` is an error in every profile. ``workers``
    is how many workers this machine will run when that is not ``settings.workers``
    (a lone ``falcon worker`` in a Kubernetes pod: 1).
    """
    ctx = _Context(settings, spec, machine, allow_faults, workers)
    found = [v for rule in RULES for v in rule(ctx)]
    if settings.profile == "prod":
        return found
    if settings.profile == "staging":
        return [v if v.rule == "faults-invalid" else _as_warning(v) for v in found]
    return [v for v in found if v.rule == "faults-invalid"]


def _as_warning(v: Violation) -> Violation:
    return Violation(v.rule, v.variable, v.value, v.why, v.fix, "warning")
