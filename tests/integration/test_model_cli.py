"""`falcon model train|info|verify` as real subprocesses, on the shipped corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from falcon_platform.model.artifact import METADATA_FILE, read_metadata, save_model, sha256_hex

pytestmark = pytest.mark.integration

FALCON = Path(sys.executable).parent / "falcon"


def run_falcon(*args: str, home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FALCON_HOME": str(home)}
    env.pop("FALCON_MODEL_PATH", None)
    return subprocess.run(
        [str(FALCON), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """One real `falcon model train --out DIR --json` on the shipped corpus, shared by the module."""
    home = tmp_path_factory.mktemp("home")
    out = home / "trained"
    result = run_falcon("model", "train", "--out", str(out), "--json", home=home)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def copy_model(trained: tuple[Path, dict[str, object]], tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(trained[0], target)
    return target


def test_trained_model_meets_the_held_out_target(trained: tuple[Path, dict[str, object]]) -> None:
    """macro-F1 >= 0.80 on the held-out split; the report carries accuracy and a 3x3 matrix."""
    _, report = trained
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["macro_f1"] >= 0.80, metrics
    assert metrics["accuracy"] >= 0.80, metrics
    matrix = metrics["confusion_matrix"]
    assert matrix["labels"] == ["negative", "neutral", "positive"]
    assert sum(map(sum, matrix["matrix"])) == metrics["n_test"]
    assert metrics["n_test"] + metrics["n_train"] >= 900
    assert report["labels"] == ["negative", "neutral", "positive"]
    assert str(report["version"]).startswith("sentiment-")


def test_train_defaults_to_the_configured_path_and_reproduces_the_artifact(
    trained: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    """A second run (another process, no --out) writes the same sha256 and version into
    FALCON_HOME/models/sentiment, prints the readable report and shows progress on stderr."""
    result = run_falcon("model", "train", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "held-out macro-F1" in result.stdout
    assert "confusion matrix" in result.stdout
    assert "training model" in result.stderr  # the progress bar goes to stderr
    metadata = read_metadata(tmp_path / "models" / "sentiment")
    assert metadata.sha256 == trained[1]["sha256"]
    assert metadata.version == trained[1]["version"]
    verify = run_falcon("model", "verify", home=tmp_path)
    assert verify.returncode == 0, verify.stderr


def test_verify_and_info_accept_a_good_model(
    trained: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    path = copy_model(trained, tmp_path)
    verify = run_falcon("model", "verify", "--path", str(path), home=tmp_path)
    assert verify.returncode == 0, verify.stderr
    assert str(trained[1]["sha256"]) in verify.stdout
    assert "served with NumPy only from lean-" in " ".join(verify.stdout.split())
    info = run_falcon("model", "info", "--path", str(path), "--json", home=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["sha256"] == trained[1]["sha256"]


def test_a_flipped_byte_is_refused_by_verify(
    trained: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    """One byte changed in the artifact: exit code 3 and a message naming sha256 and the fix."""
    path = copy_model(trained, tmp_path)
    artifact = path / read_metadata(path).artifact
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    verify = run_falcon("model", "verify", "--path", str(path), home=tmp_path)
    assert verify.returncode == 3
    assert "sha256" in verify.stderr
    assert "falcon model train" in verify.stderr


def test_an_artifact_with_an_untrusted_type_is_refused_by_verify(
    trained: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    """A skops file of a custom class, with metadata forged to match its hash, is refused."""
    path = copy_model(trained, tmp_path)
    builder = tmp_path / "evil_module.py"
    builder.write_text(
        textwrap.dedent(
            """
            import sys
            import skops.io

            class Gadget:
                def __init__(self):
                    self.command = "rm -rf /"

            skops.io.dump(Gadget(), sys.argv[1])
            """
        )
    )
    evil = tmp_path / "evil.skops"
    subprocess.run([sys.executable, str(builder), str(evil)], check=True, cwd=tmp_path, timeout=60)
    metadata = read_metadata(path)
    (path / metadata.artifact).write_bytes(evil.read_bytes())
    raw = json.loads((path / METADATA_FILE).read_text())
    raw["sha256"] = sha256_hex(evil.read_bytes())
    (path / METADATA_FILE).write_text(json.dumps(raw))
    verify = run_falcon("model", "verify", "--path", str(path), home=tmp_path)
    assert verify.returncode == 3
    assert "does not trust" in verify.stderr
    assert "Gadget" in verify.stderr


def test_a_users_own_classifier_is_verified_and_served(tmp_path: Path) -> None:
    """make_pipeline(CountVectorizer(), MultinomialNB()) saved with save_model passes verify."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    texts = ["good", "great stuff", "bad", "awful thing", "it is blue", "on monday"] * 3
    labels = ["pos", "pos", "neg", "neg", "meh", "meh"] * 3
    pipe = make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, labels)
    save_model(
        pipe,
        tmp_path / "mine",
        name="mine",
        version="7",
        labels=("pos", "neg", "meh"),
        metrics={},
        data_hash=None,
    )
    verify = run_falcon("model", "verify", "--path", str(tmp_path / "mine"), home=tmp_path)
    assert verify.returncode == 0, verify.stderr
    assert "mine 7" in verify.stdout
    assert "labels=pos,neg,meh" in verify.stdout


def test_verify_without_a_model_fails_and_says_how_to_make_one(tmp_path: Path) -> None:
    verify = run_falcon("model", "verify", home=tmp_path)
    assert verify.returncode == 3
    assert "falcon model train" in verify.stderr


def test_two_processes_racing_ensure_model_train_it_once(tmp_path: Path) -> None:
    """Two concurrent first starts end with one valid model and no leftover temp directories
    (including one left by an earlier process that died while training)."""
    stale = tmp_path / "models" / ".sentiment.tmp-999999"
    stale.mkdir(parents=True)
    (stale / "half-written").write_text("x")
    script = (
        "import sys; from pathlib import Path; "
        "from falcon_platform.config.settings import Settings; "
        "from falcon_platform.model.registry import ensure_model, load_model; "
        "p = ensure_model(Settings(home=Path(sys.argv[1]))); "
        "print(load_model(p).sha256)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    hashes = {out.strip() for out, _ in outputs}
    assert len(hashes) == 1
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == ["sentiment"]
    assert read_metadata(models / "sentiment").sha256 in hashes
