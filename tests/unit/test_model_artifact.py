"""Saving and loading model directories: metadata, label order, integrity and trust checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.errors import ModelError, ModelIntegrityError, ModelNotFoundError
from falcon_platform.model.artifact import METADATA_FILE, read_metadata, save_model, sha256_hex
from falcon_platform.model.base import ServableModel
from falcon_platform.model.registry import LoadedModel, ensure_model, load_model
from falcon_platform.model.trust import disallowed_types

TEXTS = [
    "i love it, wonderful",
    "great value, very happy",
    "superb and lovely",
    "terrible, it broke",
    "awful support, never again",
    "useless and slow",
    "it arrived on tuesday",
    "the box contains a cable",
    "the shop is on main street",
] * 3
LABELS = (["positive"] * 3 + ["negative"] * 3 + ["neutral"] * 3) * 3


class CustomThing:
    """A class skops does not trust (defined in a test module, not in sklearn/numpy/scipy)."""

    def __init__(self) -> None:
        self.payload = "anything"


def user_pipeline() -> Any:
    """A user's own model: any sklearn classifier with predict_proba."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    return make_pipeline(CountVectorizer(), MultinomialNB()).fit(TEXTS, LABELS)


def save_user_model(out: Path, labels: tuple[str, ...] | None = None) -> Any:
    pipe = user_pipeline()
    return save_model(
        pipe,
        out,
        name="mine",
        version="1.2.3",
        labels=labels or tuple(pipe.classes_),
        metrics={"accuracy": 1.0},
        data_hash="0" * 64,
    )


def test_metadata_has_every_documented_field(tmp_path: Path) -> None:
    """metadata.json names the model, its labels, the artifact's sha256, data hash, metrics,
    a UTC creation time and the library versions."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pipe = user_pipeline()
    save_model(
        pipe,
        tmp_path,
        name="mine",
        version="1.2.3",
        labels=tuple(pipe.classes_),
        metrics={"accuracy": 1.0},
        data_hash="ab" * 32,
        now=now,
    )
    raw = json.loads((tmp_path / METADATA_FILE).read_text())
    for key in (
        "name",
        "version",
        "labels",
        "artifact",
        "sha256",
        "data_hash",
        "metrics",
        "created_at",
        "library_versions",
    ):
        assert key in raw, key
    assert raw["name"] == "mine"
    assert raw["version"] == "1.2.3"
    assert raw["labels"] == ["negative", "neutral", "positive"]
    assert raw["data_hash"] == "ab" * 32
    assert raw["metrics"] == {"accuracy": 1.0}
    assert raw["created_at"] == "2026-01-02T03:04:05Z"
    assert {"python", "scikit-learn", "skops", "numpy", "scipy"} <= set(raw["library_versions"])
    artifact = tmp_path / raw["artifact"]
    assert raw["sha256"] == sha256_hex(artifact.read_bytes())
    assert artifact.read_bytes()[:2] == b"PK"  # a skops zip archive, not a pickle stream


def test_a_users_sklearn_classifier_loads_and_predicts(tmp_path: Path) -> None:
    """Any sklearn classifier saved with save_model is servable: rows are float64 and sum to 1."""
    save_user_model(tmp_path)
    model: ServableModel = load_model(tmp_path)
    proba = model.predict_proba(["wonderful, i love it", "it broke, awful", "on main street"])
    assert proba.dtype == np.float64
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert [model.labels[i] for i in proba.argmax(axis=1)] == ["positive", "negative", "neutral"]
    assert model.name == "mine"
    assert model.version == "1.2.3"
    assert model.sha256 == read_metadata(tmp_path).sha256


def test_probability_columns_follow_the_saved_label_order(tmp_path: Path) -> None:
    """Labels saved in a non-alphabetical order reorder the columns to match."""
    order = ("positive", "negative", "neutral")
    save_user_model(tmp_path, labels=order)
    model = load_model(tmp_path)
    assert model.labels == order
    texts = ["wonderful, i love it", "it broke, awful"]
    raw = user_pipeline().predict_proba(texts)  # columns in classes_ order: neg, neu, pos
    np.testing.assert_allclose(model.predict_proba(texts), raw[:, [2, 0, 1]], atol=1e-12)


def test_empty_batch_gives_an_empty_matrix(tmp_path: Path) -> None:
    save_user_model(tmp_path)
    assert load_model(tmp_path).predict_proba([]).shape == (0, 3)


def test_missing_model_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="falcon model train --out"):
        load_model(tmp_path / "nothing-here")


def test_one_flipped_byte_is_refused_with_both_hashes(tmp_path: Path) -> None:
    """A tampered or corrupted artifact is not loaded; the message shows both hashes and the fix."""
    metadata = save_user_model(tmp_path)
    artifact = tmp_path / metadata.artifact
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as caught:
        load_model(tmp_path)
    assert metadata.sha256 in caught.value.detail
    assert sha256_hex(bytes(data)) in caught.value.detail
    assert "falcon model train" in caught.value.detail


def test_an_untrusted_type_is_refused_even_with_a_matching_hash(tmp_path: Path) -> None:
    """A consistent (hash-matching) artifact holding a custom class is still refused, by name."""
    import skops.io

    metadata = save_user_model(tmp_path)
    evil = skops.io.dumps(CustomThing())
    (tmp_path / metadata.artifact).write_bytes(evil)
    raw = json.loads((tmp_path / METADATA_FILE).read_text())
    raw["sha256"] = sha256_hex(evil)
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelIntegrityError, match="does not trust") as caught:
        load_model(tmp_path)
    assert "test_model_artifact.CustomThing" in caught.value.detail


def test_metadata_cannot_point_outside_the_model_directory(tmp_path: Path) -> None:
    """A metadata.json naming ../something is invalid metadata, not a path to follow."""
    save_user_model(tmp_path / "m")
    raw = json.loads((tmp_path / "m" / METADATA_FILE).read_text())
    raw["artifact"] = "../elsewhere.skops"
    (tmp_path / "m" / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelIntegrityError, match="not valid model metadata"):
        load_model(tmp_path / "m")


def test_saving_twice_replaces_the_artifact_and_leaves_no_stale_files(tmp_path: Path) -> None:
    """Re-saving into a directory swaps metadata atomically and removes the old artifact."""
    save_user_model(tmp_path)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    other = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)
    second = save_model(
        other, tmp_path, name="mine", version="2", labels=other.classes_, metrics={}, data_hash=None
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([METADATA_FILE, second.artifact])
    assert load_model(tmp_path).version == "2"


def test_save_refuses_what_could_not_be_served(tmp_path: Path) -> None:
    """No predict_proba, not fitted, wrong labels, or an untrusted part: refused at save time."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import FunctionTransformer, make_pipeline
    from sklearn.svm import LinearSVC

    def save(estimator: Any, labels: tuple[str, ...]) -> None:
        save_model(
            estimator, tmp_path, name="x", version="1", labels=labels, metrics={}, data_hash=None
        )

    with pytest.raises(ModelError, match="no predict_proba"):
        save(make_pipeline(CountVectorizer(), LinearSVC()).fit(TEXTS, LABELS), ("a",))
    with pytest.raises(ModelError, match="not fitted"):
        save(make_pipeline(CountVectorizer(), MultinomialNB()), ("a",))
    with pytest.raises(ModelError, match="do not match"):
        save(user_pipeline(), ("negative", "positive", "other"))
    custom = make_pipeline(CountVectorizer(), FunctionTransformer(_double), MultinomialNB())
    custom.fit(TEXTS, LABELS)
    with pytest.raises(ModelError, match="types Falcon will not load"):
        save(custom, tuple(custom.classes_))
    assert list(tmp_path.iterdir()) == []


