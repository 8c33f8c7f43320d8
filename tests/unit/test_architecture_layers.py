"""The package's layers: a module imports only from layers below its own (docs/ARCHITECTURE.md).

Read from the source with ``ast`` (every import, also those inside functions and under
``TYPE_CHECKING``), so an upward import fails here before it can become a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import falcon_platform

PACKAGE = Path(falcon_platform.__file__).parent

# Lowest first. A package may import any package of a strictly lower layer, never one of its
# own layer (siblings stay independent) or above. ``testing`` may import anything; nothing
# outside it imports it.
LAYERS: list[set[str]] = [
    {"errors", "clock", "files", "malloc", "__init__"},
    {"config"},
    {"chaos", "model", "stores", "client"},
    {"events"},
    {"observability"},
    {"serving"},
    {"worker"},
    {"supervisor"},
    {"loadtest"},
    {"releases"},
    {"incidents"},
    {"control"},
    {"drills", "render"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    """``falcon_platform.supervisor.plan`` -> ``supervisor``; ``falcon_platform`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _parse(path: Path) -> ast.Module:
    """``ast.parse``, retried on CPython 3.11's spurious "AST constructor recursion depth
    mismatch" SystemError (python/cpython#106905), seen here in a full-suite run."""
    for _ in range(2):
        try:
            return ast.parse(path.read_text(), str(path))
        except SystemError:
            continue
    return ast.parse(path.read_text(), str(path))


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # ``from falcon_platform import __version__`` names the root, not a package
            if node.module == "falcon_platform":
                found += [(node.lineno, f"falcon_platform.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name.startswith("falcon_platform")]


def _violations() -> list[str]:
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        if own == "testing":
            continue
        if own not in RANK:
            bad.append(f"{rel}: package {own!r} has no layer in LAYERS (add it)")
            continue
        for line, name in _imports(path):
            other = _top(name)
            if other == own or (other == "__version__" and own != "__init__"):
                continue
            if other == "testing":
                bad.append(
                    f"{rel}:{line} imports {name}: only tests may use falcon_platform.testing"
                )
            elif other not in RANK:
                bad.append(f"{rel}:{line} imports {name}: unknown package {other!r}")
            elif RANK[other] >= RANK[own]:
                bad.append(
                    f"{rel}:{line} imports {name}: {own} (layer {RANK[own]}) may only import "
                    f"layers below it, and {other} is layer {RANK[other]}"
                )
    return bad


def test_no_module_imports_from_its_own_layer_or_above() -> None:
    assert _violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself can fail: an upward import in a scratch module is reported."""
    scratch = PACKAGE / "config" / "_layer_probe_tmp.py"
    scratch.write_text("from falcon_platform.supervisor.plan import plan\n")
    try:
        found = _violations()
    finally:
        scratch.unlink()
    assert any("_layer_probe_tmp.py:1 imports falcon_platform.supervisor.plan" in v for v in found)


def test_worker_entry_point_loads_no_cli() -> None:
    """``python -m falcon_platform.worker`` must not pay for Typer and Rich (~20 MB)."""
    code = (
        "import sys, falcon_platform.worker.main as m; "
        "print(sorted(n for n in ('typer', 'rich', 'falcon_platform.cli') if n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
