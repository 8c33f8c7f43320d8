"""Every alert's runbook_url points at a heading that exists in docs/RUNBOOK.md."""

import re
from pathlib import Path

import pytest

from falcon_platform.config.spec import Spec
from falcon_platform.observability.alert_defs import RUNBOOK_BASE, alert_defs, github_slug

DOCS = Path(__file__).parents[2] / "docs"


def _runbook() -> Path:
    return DOCS / "RUNBOOK.md"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors (a repeated heading gets -1, -2, ...)."""
    anchors: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            slug = github_slug(match.group(1))
            candidate, n = slug, 0
            while candidate in anchors:
                n += 1
                candidate = f"{slug}-{n}"
            anchors.add(candidate)
    return anchors


@pytest.mark.parametrize("definition", alert_defs(Spec()), ids=lambda d: f"{d.name}-{d.severity}")
def test_runbook_url_anchor_is_a_heading_in_the_runbook(definition) -> None:  # type: ignore[no-untyped-def]
    url = definition.annotations()["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == RUNBOOK_BASE
    assert anchor in _anchors(_runbook().read_text(encoding="utf-8")), (
        f"no heading for #{anchor} in {_runbook()}"
    )


def test_every_runbook_section_uses_real_falcon_commands() -> None:
    """Each alert section shows commands to run; only commands the CLI has."""
    import typer

    from falcon_platform.cli.main import app

    root = typer.main.get_command(app)
    text = _runbook().read_text(encoding="utf-8")
    for command, sub in re.findall(r"falcon ([a-z][a-z-]+)(?: ([a-z][a-z-]+))?", text):
        assert command in root.commands, f"falcon {command} does not exist"  # type: ignore[attr-defined]
        group = root.commands[command]  # type: ignore[attr-defined]
        if hasattr(group, "commands"):
            assert sub in group.commands, f"falcon {command} {sub} does not exist"
    names = {d.name for d in alert_defs(Spec())}
    sections = {
        s.split("\n", 1)[0].strip(): s for s in text.split("\n### ")[1:] if s.startswith("Falcon")
    }
    assert set(sections) == names
    assert all("```bash" in s for s in sections.values())


def test_github_slug_matches_githubs_rules() -> None:
    assert github_slug("FalconWorkerOOMKilled") == "falconworkeroomkilled"
    assert github_slug("Worker OOM-killed / crash-looping") == "worker-oom-killed--crash-looping"
    assert github_slug("PostgreSQL down or slow") == "postgresql-down-or-slow"
