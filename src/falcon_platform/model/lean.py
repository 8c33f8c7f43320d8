"""The default model as plain arrays, served with NumPy only.

At train time :mod:`falcon_platform.model.export` writes the fitted pipeline's parameters
(hashing parameters, idf, coefficients, intercepts, the calibration temperature) into
``lean-<sha12>.npz`` beside the skops artifact, and records in ``metadata.json`` its sha256,
its parameters, probe texts and the exact probabilities scikit-learn gave for them. A worker
loads that file with NumPy, recomputes the probes and refuses to serve if a single
probability differs by more than 1e-9 (they are bit-for-bit equal on this machine's builds)::

    lean = LeanPipeline.from_arrays(params, arrays)      # see load_lean_model in registry
    lean.predict_proba(["great screen but the battery died"])   # scikit-learn's classes order

It computes what this scikit-learn pipeline computes, in the same order and floating-point
types, so the results are equal and not merely close::

    Pipeline[FeatureUnion[HashingVectorizer(norm=None, dtype=float32), ...],
             TfidfTransformer, CalibratedClassifierCV(<linear>, method="temperature",
                                                       ensemble=False)]

* features: :func:`falcon_platform.model.hashing.hash_features` (float32 counts);
* tf-idf: ``log(tf) + 1`` in float32 (``sublinear_tf``), times idf (float32), each row divided
  by its l2 norm (float32 squares summed in float64, in column order, as scikit-learn's
  ``_inplace_csr_row_normalize_l2``);
* decision function: float64 products summed in column order (``np.bincount`` is sequential,
  as SciPy's CSR product) plus the intercepts;
* temperature scaling: scikit-learn's ``softmax(beta * logits)``, including its rule that a
  batch of scores which all look like probabilities is taken as probabilities (log + 1e-12).

Written by hand because no library turns a fitted scikit-learn pipeline into arrays for a
process that must not import scikit-learn; the probes at load are what make it safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from falcon_platform.model.hashing import HashSpec, hash_features

Floats = npt.NDArray[np.float64]

#: Bump when the arrays or their meaning change; a worker refuses formats it does not know.
LEAN_FORMAT = 1
#: The largest difference from scikit-learn's probabilities a worker accepts at load.
PROBE_TOLERANCE = 1e-9
NORMS = ("l2", "l1", None)


@dataclass(frozen=True)
class LeanParams:
    """The non-array parameters, as stored in ``metadata.json`` (``lean.params``)."""

    hashers: tuple[HashSpec, ...]
    classes: tuple[str, ...]
    sublinear_tf: bool
    use_idf: bool
    norm: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "hashers": [
                {
                    "analyzer": h.analyzer,
                    "ngram_range": list(h.ngram_range),
                    "n_features": h.n_features,
                    "lowercase": h.lowercase,
                    "token_pattern": h.token_pattern,
                    "alternate_sign": h.alternate_sign,
                }
                for h in self.hashers
            ],
            "classes": list(self.classes),
            "tfidf": {"sublinear_tf": self.sublinear_tf, "use_idf": self.use_idf,
                      "norm": self.norm},
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LeanParams:
        """Parse ``to_json``'s output; ``ValueError``/``KeyError``/``TypeError`` if malformed."""
        hashers = tuple(
            HashSpec(
                analyzer=str(h["analyzer"]),
                ngram_range=(int(h["ngram_range"][0]), int(h["ngram_range"][1])),
                n_features=int(h["n_features"]),
                lowercase=bool(h["lowercase"]),
                token_pattern=str(h["token_pattern"]),
                alternate_sign=bool(h["alternate_sign"]),
            )
            for h in raw["hashers"]
        )
        tfidf = raw["tfidf"]
        norm = tfidf["norm"]
        if norm not in NORMS or not hashers:
            raise ValueError(f"unsupported tf-idf norm {norm!r} or no hashers")
        return cls(
            hashers=hashers,
            classes=tuple(str(c) for c in raw["classes"]),
            sublinear_tf=bool(tfidf["sublinear_tf"]),
            use_idf=bool(tfidf["use_idf"]),
            norm=norm,
        )


#: The arrays in the ``.npz`` file, their dtypes and number of dimensions.
ARRAYS = {"idf": (np.float32, 1), "coef": (np.float64, 2), "intercept": (np.float64, 1),
          "beta": (np.float64, 0)}  # fmt: skip


