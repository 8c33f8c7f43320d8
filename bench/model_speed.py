"""How much the default model costs per text, alone (no HTTP), and how much memory it takes.

    .venv/bin/python bench/model_speed.py                 # trains into a temp dir first
    .venv/bin/python bench/model_speed.py --path DIR      # an existing model directory
    taskset -c 0 .venv/bin/python bench/model_speed.py    # pinned to one core, as the server
    .venv/bin/python bench/model_speed.py --before /tmp/base/src   # another checkout's lean model

Times ``predict_proba`` of the same model served two ways, calls interleaved so that noise
from other processes hits both alike: the lean export (NumPy only, what a worker serves) and
the skops artifact through scikit-learn (what a model without a lean export gets), for one
text and for batches of 8 and 64 (the serving path's maximum batch). A word-only
``TfidfVectorizer`` + ``LogisticRegression`` fitted on the corpus is timed in the same run as
a reference. Memory is measured in fresh processes: RSS after importing what each way needs,
loading the model and scoring 64 texts.

``--before SRC``: instead, the lean model of another checkout (``SRC/falcon_platform/model``'s
``lean.py`` and ``hashing.py``, loaded under other names, on this model's arrays) against this
checkout's, alternating in one process, ``--rounds`` rounds over the same batches of ``--batch``
texts (``bench/wrk_infer.lua``'s unique texts, then the training corpus'), after checking that
both give the same probabilities bit for bit; CPU time (``thread_time``) per text.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run in a fresh interpreter: import, load, score, then print RSS (MiB) and the module count.
MEMORY_PROBE = """
import sys
from pathlib import Path
from falcon_platform.model.registry import load_model
model = load_model(Path(sys.argv[1]), lean=sys.argv[2] == "lean")
model.predict_proba(["warm up the model with a few words"] * 64)
rss = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "scipy", "skops"})
print(f"{rss:.1f} {type(model).__name__} {','.join(heavy) or '-'}")
"""


def _per_text_us(models: list[object], texts: list[str], batch: int, seconds: float) -> list[float]:
    """Median µs per text of one ``predict_proba`` call of each model, calls interleaved."""
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


def _load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _thread_us_per_text(predict: Any, batches: list[list[str]]) -> float:
    start = time.thread_time()
    for batch in batches:
        predict(batch)
    return (time.thread_time() - start) / sum(map(len, batches)) * 1e6


def compare(lean: Any, before_src: Path, texts: list[str], batch: int, rounds: int) -> None:
    """Another checkout's lean model against this one's, alternating (see the docstring)."""
    import numpy as np
    from v2_cost import text  # the sibling script: wrk_infer.lua's texts

    model_dir = before_src / "falcon_platform" / "model"
    hashing = _load_module("falcon_before_hashing", model_dir / "hashing.py")
    lean_module = _load_module("falcon_before_lean", model_dir / "lean.py")
    lean_module.hash_features = hashing.hash_features  # its own hashing, not this checkout's
    mine = lean.pipeline
    coef = getattr(mine, "coef", None)
    arrays = {"idf": mine.idf, "coef": coef if coef is not None else mine.coef_t.T,
              "intercept": mine.intercept, "beta": np.array(mine.beta)}  # fmt: skip
    pipeline = lean_module.LeanPipeline.from_arrays(mine.params, arrays)
    before = lean_module.LeanModel(lean.name, lean.version, lean.sha256, lean.labels,
                                   lean.metadata, pipeline, lean.columns)  # fmt: skip
    wrk = [text(i, i % 64, "model") for i in range(batch * 200)]
    for name, pool in (("wrk_infer.lua's", wrk), ("the corpus'", texts)):
        batches = [pool[i : i + batch] for i in range(0, len(pool) - batch + 1, batch)][:200]
        for chunk in batches:
            if not np.array_equal(before.predict_proba(chunk), lean.predict_proba(chunk)):
                raise SystemExit(f"the two lean models disagree on {chunk!r}")
        runs: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(rounds):
            runs["before"].append(_thread_us_per_text(before.predict_proba, batches))
            runs["after"].append(_thread_us_per_text(lean.predict_proba, batches))
        print(f"{name} texts, batches of {batch}, CPU µs per text, {rounds} alternations:")
        for side, values in runs.items():
            listed = " / ".join(f"{v:.2f}" for v in values)
            print(f"  {side:6s} median {statistics.median(values):6.2f}  ({listed})")
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="model directory (default: train one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--before", type=Path, help="another checkout's src: A/B the lean model")
    parser.add_argument("--batch", type=int, default=32, help="with --before: texts per call")
    parser.add_argument("--rounds", type=int, default=7, help="with --before: alternations")
    args = parser.parse_args()

    from falcon_platform.model.registry import load_model, train_and_save
    from falcon_platform.model.training import default_corpus_path

    with tempfile.TemporaryDirectory() as tmp:
        path = args.path
        if path is None:
            path = Path(tmp) / "model"
            train_and_save(path)
        start = time.perf_counter()
        lean = load_model(path)
        load_ms = (time.perf_counter() - start) * 1e3
        plain = load_model(path, lean=False)
        if type(lean) is type(plain):
            raise SystemExit(f"{path} has no lean export: retrain it with this Falcon")
        with default_corpus_path().open(newline="", encoding="utf-8") as handle:
            texts = [row["text"] for row in csv.DictReader(handle)]
        if args.before is not None:
            compare(lean, args.before, texts, args.batch, args.rounds)
            return
        reference = _reference_model(texts)
        timed = {b: _per_text_us([lean, plain, reference], texts, b, args.seconds)
                 for b in (1, 8, 64)}  # fmt: skip
        memory = {
            way: subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), way],
                                capture_output=True, text=True, check=True).stdout.split()
            for way in ("lean", "skops")
        }  # fmt: skip
        sizes = {p.suffix: p.stat().st_size / 1024 for p in path.iterdir() if p.suffix != ".json"}

    print(f"model {lean.version}  files: skops {sizes.get('.skops', 0):.0f} KiB, lean npz "
          f"{sizes.get('.npz', 0):.0f} KiB  load (lean, probes checked) {load_ms:.0f} ms")  # fmt: skip
    print(f"mean text length {statistics.mean(len(t) for t in texts):.0f} chars")
    for batch, (ours, sk, ref) in timed.items():
        print(f"batch {batch:>3}: lean {ours:7.1f} µs/text | scikit-learn path {sk:7.1f} "
              f"({sk / ours:.2f}x lean) | word-only TF-IDF+LR reference {ref:7.1f} "
              f"(lean = {ours / ref:.2f}x it)")  # fmt: skip
    print(f"batching speed-up of the lean path (1 vs 64): {timed[1][0] / timed[64][0]:.1f}x")
    for way, (rss, kind, heavy) in memory.items():
        print(f"fresh process, {way:>5}: {kind:<11} RSS {rss} MiB after load + one batch; "
              f"scikit-learn/SciPy/skops imported: {heavy}")  # fmt: skip


if __name__ == "__main__":
    main()
