"""Which types a model artifact may contain beyond what skops already trusts.

skops refuses to construct any type it does not trust by default (its default list covers
scikit-learn's public estimators, numpy arrays and plain builtins); ``get_untrusted_types``
names the rest. Falcon accepts exactly the names below — scikit-learn / numpy / scipy
internals that ordinary fitted estimators contain — and nothing else: a custom class, a
function reference (``builtins.eval``, ``os.system``) or any other module is refused, so
loading a model file never runs code chosen by whoever wrote it.

Use::

    refused = disallowed_types(skops.io.get_untrusted_types(data=data))
    if refused: ...
"""

from __future__ import annotations

from collections.abc import Iterable

#: Exact fully qualified names (no prefixes: ``numpy.`` would also admit ``numpy.load``).
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        # CalibratedClassifierCV's fitted parts (the default model uses temperature scaling)
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.isotonic.IsotonicRegression",
        # cross-validation splitters kept as a fitted estimator's `cv` parameter
        "sklearn.model_selection._split.KFold",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.model_selection._split.ShuffleSplit",
        "sklearn.model_selection._split.StratifiedShuffleSplit",
        # fitted decision trees / forests / boosting
        "sklearn.tree._tree.Tree",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        # dtypes stored as estimator parameters (e.g. `dtype=np.float32`)
        "numpy.float32",
        "numpy.float64",
        "numpy.int32",
        "numpy.int64",
        "numpy.dtype",
        # scipy sparse matrices kept as fitted attributes
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csr.csr_array",
        "scipy.sparse._csc.csc_matrix",
        "scipy.sparse._csc.csc_array",
    }
)


def disallowed_types(untrusted: Iterable[str]) -> list[str]:
    """The names in ``untrusted`` that are not on :data:`ALLOWED_TYPES`, sorted.

    >>> disallowed_types(["sklearn.tree._tree.Tree", "builtins.eval"])
    ['builtins.eval']
    """
    return sorted(set(untrusted) - ALLOWED_TYPES)
