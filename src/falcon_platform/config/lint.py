"""The ``falcon-config-lint`` pre-commit hook: keep debug switches out of commits.

Run by pre-commit with the staged file names (or by hand)::

    python -m falcon_platform.config.lint config/prod.env src/falcon_platform/serving/app.py

Env files for staging/prod (by name, or by ``FALCON_PROFILE`` inside) must not enable
faults, debug switches or DEBUG logs, must not carry placeholder secrets, and must not
carry real secrets either (secrets come from the environment or a secret store).
Templates (``*.example``) may only hold placeholders. Python code outside
``falcon_platform/chaos`` must not read a debug/fault switch from the environment
(``os.environ[...]``, ``os.environ.get``, ``os.getenv``, ``"X" in os.environ``) nor
declare one as a settings field. A line ending ``# falcon-lint: allow <reason>`` is
exempt. Exit 1 listing every finding.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from falcon_platform.config.policy import TEMPLATE_SECRETS
from falcon_platform.config.profiles import read_env_file
from falcon_platform.config.switches import is_enabled, is_switch_name

ALLOW_PRAGMA = "falcon-lint: allow"
_STRICT_PROFILE = re.compile(r"(^|[._/-])(prod|production|staging|stage)([._/-]|$)", re.I)
_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY$|_URL$)", re.I)
_CHAOS_DIR = "falcon_platform/chaos/"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str
    fix: str

    def render(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}\n    fix: {self.fix}"


def is_env_file(path: Path) -> bool:
    name = path.name
    return name == ".env" or name.startswith(".env.") or ".env" in path.suffixes


def _secret_of(name: str, value: str) -> str | None:
    """The secret part of a value: the password inside a URL, else the value itself."""
    if not _SECRET_NAME.search(name) or not value:
        return None
    if name.upper().endswith("_URL"):
        return urlsplit(value).password
    return value


def _line_numbers(text: str) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#"):
            numbers.setdefault(key, number)
    return numbers


def lint_env_file(path: Path) -> list[Finding]:
    """Findings for one env file; files for dev (not staging/prod) are not judged."""
    text = path.read_text(encoding="utf-8", errors="replace")
    values = read_env_file(path)
    profile = values.get("FALCON_PROFILE", "").strip().lower()
    strict = profile in ("prod", "staging") or bool(_STRICT_PROFILE.search(str(path)))
    if not strict:
        return []
    template = path.suffix == ".example"
    lines = _line_numbers(text)
    allowed = {n for n, line in enumerate(text.splitlines(), 1) if ALLOW_PRAGMA in line}
    found: list[Finding] = []

    def add(name: str, rule: str, message: str, fix: str) -> None:
        line = lines.get(name, 1)
        if line not in allowed:
            found.append(Finding(str(path), line, rule, message, fix))

    for name, value in values.items():
        upper = name.upper()
        if upper == "FALCON_FAULTS" and value.strip():
            add(name, "faults-enabled", f"{name}={value} enables fault injection in a "
                "staging/prod env file", f"delete the value (leave {name}= empty); drills "
                "pass --allow-faults on the command line")  # fmt: skip
        elif is_switch_name(upper) and is_enabled(value):
            add(name, "debug-switch", f"{name}={value} switches on a debug path (the seed "
                "outage was DEBUG_MEMORY_GROWTH=true in a prod .env)", f"delete {name}")  # fmt: skip
        elif upper == "FALCON_LOG_LEVEL" and value.strip().upper() == "DEBUG":
            add(name, "log-level-debug", f"{name}=DEBUG in a staging/prod env file",
                "use INFO or WARNING")  # fmt: skip
        secret = _secret_of(upper, value)
        if not secret:
            continue
        placeholder = secret.strip().lower() in TEMPLATE_SECRETS
        if template and not placeholder:
            add(name, "secret-in-template", f"{name} holds what looks like a real secret in a "
                "template", "put a change-me placeholder back; rotate the leaked secret")  # fmt: skip
        elif not template and placeholder:
            add(name, "template-secret", f"{name} still has the template placeholder",
                "generate a real secret and keep it out of git (environment or secret "
                "store)")  # fmt: skip
        elif not template:
            add(name, "committed-secret", f"{name} puts a secret in a committed file",
                f"remove {name} from the file and set it in the deployment's environment or "
                "secret store; rotate it")  # fmt: skip
    return found


def _env_key(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id == "environ"


def _switch_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        key: str | None = None
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = _env_key(node.slice)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault"):
                key = _env_key(node.args[0]) if _is_environ(func.value) else None
            elif (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                isinstance(func, ast.Name) and func.id == "getenv"
            ):
                key = _env_key(node.args[0])
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = _env_key(node.left)
        if key is not None and (is_switch_name(key) or key.upper() == "FALCON_FAULTS"):
            yield getattr(node, "lineno", 1), f"reads the switch {key!r} from the environment"
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(b, ast.Name) and b.id == "BaseSettings")
            or (isinstance(b, ast.Attribute) and b.attr == "BaseSettings")
            for b in node.bases
        ):
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and item.target.id != "faults"
                    and is_switch_name(item.target.id)
                ):
                    yield item.lineno, f"declares the settings field {item.target.id!r}"


def _parse(text: str, filename: str) -> ast.Module:
    """``ast.parse``, retried on CPython 3.11's spurious "AST constructor recursion depth
    mismatch" SystemError (python/cpython#106905), seen once in a long test process."""
    for _ in range(2):
        try:
            return ast.parse(text, filename=filename)
        except SystemError:
            continue
    return ast.parse(text, filename=filename)


def lint_python_file(path: Path) -> list[Finding]:
    """Findings for one Python file; code under ``falcon_platform/chaos`` is exempt."""
    if _CHAOS_DIR in path.as_posix():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = _parse(text, str(path))
    except SyntaxError:
        return []  # not ours to report; the interpreter and ruff will
    lines = text.splitlines()
    return [
        Finding(
            str(path),
            line,
            "switch-read",
            f"{what}: a debug/fault switch outside falcon_platform.chaos",
            "remove it; faults go through FALCON_FAULTS and falcon_platform.chaos only (or "
            f"end the line with '# {ALLOW_PRAGMA} <reason>')",
        )
        for line, what in sorted(_switch_reads(tree))
        if ALLOW_PRAGMA not in lines[line - 1]
    ]


def lint_paths(paths: Sequence[Path]) -> list[Finding]:
    found: list[Finding] = []
    for path in paths:
        if not path.is_file():
            continue
        if path.suffix == ".py":
            found.extend(lint_python_file(path))
        elif is_env_file(path):
            found.extend(lint_env_file(path))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 1 and one block per finding on stderr; 0 when clean."""
    args = list(sys.argv[1:] if argv is None else argv)
    findings = lint_paths([Path(a) for a in args])
    for finding in findings:
        print(finding.render(), file=sys.stderr)
    if findings:
        print(
            f"falcon-config-lint: {len(findings)} problem(s); see docs/RUNBOOK.md "
            "(configuration gate) for each rule",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