@dataclass(eq=False)
class LeanPipeline:
    """Hashed tf-idf → linear scores → temperature-scaled softmax, over NumPy arrays."""

    params: LeanParams
    idf: npt.NDArray[np.float32] | None  # (n_features,) or None without use_idf
    coef: Floats  # (n_classes, n_features), C-contiguous: one take along axis 1 per batch
    intercept: Floats  # (n_classes,)
    beta: float
    width: int = field(init=False)
    _signed: bool = field(init=False)  # a hasher with alternate_sign: counts can be <= 0
    _class_range: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.width = sum(h.n_features for h in self.params.hashers)
        self._signed = any(h.alternate_sign for h in self.params.hashers)
        self._class_range = np.arange(self.intercept.size, dtype=np.int64)

    @classmethod
    def from_arrays(cls, params: LeanParams, arrays: dict[str, Any]) -> LeanPipeline:
        """Check shapes and dtypes against ``params``; ``ValueError`` says what is wrong."""
        for name, (dtype, ndim) in ARRAYS.items():
            value = arrays.get(name)
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.ndim != ndim:
                raise ValueError(f"array {name!r} missing or not {np.dtype(dtype)}[{ndim}d]")
        coef, intercept = arrays["coef"], arrays["intercept"]
        width = sum(h.n_features for h in params.hashers)
        n_classes = len(params.classes)
        if coef.shape != (n_classes, width) or intercept.shape != (n_classes,):
            raise ValueError(f"coef {coef.shape} / intercept {intercept.shape} do not fit "
                             f"{n_classes} classes x {width} features")  # fmt: skip
        idf = arrays["idf"]
        if params.use_idf and idf.shape != (width,):
            raise ValueError(f"idf has shape {idf.shape}, expected ({width},)")
        if n_classes < 3:
            raise ValueError("binary models are not exported (scikit-learn takes another branch)")
        return cls(
            params=params,
            idf=idf if params.use_idf else None,
            coef=np.ascontiguousarray(coef),
            intercept=intercept,
            beta=float(arrays["beta"]),
        )

    def predict_proba(self, texts: Sequence[str]) -> Floats:
        """Probabilities, shape ``(len(texts), len(classes))``, in ``params.classes`` order."""
        n = len(texts)
        rows, cols, counts = hash_features(texts, self.params.hashers)
        data = counts.astype(np.float32)
        if self.params.sublinear_tf:
            if self._signed:  # counts can be <= 0: log warns, silently in scikit-learn
                with np.errstate(divide="ignore", invalid="ignore"):
                    np.log(data, out=data)
            else:
                np.log(data, out=data)
            data += np.float32(1.0)
        if self.idf is not None:
            data *= self.idf[cols]
        data = self._normalise(data, rows, n)
        # scores[i, k] = sum over row i's features, in column order, of value * coef[k, col]
        # (float64, summed sequentially from 0 as SciPy's CSR product): one bincount over
        # every (class, row) bin instead of one per class, on (classes, nnz) arrays (NumPy's
        # inner loops run along nnz, not along the 3 classes)
        classes = self.intercept.size
        weighted = self.coef.take(cols, axis=1)
        weighted *= data.astype(np.float64)
        bins = rows + self._class_range[:, None] * n
        summed = np.bincount(bins.ravel(), weights=weighted.ravel(), minlength=classes * n)
        # C order, as scikit-learn's (n, classes) scores: the calibration's row sums depend
        # on it; float64 also when the batch has no feature at all (bincount's int64 zeros)
        scores = np.ascontiguousarray(summed.reshape(classes, n).T, dtype=np.float64)
        scores += self.intercept
        return self._calibrate(scores)

    def _normalise(self, data: npt.NDArray[np.float32], rows: Any, n: int) -> Any:
        norm = self.params.norm
        if norm is None:
            return data
        # float32 terms added into a float64 per row, in column order (bincount is sequential)
        terms = data * data if norm == "l2" else np.abs(data)
        sums = np.bincount(rows, weights=terms, minlength=n)
        if norm == "l2":
            sums = np.sqrt(sums)
        sums[sums == 0.0] = 1.0  # scikit-learn leaves all-zero rows alone
        divided = data.astype(np.float64)
        divided /= sums[rows]
        return divided.astype(np.float32)

    def _calibrate(self, scores: Floats) -> Floats:
        # scikit-learn's _convert_to_logits: if every score of the batch lies in [0, 1] and
        # every row sums to ~1, the batch is taken as probabilities (min/max: NaN fails both,
        # as it fails np.all of the comparisons)
        looks_like_proba = scores.size == 0 or (
            bool(scores.min() >= 0)
            and bool(scores.max() <= 1)
            and bool(np.all(np.isclose(np.sum(scores, axis=1), 1.0)))
        )
        logits = np.log(scores + 1e-12) if looks_like_proba else scores
        x = self.beta * logits
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=1, keepdims=True)
        above = x > 1.0
        if above.any():  # CalibratedClassifierCV's last step
            x[above & (x <= 1.0 + 1e-5)] = 1.0
        return x


def probe_differences(
    lean: LeanPipeline, texts: Sequence[str], batch: Floats, single: Floats
) -> float:
    """The largest absolute difference from scikit-learn's probabilities for ``texts``,
    scored as one batch (``batch``) and one text at a time (``single``); inf if shapes differ."""
    together = lean.predict_proba(list(texts))
    one_by_one = np.vstack([lean.predict_proba([t]) for t in texts])
    if together.shape != batch.shape or one_by_one.shape != single.shape:
        return float("inf")
    return float(max(np.max(np.abs(together - batch)), np.max(np.abs(one_by_one - single))))


@dataclass(eq=False)  # not frozen: ServableModel declares plain (settable) attributes
class LeanModel:
    """A verified lean export ready to serve; implements
    :class:`falcon_platform.model.base.ServableModel` without scikit-learn."""

    name: str
    version: str
    sha256: str
    labels: tuple[str, ...]
    metadata: dict[str, Any]
    pipeline: LeanPipeline = field(repr=False)
    # params.classes position of each label, so columns come out in `labels` order
    columns: tuple[int, ...] = field(repr=False)

    def predict_proba(self, texts: Sequence[str]) -> Floats:
        """Shape ``(len(texts), len(labels))``, float64, each row summing to 1."""
        if len(texts) == 0:
            return np.empty((0, len(self.labels)), dtype=np.float64)
        proba = self.pipeline.predict_proba(texts)
        if self.columns != tuple(range(len(self.columns))):
            proba = proba[:, self.columns]
        # float32 features leave rows ~1e-7 off 1; callers and clients expect an exact sum
        proba /= proba.sum(axis=1, keepdims=True)
        return proba
