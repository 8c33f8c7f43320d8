"""The Dockerfile's build steps, run here as written (no container engine on these machines).

The model step (`falcon model train` then `falcon model verify` into FALCON_MODEL_PATH) is
taken from the Dockerfile's RUN instruction and run with a shell, with the Dockerfile's own
ENV value moved under tmp_path: the image bakes exactly what this test produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def test_the_dockerfile_model_step_trains_and_verifies_the_baked_model(tmp_path: Path) -> None:
    parsed = DockerfileParser(str(ROOT / "Dockerfile"))
    (step,) = [
        i["value"]
        for i in parsed.structure
        if i["instruction"] == "RUN" and "falcon model train" in i["value"]
    ]
    (env_line,) = [
        i["value"]
        for i in parsed.structure
        if i["instruction"] == "ENV" and i["value"].startswith("FALCON_MODEL_PATH=")
    ]
    image_path = env_line.split("=", 1)[1]
    model_dir = tmp_path / image_path.lstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env.update(
        FALCON_MODEL_PATH=str(model_dir),
        FALCON_HOME=str(tmp_path / "home"),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    done = subprocess.run(
        ["sh", "-c", step], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["name"] == "sentiment"
    assert (model_dir / f"model-{metadata['sha256'][:12]}.skops").is_file()
