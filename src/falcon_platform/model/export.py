"""Export the default pipeline's fitted parameters as plain arrays (train time only).

:func:`export_lean` recognises the default pipeline's shape (see
:mod:`falcon_platform.model.lean`), copies its parameters into arrays, and proves the NumPy
implementation equal to ``estimator.predict_proba`` on the probe texts before returning.
Any other estimator, or any difference, returns None: the model is then served through
skops and scikit-learn, as before. This module imports scikit-learn; serving never imports it.

    export = export_lean(estimator)          # LeanExport | None
    data = npz_bytes(export.arrays)          # reproducible bytes (fixed zip timestamps)
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from falcon_platform.model.hashing import HashSpec
from falcon_platform.model.lean import (
    ARRAYS,
    PROBE_TOLERANCE,
    LeanParams,
    LeanPipeline,
    probe_differences,
)

log = logging.getLogger("falcon.model")

#: Texts whose probabilities are recorded at export and recomputed by every worker at load:
#: plain, mixed and negated sentences, and the inputs most likely to expose a difference in
#: tokenisation or hashing (empty, shorter than an n-gram, whitespace runs, tabs, non-ASCII,
#: case mappings that change length, emoji with modifiers and joiners, very long).
PROBE_TEXTS: tuple[str, ...] = (
    "falcon model self-check",
    "great screen but the battery died after an hour",
    "not bad at all",
    "THE WORST SUPPORT EVER!!!",
    "the package arrived on tuesday",
    "realy gr8 app, love it",
    "",
    "abc",
    "  tabs\tand\n\nnewlines   and   runs  ",
    "\t",
    "Ünïcödé CAFÉ naïve — 日本語のテキスト",
    "İstanbul'da ΣΊΣΥΦΟΣ straße ﬁne",
    "great 👍🏽 service, family 👨‍👩‍👧 loved it 😀",
    "مرحبا great\u00a0value\u2003ok\u3000fine",
    "a\u200bb\u0301c d",
    "a " * 400,
    "slow " * 1200 + "but fine",
    "é" * 3000,
)


@dataclass(frozen=True)
class LeanExport:
    params: LeanParams
    arrays: dict[str, np.ndarray[Any, Any]]
    probe_texts: tuple[str, ...]
    # scikit-learn's probabilities for the probes, scored as one batch and one by one
    probe_batch: list[list[float]]
    probe_single: list[list[float]]


def _hash_spec(vectorizer: Any) -> HashSpec | None:
    from sklearn.feature_extraction.text import HashingVectorizer

    v = vectorizer
    plain = (
        type(v) is HashingVectorizer
        and v.input == "content"
        and v.analyzer in ("word", "char", "char_wb")
        and v.preprocessor is None
        and v.tokenizer is None
        and v.stop_words is None
        and not v.strip_accents
        and not v.binary
        and v.norm is None
        and np.dtype(v.dtype) == np.float32
    )
    if not plain:
        return None
    return HashSpec(
        analyzer=v.analyzer,
        ngram_range=(int(v.ngram_range[0]), int(v.ngram_range[1])),
        n_features=int(v.n_features),
        lowercase=bool(v.lowercase),
        token_pattern=str(v.token_pattern),
        alternate_sign=bool(v.alternate_sign),
    )


def _parts(estimator: Any) -> tuple[LeanParams, dict[str, np.ndarray[Any, Any]]] | None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 3:
        return None
    (_, union), (_, tfidf), (_, calibrated) = estimator.steps
    if type(union) is not FeatureUnion or union.transformer_weights is not None:
        return None
    specs = [_hash_spec(t) for _, t in union.transformer_list]
    if not specs or any(s is None for s in specs):
        return None
    if type(tfidf) is not TfidfTransformer or tfidf.norm not in ("l2", "l1", None):
        return None
    if type(calibrated) is not CalibratedClassifierCV or calibrated.method != "temperature":
        return None
    if len(calibrated.calibrated_classifiers_) != 1:
        return None  # ensemble=True averages several models
    inner = calibrated.calibrated_classifiers_[0]
    linear = inner.estimator
    coef = getattr(linear, "coef_", None)
    intercept = getattr(linear, "intercept_", None)
    if not isinstance(coef, np.ndarray) or not isinstance(intercept, np.ndarray):
        return None
    if len(inner.calibrators) != 1 or coef.ndim != 2 or coef.shape[0] < 3:
        return None  # binary decision functions take another branch in scikit-learn
    if not callable(getattr(linear, "decision_function", None)):
        return None
    if len(linear.classes_) != len(calibrated.classes_):
        return None  # the inner model sees encoded labels 0..n-1, in calibrated.classes_ order
    beta = np.asarray(inner.calibrators[0].beta_, dtype=np.float64)
    idf = np.asarray(tfidf.idf_) if tfidf.use_idf else np.zeros(0, dtype=np.float32)
    if idf.dtype != np.float32:
        return None
    params = LeanParams(
        hashers=tuple(s for s in specs if s is not None),
        classes=tuple(str(c) for c in calibrated.classes_),
        sublinear_tf=bool(tfidf.sublinear_tf),
        use_idf=bool(tfidf.use_idf),
        norm=tfidf.norm,
    )
    arrays = {
        "idf": idf,
        "coef": np.ascontiguousarray(coef, dtype=np.float64),
        "intercept": np.ascontiguousarray(intercept, dtype=np.float64),
        "beta": beta.reshape(()),
    }
    return params, arrays


def export_lean(estimator: Any, probe_texts: tuple[str, ...] = PROBE_TEXTS) -> LeanExport | None:
    """The estimator's parameters as arrays, proven equal on the probes; None if not possible."""
    parts = _parts(estimator)
    if parts is None:
        return None
    params, arrays = parts
    try:
        lean = LeanPipeline.from_arrays(params, arrays)
        batch = np.asarray(estimator.predict_proba(list(probe_texts)), dtype=np.float64)
        single = np.vstack([estimator.predict_proba([t]) for t in probe_texts])
        worst = probe_differences(lean, probe_texts, batch, single)
    except Exception as exc:  # any surprise means: serve through scikit-learn
        log.warning("no lean export for this model: %s: %s", type(exc).__name__, exc)
        return None
    if not worst <= PROBE_TOLERANCE:
        log.warning("no lean export: it differs from scikit-learn by %.3g on the probes", worst)
        return None
    return LeanExport(params, arrays, probe_texts, batch.tolist(), single.tolist())


def npz_bytes(arrays: dict[str, np.ndarray[Any, Any]]) -> bytes:
    """An ``.npz`` (``numpy.load`` reads it) whose bytes depend only on the arrays.

    ``numpy.savez`` stamps each member with the current time, so equal models would get
    different sha256; this writes the same members with a fixed timestamp, in a fixed order.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(ARRAYS):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return out.getvalue()
