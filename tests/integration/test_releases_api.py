"""Release records through a real supervisor: create, list, show, refuse; durable across a
restart of the supervisor (numbering goes on), secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def test_releases_are_numbered_judged_diffed_and_kept(tmp_path: Path, model_dir: Path) -> None:
    sup = start_supervisor(tmp_path, workers=1, model_dir=model_dir)
    try:
        listed = json.loads(sup.cli("releases", "--json").stdout)
        assert listed["stable"] == "r0"
        [r0] = listed["releases"]
        assert r0["state"] == "stable"
        assert len(r0["model_sha256"]) == 64

        made = sup.cli("releases", "create", "--set", "FALCON_LOG_LEVEL=INFO",
                       "--set", "FALCON_ADMIN_TOKEN=s3cret-value-never-shown-0123456789",
                       "--reason", "more logs", "--json")  # fmt: skip
        assert made.returncode == 0, made.stderr
        r1 = json.loads(made.stdout)
        assert r1["id"] == "r1"
        assert r1["state"] == "pending"
        assert r1["from_release"] == "r0"
        assert r1["reason"] == "more logs"
        assert "@" in r1["created_by"]
        assert r1["model_sha256"] == r0["model_sha256"]
        assert r1["settings_fingerprint"] != r0["settings_fingerprint"]
        diff = {row["key"]: row for row in r1["diff"]}
        assert set(diff) == {"admin_token", "log_level"}
        assert diff["admin_token"]["new"] == "changed"
        assert diff["log_level"]["new"] == '"INFO"'
        assert "s3cret-value" not in made.stdout
        assert r1["env"]["FALCON_ADMIN_TOKEN"] == "<secret>"

        refused = sup.cli("releases", "create", "--set", "FALCON_PROFILE=prod",
                          "--reason", "switch profile")  # fmt: skip
        assert refused.returncode == 1
        assert "cannot change in a running" in refused.stderr
        r2 = json.loads(sup.cli("releases", "show", "r2", "--json").stdout)
        assert r2["state"] == "refused"
        assert r2["gate"]["verdict"] == "refused"
        shown = sup.cli("releases", "show", "r1")
        assert "admin_token: <secret> -> changed" in shown.stdout
        missing = sup.cli("releases", "show", "r9")
        assert missing.returncode == 2
        assert "no release 'r9'" in missing.stderr

        anonymous = httpx.post(sup.control_url + "/releases", json={"reason": "x"}, timeout=10)
        assert anonymous.status_code == 401
        kinds = [e["kind"] for e in sup.events("release_created")]
        assert kinds == ["release_created", "release_created"]
    finally:
        assert sup.stop() == 0
    again = start_supervisor(tmp_path, workers=1, model_dir=model_dir)
    try:
        body = json.loads(again.cli("releases", "--json").stdout)
        assert [(r["id"], r["state"]) for r in body["releases"]] == [
            ("r0", "stable"), ("r1", "aborted"), ("r2", "refused"),
        ]  # fmt: skip
        made = again.cli("releases", "create", "--set", "FALCON_LOG_LEVEL=ERROR",
                         "--reason", "quieter", "--json")  # fmt: skip
        assert json.loads(made.stdout)["id"] == "r3"
    finally:
        again.stop()
