"""Dockerfile, .dockerignore and compose.yaml, checked by parsing (no container engine here).

The Dockerfile: multi-stage, non-root USER (the uid the pods run as), no `latest` image, a
HEALTHCHECK and commands that exist, the model path the rendered pods use. compose.yaml:
memory limits that fit the gate's own rule, and every service wired to what it needs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser
from typer.testing import CliRunner

from falcon_platform.cli.main import app as cli_app
from falcon_platform.config.policy import MEMORY_BUDGET_FRACTION
from falcon_platform.config.settings import Settings
from falcon_platform.config.specfile import load_spec
from falcon_platform.render.k8s import options as k8s
from falcon_platform.render.k8s.settings_env import field_name

ROOT = Path(__file__).parents[2]
MB = 1_048_576


def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


def instructions(name: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == name]


def stage_of(line: int) -> int:
    """Index of the FROM stage a Dockerfile line belongs to."""
    froms = [i["startline"] for i in dockerfile().structure if i["instruction"] == "FROM"]
    return sum(1 for start in froms if start <= line) - 1


def test_dockerfile_is_multi_stage_and_pins_its_base_images() -> None:
    parents = dockerfile().parent_images
    assert len(parents) == 2
    for image in parents:
        name, _, tag = image.rpartition(":")
        assert name
        assert tag
        assert tag != "latest", image
        assert "/" not in tag, f"{image} has no tag"


def test_dockerfile_runs_as_the_non_root_user_the_pods_expect() -> None:
    users = [i for i in dockerfile().structure if i["instruction"] == "USER"]
    assert users, "no USER: the image would run as root"
    last = users[-1]
    assert stage_of(last["startline"]) == 1  # in the runtime stage
    uid, _, gid = last["value"].partition(":")
    assert uid == gid == str(k8s.UID)
    assert int(uid) != 0


def test_dockerfile_healthcheck_and_commands_exist() -> None:
    (health,) = instructions("HEALTHCHECK")
    argv = yaml.safe_load(health.split("CMD", 1)[1].strip())
    assert argv[0] == "falcon"
    result = CliRunner().invoke(cli_app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output
    (cmd,) = instructions("CMD")
    argv = yaml.safe_load(cmd)
    assert CliRunner().invoke(cli_app, [*argv[1:], "--help"]).exit_code == 0


def test_dockerfile_bakes_the_model_where_the_pods_look_and_home_is_writable() -> None:
    envs = dockerfile().envs  # the runtime stage's environment
    assert envs["FALCON_MODEL_PATH"] == k8s.MODEL_DIR
    assert envs["FALCON_HOME"] == k8s.HOME
    assert envs["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root file system
    runs = " ".join(instructions("RUN"))
    assert "falcon model train --out" in runs
    assert "falcon model verify" in runs
    assert f"chown {k8s.UID}:{k8s.UID} {k8s.HOME}" in runs


def test_dockerignore_lets_in_only_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = [
        part
        for value in instructions("COPY")
        if not value.startswith("--from")
        for part in value.split()[:-1]
    ]
    assert copied == ["pyproject.toml", "README.md", "src"]
    assert ignore[0] == "*"
    for path in copied:
        assert f"!{path}" in ignore or f"!{path}/" in ignore
        assert (ROOT / path).exists()


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def mem_mb(value: str) -> int:
    match = re.fullmatch(r"(\d+)([mg])", value)
    assert match, value
    return int(match.group(1)) * (1024 if match.group(2) == "g" else 1)


def test_compose_memory_limits_fit_the_gates_rule() -> None:
    services = compose()["services"]
    assert all("mem_limit" in s for s in services.values()), "every service has a memory limit"
    falcon = services["falcon"]
    env = falcon["environment"]
    workers = int(env["FALCON_WORKERS"])
    limit_mb = load_spec(ROOT / "falcon.yaml").workers.memory_limit_mb
    assert "FALCON_MEMORY_LIMIT_MB" not in env  # the spec's limit, mounted below
    assert workers * limit_mb <= mem_mb(falcon["mem_limit"]) * MEMORY_BUDGET_FRACTION
    redis = services["redis"]
    maxmemory = redis["command"][redis["command"].index("--maxmemory") + 1]
    assert mem_mb(maxmemory.removesuffix("b")) * 1.25 <= mem_mb(redis["mem_limit"])


def test_compose_wiring() -> None:
    services = compose()["services"]
    falcon = services["falcon"]
    env = falcon["environment"]
    for name in env:
        field_name(name)  # every variable is a Falcon setting
    interpolated = {field_name(k): re.sub(r"\$\{[^}]*\}", "pw", v) for k, v in env.items()}
    settings = Settings.model_validate(interpolated)
    assert settings.profile == "dev"
    assert "redis://redis:6379" in env["FALCON_REDIS_URL"]
    assert "@postgres:5432/" in env["FALCON_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in env["FALCON_DATABASE_URL"], "no password in the file"
    assert falcon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["falcon", "db", "upgrade"]
    assert services["migrate"]["environment"]["FALCON_DATABASE_URL"] == env["FALCON_DATABASE_URL"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    mounts = {m.split(":")[1]: m.split(":")[0] for m in falcon["volumes"] if m.startswith("./")}
    assert mounts[env["FALCON_SPEC_PATH"]] == "./falcon.yaml"
    # Prometheus reaches the supervisor's loopback-only control port from inside its netns
    prometheus = services["prometheus"]
    assert prometheus["network_mode"] == "service:falcon"
    assert "127.0.0.1:9090:9090" in falcon["ports"]
    (config_mount,) = prometheus["volumes"]
    assert config_mount.startswith("./deploy/prometheus:/etc/prometheus")
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    defaults = Settings.model_construct()
    assert targets == [f"{defaults.control_host}:{defaults.control_port}"]
    for rule_file in config["rule_files"]:
        assert (ROOT / "deploy" / "prometheus" / rule_file).is_file()
    for image in (s.get("image", "") for s in services.values()):
        assert image
        assert not image.endswith(":latest")
        assert ":" in image
