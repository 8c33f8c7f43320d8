"""A lean inference path for the default pipeline, proven equal to scikit-learn's at load time.

scikit-learn's ``Pipeline.predict_proba`` spends most of a small call on bookkeeping, not
arithmetic: ``FeatureUnion`` goes through ``joblib.Parallel`` even with one job, and every step
re-validates its input (``check_array``, which in scikit-learn 1.9 asks narwhals whether a
sparse matrix is a dataframe). For the default model's exact shape::

    Pipeline[FeatureUnion[HashingVectorizer, ...], TfidfTransformer,
             CalibratedClassifierCV(<linear classifier>, method="temperature", ensemble=False)]

:func:`compile_lean` returns a function that calls the same fitted objects' public
``transform`` / ``predict`` methods and the linear decision function directly. It is used only
if, on probe texts, it returns what ``estimator.predict_proba`` returns (to 1e-9); any other
model, or any difference, keeps scikit-learn's own path. Written by hand because no library
flattens a fitted pipeline; the equality check at load is what makes it safe.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger("falcon.model")

Predict = Callable[[list[str]], npt.NDArray[np.float64]]


def _parts(estimator: Any) -> tuple[list[Any], Any, Any, Any] | None:
    """The fitted pieces if ``estimator`` has the default pipeline's exact shape, else None."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 3:
        return None
    (_, union), (_, tfidf), (_, calibrated) = estimator.steps
    if not isinstance(union, FeatureUnion) or union.transformer_weights is not None:
        return None
    vectorizers = [t for _, t in union.transformer_list]
    if not vectorizers or not all(type(t) is HashingVectorizer for t in vectorizers):
        return None
    if type(tfidf) is not TfidfTransformer or type(calibrated) is not CalibratedClassifierCV:
        return None
    if calibrated.method != "temperature" or len(calibrated.calibrated_classifiers_) != 1:
        return None
    inner = calibrated.calibrated_classifiers_[0]
    linear = inner.estimator
    if not hasattr(linear, "coef_") or not hasattr(linear, "intercept_"):
        return None
    if len(inner.calibrators) != 1 or linear.coef_.shape[0] < 3:
        return None  # binary decision functions take another branch in scikit-learn
    return vectorizers, tfidf, linear, inner.calibrators[0]


_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's own run-of-whitespace rule


def _featurizer(vectorizer: Any) -> Callable[[list[str]], Any]:
    """``vectorizer.transform`` without its per-call set-up (analyzer and hasher rebuilt on
    every call), and, for fixed-length character n-grams, without the per-n-gram Python loop:
    ~3 us less per text (profiled); the equality check in :func:`compile_lean` covers it."""
    from sklearn.feature_extraction import FeatureHasher

    if vectorizer.binary or vectorizer.norm is not None:
        return vectorizer.transform  # type: ignore[no-any-return]
    hasher = FeatureHasher(
        n_features=vectorizer.n_features,
        input_type="string",
        dtype=vectorizer.dtype,
        alternate_sign=vectorizer.alternate_sign,
    )
    analyze: Callable[[str], list[str]] = vectorizer.build_analyzer()
    low, high = vectorizer.ngram_range
    if vectorizer.analyzer == "char" and low == high > 1:
        preprocess = vectorizer.build_preprocessor()

        def analyze(doc: str) -> list[str]:
            text = _WHITE_SPACES.sub(" ", preprocess(doc))
            return [text[i : i + low] for i in range(len(text) - low + 1)]

    def featurize(texts: list[str]) -> Any:
        return hasher.transform(analyze(doc) for doc in texts)

    return featurize


def compile_lean(estimator: Any, probe_texts: Sequence[str]) -> Predict | None:
    """A faster ``predict_proba`` for ``estimator``, or None if it cannot be proven equal."""
    import scipy.sparse as sp

    parts = _parts(estimator)
    if parts is None:
        return None
    vectorizers, tfidf, linear, calibrator = parts
    featurizers = [_featurizer(v) for v in vectorizers]
    coef_t = np.ascontiguousarray(linear.coef_.T)
    intercept = linear.intercept_

    def predict(texts: list[str]) -> npt.NDArray[np.float64]:
        features = sp.hstack([featurize(texts) for featurize in featurizers], format="csr")
        weighted = tfidf.transform(features)
        scores = weighted @ coef_t + intercept
        proba: npt.NDArray[np.float64] = calibrator.predict(np.asarray(scores))
        # scikit-learn's own last step: probabilities a hair above 1.0 are clipped to 1.0
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba

    try:
        texts = list(probe_texts)
        expected = np.asarray(estimator.predict_proba(texts), dtype=np.float64)
        got = predict(texts)
        single = predict(texts[:1])
    except Exception as exc:  # any surprise means: keep scikit-learn's path
        log.info("lean inference path not used: %s", exc)
        return None
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=1e-9):
        log.warning("lean inference path differs from scikit-learn's; not used")
        return None
    if not np.allclose(single, expected[:1], rtol=0, atol=1e-9):
        return None
    return predict
