"""How well the default model does on review text written apart from its training corpus.

    .venv/bin/python bench/model_quality.py                      # the shipped corpus
    .venv/bin/python bench/model_quality.py --corpus old.csv --corpus new.csv   # side by side
    .venv/bin/python bench/model_quality.py --errors             # list what it gets wrong
    .venv/bin/python bench/model_quality.py --lexicon            # + VADER lexicon features
                                                                 #   (pip install vadersentiment)

Each corpus trains the default model exactly as ``falcon model train`` does (stratified
80/20 split, seed 42, fitted on the 80 %), which is then scored on
``src/falcon_platform/model/data/heldout.csv``: 330 texts (110 per class) written as
realistic reviews, apart from and before the corpus's newer sentences, and never trained on.
For an old corpus: ``git show <rev>:src/falcon_platform/model/data/sentiment.csv > old.csv``.

``--lexicon`` also fits the same features plus three VADER scores per text (compound,
positive and negative share; scaled by 0.5) and prints both 5-fold cross-validation on the
corpus and the held-out accuracy: it is how the lexicon was judged (see CAPACITY_PLAN/README).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from falcon_platform.model.evaluation import evaluate
from falcon_platform.model.training import (
    TrainingConfig,
    build_pipeline,
    default_corpus_path,
    load_corpus,
    train_model,
)


def heldout_path() -> Path:
    return Path(str(resources.files("falcon_platform.model").joinpath("data", "heldout.csv")))


def read_heldout(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def lexicon_comparison(corpus_path: Path, texts: list[str], labels: list[str]) -> None:
    """5-fold CV on the corpus and held-out accuracy, without and with VADER scores."""
    import scipy.sparse as sp
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import StratifiedKFold

    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise SystemExit("--lexicon needs `pip install vadersentiment` (MIT licence)") from None
    analyzer = SentimentIntensityAnalyzer()

    def scores(docs: list[str]) -> Any:
        rows = [analyzer.polarity_scores(d) for d in docs]
        return 0.5 * np.array([[r["compound"], r["pos"], r["neg"]] for r in rows])

    def fit_predict(train_x: list[str], train_y: list[str], test_x: list[str], lex: bool) -> Any:
        pipe = build_pipeline(TrainingConfig())
        features = pipe.steps[0][1]
        tfidf, classifier = pipe.steps[1][1], pipe.steps[2][1]
        a = tfidf.fit_transform(features.fit_transform(train_x))
        b = tfidf.transform(features.transform(test_x))
        if lex:
            a = sp.hstack([a, scores(train_x)]).tocsr()
            b = sp.hstack([b, scores(test_x)]).tocsr()
        return classifier.fit(a, train_y).predict(b)

    corpus = load_corpus(corpus_path)
    x, y = list(corpus.texts), np.array(corpus.labels)
    for lex in (False, True):
        folds = np.empty(len(y), dtype=object)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
            folds[test] = fit_predict([x[i] for i in train], list(y[train]),
                                      [x[i] for i in test], lex)  # fmt: skip
        held = fit_predict(x, list(y), texts, lex)
        print(f"{'with VADER scores' if lex else 'without lexicon':<20} 5-fold CV accuracy "
              f"{accuracy_score(y, folds):.3f} | held-out accuracy "
              f"{accuracy_score(labels, held):.3f}  (all of the corpus trains here)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, action="append", help="training CSV (repeatable)")
    parser.add_argument("--heldout", type=Path, default=None, help="test CSV (text,label)")
    parser.add_argument("--errors", action="store_true", help="print every misclassified text")
    parser.add_argument("--lexicon", action="store_true", help="compare VADER lexicon features")
    args = parser.parse_args()
    texts, labels = read_heldout(args.heldout or heldout_path())
    print(f"held-out texts: {len(texts)} {dict(Counter(labels))}")
    for path in args.corpus or [default_corpus_path()]:
        corpus = load_corpus(path)
        result = train_model(corpus)
        proba = result.estimator.predict_proba(texts)
        metrics = evaluate(labels, proba, result.labels)
        recall = {k: round(v["recall"], 3) for k, v in metrics["per_class"].items()}
        print(f"\ncorpus {path} ({len(corpus.texts)} rows, trained on {metrics_n(result)}):")
        print(f"  held-out accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}"
              f"  log loss {metrics['log_loss']:.3f}  ECE "
              f"{metrics['expected_calibration_error']:.3f}")  # fmt: skip
        print(f"  recall per class {recall}")
        print(f"  confusion (rows true, columns predicted, {result.labels}): "
              f"{metrics['confusion_matrix']['matrix']}")  # fmt: skip
        if args.errors:
            predicted = [result.labels[i] for i in proba.argmax(axis=1)]
            for text, want, got in zip(texts, labels, predicted, strict=True):
                if want != got:
                    print(f"    {want:>8} -> {got:<8} {text}")
    if args.lexicon:
        print()
        lexicon_comparison((args.corpus or [default_corpus_path()])[-1], texts, labels)


def metrics_n(result: Any) -> str:
    return f"{result.metrics.get('n_train', '?')} rows"


if __name__ == "__main__":
    main()