def _double(x: Any) -> Any:
    return x * 2


def test_allow_list_is_exact_names_not_prefixes() -> None:
    """Only listed names pass; a function from an allowed package does not."""
    assert disallowed_types(["sklearn.calibration._TemperatureScaling"]) == []
    assert disallowed_types(["numpy.load", "builtins.eval"]) == ["builtins.eval", "numpy.load"]


def test_ensure_model_keeps_an_existing_model(tmp_path: Path) -> None:
    """A model already at the configured path is returned untouched (no retraining)."""
    settings = Settings(home=tmp_path)
    metadata = save_user_model(settings.resolved_model_path)
    assert ensure_model(settings) == settings.resolved_model_path
    assert read_metadata(settings.resolved_model_path) == metadata


def test_ensure_model_will_not_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    """A non-empty directory without metadata.json is left alone, with instructions."""
    settings = Settings(home=tmp_path)
    settings.resolved_model_path.mkdir(parents=True)
    (settings.resolved_model_path / "notes.txt").write_text("mine")
    with pytest.raises(ModelNotFoundError, match="will not overwrite"):
        ensure_model(settings)
    assert (settings.resolved_model_path / "notes.txt").read_text() == "mine"


def test_from_estimator_wraps_an_in_memory_classifier_in_label_order() -> None:
    """Tests and notebooks can serve a fitted estimator directly; wrong labels are refused."""
    order = ("positive", "negative", "neutral")
    model = LoadedModel.from_estimator(user_pipeline(), name="t", version="1", labels=order)
    proba = model.predict_proba(["wonderful, i love it", "it broke, awful"])
    assert [order[i] for i in proba.argmax(axis=1)] == ["positive", "negative"]
    with pytest.raises(ModelError, match="do not match"):
        LoadedModel.from_estimator(user_pipeline(), name="t", version="1", labels=("a", "b"))


def _classifiers() -> list[Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return [
        make_pipeline(TfidfVectorizer(), LogisticRegression()),
        make_pipeline(TfidfVectorizer(), SGDClassifier(loss="log_loss", random_state=0)),
        make_pipeline(TfidfVectorizer(), RandomForestClassifier(n_estimators=3, random_state=0)),
        make_pipeline(TfidfVectorizer(), CalibratedClassifierCV(LinearSVC(), cv=3)),
    ]


@pytest.mark.parametrize("estimator", _classifiers(), ids=lambda e: type(e.steps[-1][1]).__name__)
def test_common_sklearn_classifiers_round_trip(estimator: Any, tmp_path: Path) -> None:
    """Ordinary sklearn classifiers pass the allow-list and predict the same after loading."""
    estimator.fit(TEXTS, LABELS)
    save_model(
        estimator,
        tmp_path,
        name="x",
        version="1",
        labels=estimator.classes_,
        metrics={},
        data_hash=None,
    )
    texts = ["wonderful, i love it", "it broke", "main street"]
    np.testing.assert_allclose(
        load_model(tmp_path).predict_proba(texts), estimator.predict_proba(texts), atol=1e-6
    )
