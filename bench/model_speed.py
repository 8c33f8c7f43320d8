"""How much the default model costs per text, alone (no HTTP), and how much memory it adds.

    .venv/bin/python bench/model_speed.py                 # trains into a temp dir first
    .venv/bin/python bench/model_speed.py --path DIR      # an existing model directory
    taskset -c 0 .venv/bin/python bench/model_speed.py    # pinned to one core, as the server

Prints the per-text cost of ``LoadedModel.predict_proba`` for one text and for batches of 8
and 64 (the serving path's maximum batch), the speed-up batching gives, the worker's RSS after
imports, after loading the model and after the timed loop, and the artifact's size.

The machine is shared and noisy, so the same run also times a reference model — word-only
``TfidfVectorizer`` + ``LogisticRegression``, the kind of model the DESIGN performance notes
measured (~414 µs single, ~13 µs/text in a batch of 64) — and prints the ratio to it, which
stays meaningful when absolute numbers do not.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import psutil


def _per_text_us(models: list[object], texts: list[str], batch: int, seconds: float) -> list[float]:
    """Median µs per text of one ``predict_proba`` call of each model, calls interleaved.

    Interleaving makes noise from other processes hit every model alike, so ratios hold.
    """
    predicts = [model.predict_proba for model in models]  # type: ignore[attr-defined]
    rng = random.Random(0)
    samples: list[list[float]] = [[] for _ in models]
    for predict in predicts:  # warm-up
        for _ in range(5):
            predict(rng.sample(texts, batch))
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples[0]) < 20:
        chunk = rng.sample(texts, batch)
        for predict, into in zip(predicts, samples, strict=True):
            start = time.perf_counter()
            predict(chunk)
            into.append((time.perf_counter() - start) / batch * 1e6)
    return [statistics.median(one) for one in samples]


def _reference_model(texts: list[str]) -> object:
    """Word-only TF-IDF + logistic regression, fitted on the corpus (labels are irrelevant)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    labels = [i % 3 for i in range(len(texts))]
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression()).fit(
        texts, labels
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="model directory (default: train one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    process = psutil.Process()

    import numpy  # noqa: F401  (imports count towards the baseline, as in a worker)
    import sklearn  # noqa: F401
    import skops.io  # noqa: F401

    from falcon_platform.model.registry import load_model, train_and_save
    from falcon_platform.model.training import default_corpus_path

    rss_imports = process.memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        path = args.path
        if path is None:
            path = Path(tmp) / "model"
            train_and_save(path)
            rss_imports = process.memory_info().rss
        start = time.perf_counter()
        model = load_model(path)
        load_ms = (time.perf_counter() - start) * 1e3
        rss_loaded = process.memory_info().rss
        artifact_kb = (path / model.metadata["artifact"]).stat().st_size / 1024

        with default_corpus_path().open(newline="", encoding="utf-8") as handle:
            texts = [row["text"] for row in csv.DictReader(handle)]
        reference = _reference_model(texts)
        both = {b: _per_text_us([model, reference], texts, b, args.seconds) for b in (1, 8, 64)}
        results = {batch: pair[0] for batch, pair in both.items()}
        ref = {batch: pair[1] for batch, pair in both.items()}
    rss_after = process.memory_info().rss
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    mb = 1024 * 1024
    print(f"model {model.version}  artifact {artifact_kb:.0f} KiB  load {load_ms:.0f} ms")
    print(f"mean text length {statistics.mean(len(t) for t in texts):.0f} chars")
    for batch, us in results.items():
        print(f"batch {batch:>3}: {us:8.1f} µs per text  ({us * batch / 1e3:6.2f} ms per call)")
    print(f"batching speed-up (1 vs 64): {results[1] / results[64]:.1f}x")
    for batch, us in ref.items():
        print(
            f"reference word-only TF-IDF+LR, batch {batch:>3}: {us:8.1f} µs per text; "
            f"Falcon's model costs {results[batch] / us:.2f}x that"
        )
    print(
        f"RSS: after imports {rss_imports / mb:.0f} MB, after load {rss_loaded / mb:.0f} MB "
        f"(+{(rss_loaded - rss_imports) / mb:.1f}), after timing {rss_after / mb:.0f} MB; "
        f"peak {peak_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
