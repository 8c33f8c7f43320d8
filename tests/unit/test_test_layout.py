"""The test tree itself: pytest imports test modules by basename (no packages, rootdir mode)."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_basename() -> None:
    """Two `test_x.py` in different folders break collection of the whole suite ("import file
    mismatch"), which a run of one folder never shows: this catches it in any run."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    assert len(seen) > 100, "the test tree was not found"
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename one of each: {clashes}"
