"""Held-out metrics for a probabilistic classifier: plain data in, plain (JSON-able) data out.

Use::

    metrics = evaluate(["pos", "neg"], np.array([[0.2, 0.8], [0.9, 0.1]]), ("neg", "pos"))
    metrics["accuracy"], metrics["macro_f1"], metrics["confusion_matrix"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

CALIBRATION_BINS = 10


def evaluate(y_true: Sequence[str], proba: npt.ArrayLike, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores, confusion matrix and calibration of ``proba``.

    ``proba`` columns are in ``labels`` order. The confusion matrix has one row per true label
    and one column per predicted label, both in ``labels`` order.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    probabilities = np.asarray(proba, dtype=np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    label_list = list(labels)
    truth = np.asarray(list(y_true), dtype=object)
    predicted = np.asarray(label_list, dtype=object)[probabilities.argmax(axis=1)]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=label_list, zero_division=0
    )
    return {
        "n_test": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(
            f1_score(truth, predicted, labels=label_list, average="macro", zero_division=0)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(label_list)
        },
        "confusion_matrix": {
            "labels": label_list,
            "matrix": confusion_matrix(truth, predicted, labels=label_list).tolist(),
        },
        "log_loss": float(log_loss(truth, probabilities, labels=label_list)),
        "expected_calibration_error": expected_calibration_error(probabilities, truth == predicted),
    }


def expected_calibration_error(
    probabilities: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_]
) -> float:
    """Top-label ECE over equal-width confidence bins.

    Written by hand because scikit-learn has no multiclass ECE (``calibration_curve`` is binary).

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([True, False]))
    0.35
    """
    confidence = probabilities.max(axis=1)
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    # bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 cannot occur
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, CALIBRATION_BINS - 1)
    total = 0.0
    for index in range(CALIBRATION_BINS):
        members = bins == index
        if members.any():
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            total += float(members.mean()) * gap
    return round(total, 6)
