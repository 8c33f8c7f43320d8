"""The lean inference path: used for the default pipeline only when it equals scikit-learn's."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from test_model_training import write_tiny_corpus  # a sibling test module (rootdir on sys.path)

from falcon_platform.model.lean import compile_lean
from falcon_platform.model.registry import load_model, train_and_save
from falcon_platform.model.training import load_corpus

PROBES = ["the phone was great", "the hotel was awful", "not bad at all", "", "x " * 300]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lean")
    corpus = write_tiny_corpus(root / "tiny.csv", per_class=20)
    train_and_save(root / "model", corpus_path=corpus)
    return root / "model"


def test_the_default_model_loads_with_the_lean_path(model_dir: Path) -> None:
    assert load_model(model_dir).fast_predict is not None


def test_lean_probabilities_equal_scikit_learns_on_a_whole_corpus(model_dir: Path) -> None:
    """Bit-for-bit in practice; the load-time check allows 1e-9."""
    lean = load_model(model_dir)
    plain = load_model(model_dir)
    plain.fast_predict = None
    texts = list(load_corpus(model_dir.parent / "tiny.csv").texts) + PROBES
    assert np.allclose(lean.predict_proba(texts), plain.predict_proba(texts), rtol=0, atol=1e-9)
    assert np.allclose(lean.predict_proba(texts[:1]), plain.predict_proba(texts[:1]), atol=1e-9)


def test_another_pipeline_keeps_scikit_learns_path() -> None:
    texts = ["good", "bad", "fine", "great", "awful", "ok"]
    labels = ["positive", "negative", "neutral", "positive", "negative", "neutral"]
    pipe = make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, labels)
    assert compile_lean(pipe, PROBES) is None


def test_a_lean_path_that_would_differ_is_not_used(model_dir: Path) -> None:
    """If the shortcut's arithmetic ever disagrees (here: a tampered coefficient that only the
    shortcut sees), the equality check at load refuses it."""
    estimator = load_model(model_dir).estimator
    linear = estimator.steps[-1][1].calibrated_classifiers_[0].estimator
    original = linear.coef_.copy()
    assert compile_lean(estimator, PROBES) is not None

    class Shifted(type(linear)):  # type: ignore[misc]
        """Answers scikit-learn's path as before, but shows the shortcut a moved weight."""

        def decision_function(self, x: object) -> object:
            return linear.decision_function(x)

    shifted = copy.deepcopy(linear)
    shifted.__class__ = Shifted
    shifted.coef_ = original.copy()
    shifted.coef_[0] += 0.5  # one class only: a shift of every class cancels in the softmax
    estimator.steps[-1][1].calibrated_classifiers_[0].estimator = shifted
    try:
        reference = estimator.predict_proba(PROBES)  # unchanged for scikit-learn
        assert np.allclose(reference, load_model(model_dir).predict_proba(PROBES), atol=1e-9)
        assert compile_lean(estimator, PROBES) is None
    finally:
        estimator.steps[-1][1].calibrated_classifiers_[0].estimator = linear
