"""Declared dependencies are what the code imports, no more and no less (issue 10).

Reads every import in ``src/falcon_platform`` with ``ast`` and maps each third-party module to
its distribution with the installed metadata (``importlib.metadata.packages_distributions``):
a module imported without being declared in pyproject.toml breaks a fresh install the day the
package that brought it along drops it; a declared package nothing imports is weight in every
image. ``falcon_platform.testing`` (helpers for tests) may use the ``dev`` extras.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src" / "falcon_platform"

# Declared and needed, though no module imports them by name; each says why.
NOT_IMPORTED_ON_PURPOSE = {
    "psycopg": "SQLAlchemy loads it for postgresql+psycopg:// URLs (stores/database.py)",
    "hiredis": "redis-py uses it as its reply parser when it is installed",
}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"falcon_platform"}


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    index = importlib.metadata.packages_distributions()
    missing = sorted(m for m in modules if m not in index)
    assert not missing, f"imported but not installed: {missing}"
    return {m: {_name(d) for d in index[m]} for m in modules}


def _third_party_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> files) for the product code and for falcon_platform.testing."""
    product: dict[str, set[str]] = {}
    testing: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts and path.name != "env.py":
            continue
        where = testing if "testing" in path.relative_to(SRC).parts[:1] else product
        for module in _imports(path):
            where.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return product, testing


def test_every_third_party_import_is_a_declared_dependency() -> None:
    runtime, dev = _declared()
    product, testing = _third_party_imports()
    undeclared = {
        m: sorted(files) for m, files in product.items() if not _distributions({m})[m] & runtime
    }
    assert not undeclared, f"imported by the product, not in [project].dependencies: {undeclared}"
    undeclared_testing = {
        m: sorted(files)
        for m, files in testing.items()
        if not _distributions({m})[m] & (runtime | dev)
    }
    assert not undeclared_testing, (
        f"imported by falcon_platform.testing, undeclared: {undeclared_testing}"
    )


def test_every_declared_dependency_is_imported() -> None:
    runtime, _ = _declared()
    product, _ = _third_party_imports()
    imported = set().union(*_distributions(set(product)).values())
    unused = sorted(runtime - imported - set(NOT_IMPORTED_ON_PURPOSE))
    assert not unused, f"declared in [project].dependencies but imported by nothing: {unused}"
    for name in NOT_IMPORTED_ON_PURPOSE:
        assert name in runtime, f"{name} is allow-listed but no longer declared"
