"""Golden files: compare rendered text with a checked-in file, showing a diff on mismatch.

``FALCON_UPDATE_GOLDEN=1`` rewrites the file (review the diff before committing); under
``CI=true`` that is refused, so CI can never bless its own output::

    assert_golden(Path("tests/golden/k8s/base/rollout.yaml"), text)
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

UPDATE_VARIABLE = "FALCON_UPDATE_GOLDEN"


def updating() -> bool:
    """True when asked to rewrite golden files; fails the test when that happens under CI."""
    if os.environ.get(UPDATE_VARIABLE) != "1":
        return False
    if os.environ.get("CI") == "true":
        pytest.fail(f"{UPDATE_VARIABLE}=1 under CI=true: golden files are updated by a person")
    return True


def assert_golden(path: Path, text: str) -> None:
    """``path`` holds exactly ``text``; else fail with a unified diff and the way to update."""
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old == text:
        return
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{path} (golden)",
            tofile="rendered",
            n=2,
        )
    )
    pytest.fail(
        f"{path} differs from the rendered text; if the change is intended, run the test "
        f"with {UPDATE_VARIABLE}=1 and review the diff:\n{diff[:20000]}",
        pytrace=False,
    )


def assert_golden_tree(directory: Path, files: dict[str, str]) -> None:
    """Every rendered file matches its golden copy, and the golden tree has no extra file."""
    for name, text in files.items():
        assert_golden(directory / name, text)
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    extra = sorted(present - set(files))
    if extra and updating():
        for name in extra:
            (directory / name).unlink()
        return
    assert not extra, f"golden files no longer rendered (delete them): {extra}"
