"""The Grafana dashboard rendered from the spec: golden file, importable structure, real queries."""

import json
import re
from pathlib import Path

from falcon_platform.config.spec import AlertSpec, Spec
from falcon_platform.observability import names
from falcon_platform.observability.alert_defs import recording_rules
from falcon_platform.render.grafana import (
    DASHBOARD_FILENAME,
    dashboard,
    render_dashboard,
    render_grafana,
)
from falcon_platform.testing.golden import assert_golden

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "tests" / "golden" / "grafana" / DASHBOARD_FILENAME


def _panels(spec: Spec) -> list[dict]:  # type: ignore[type-arg]
    return [p for p in dashboard(spec)["panels"] if p["type"] != "row"]


def test_dashboard_matches_the_golden_file() -> None:
    assert_golden(GOLDEN, render_dashboard(Spec()))


def test_deploy_example_is_the_rendered_default() -> None:
    assert (ROOT / "deploy" / "grafana" / DASHBOARD_FILENAME).read_text(
        encoding="utf-8"
    ) == render_dashboard(Spec())
    assert list(render_grafana(Spec())) == [DASHBOARD_FILENAME]


def test_dashboard_is_importable_json_with_a_datasource_variable() -> None:
    model = json.loads(render_dashboard(Spec()))
    assert model["schemaVersion"] >= 36
    assert model["uid"] == "falcon-overview"
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(Spec()):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_dashboard_has_every_panel_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"] for p in _panels(Spec())).lower()
    for wanted in (
        "request rate",
        "error ratio",
        "p50 / p95 / p99",
        "error budget remaining",
        "burn rate",
        "memory per worker vs limit",
        "restarts and oom kills",
        "batch size",
        "queue depth",
        "cache hit ratio",
        "by release",
    ):
        assert wanted in titles, wanted


def test_panels_do_not_overlap_and_ids_are_unique() -> None:
    panels = dashboard(Spec())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24


def test_queries_use_only_known_metrics_and_recording_rules() -> None:
    """A renamed metric or recording rule breaks this test, not a dashboard in production."""
    known = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    known |= {f"{n}_{suffix}" for n in known for suffix in ("bucket", "count", "sum")}
    records = {r.record for r in recording_rules(Spec())}
    for panel in _panels(Spec()):
        for target in panel["targets"]:
            for ident in re.findall(r"\b(falcon[a-z0-9_:]*)", target["expr"]):
                assert ident in known or ident in records, (panel["title"], ident)


def test_thresholds_follow_the_spec() -> None:
    def threshold(spec: Spec, title: str) -> list[float]:
        (panel,) = [p for p in _panels(spec) if p["title"] == title]
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    assert threshold(Spec(), "Error ratio by release") == [0.1]
    assert threshold(
        Spec(alerts=AlertSpec(error_rate_critical=0.02)), "Error ratio by release"
    ) == [0.02]
    assert threshold(Spec(), "Burn rate") == [14.4, 6, 1]
