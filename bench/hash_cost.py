"""CPU per text of the lean model's feature hashing, two versions alternating in one process.

    .venv/bin/python bench/hash_cost.py --stages          # this checkout: its stages alone
    .venv/bin/python bench/hash_cost.py --before /tmp/base/src/falcon_platform/model/hashing.py
    taskset -c 0 .venv/bin/python bench/hash_cost.py ...  # pinned, as the server

Batches of ``--batch`` texts made as ``bench/wrk_infer.lua``'s unique mode makes them (the
benchmark's texts) or from the training corpus (``--corpus``), hashed with the default
model's two hashers (word 1-2-grams and char 4-grams, 2**16 features each). With
``--before``, that file's ``hash_features`` and this checkout's run alternately, 15 rounds,
after checking that their outputs are equal; CPU time (``thread_time``) per text.
``--stages``: the word and char span building and the murmurhash alone, and, for comparison,
a bounded-dict cache of n-gram hashes (a lookup per n-gram, every lookup a hit: its best case).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from v2_cost import text  # the sibling script: wrk_infer.lua's texts

from falcon_platform.model.hashing import HashSpec, hash_features

SPECS = [
    HashSpec(analyzer="word", ngram_range=(1, 2), n_features=2**16),
    HashSpec(analyzer="char", ngram_range=(4, 4), n_features=2**16),
]


def load(path: Path) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location("hashing_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hashing_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    fn: Callable[..., Any] = module.hash_features
    return fn


def batches(args: argparse.Namespace) -> list[list[str]]:
    if args.corpus:
        import csv

        from falcon_platform.model.training import default_corpus_path

        with default_corpus_path().open() as f:
            texts = [row["text"] for row in csv.DictReader(f)]
    else:
        texts = [text(i, i % 64, "hash") for i in range(args.batch * 200)]
    return [texts[i : i + args.batch] for i in range(0, len(texts) - args.batch, args.batch)][:200]


def per_text_us(fn: Callable[..., Any], work: list[list[str]]) -> float:
    start = time.thread_time()
    n = 0
    for batch in work:
        fn(batch, SPECS)
        n += len(batch)
    return (time.thread_time() - start) / n * 1e6


def stages(work: list[list[str]], rounds: int) -> None:
    import numpy as np

    from falcon_platform.model import hashing

    lowered = [[t.lower() for t in batch] for batch in work]
    spans = [(hashing._word_spans(b, SPECS[0]), hashing._char_spans(b, SPECS[1])) for b in lowered]
    flat = [
        (w.data + c.data, np.concatenate([w.starts, c.starts + len(w.data)]),
         np.concatenate([w.lengths, c.lengths]))
        for w, c in spans
    ]  # fmt: skip
    cache: dict[bytes, int] = {}

    def cached(data: bytes, starts: Any, lengths: Any) -> Any:
        get, out = cache.get, []
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            key = data[start : start + length]
            found = get(key)
            if found is None:
                found = cache[key] = 0
            out.append(found)
        return np.array(out, dtype=np.uint32)

    def timed(fn: Callable[[int], object]) -> float:
        start = time.thread_time()
        for i in range(len(work)):
            fn(i)
        return (time.thread_time() - start) / sum(map(len, work)) * 1e6

    for i in range(len(work)):
        cached(*flat[i])  # fill the cache: every timed lookup hits
    for _ in range(rounds):
        row = {
            "all": timed(lambda i: hash_features(work[i], SPECS)),
            "word spans": timed(lambda i: hashing._word_spans(lowered[i], SPECS[0])),
            "char spans": timed(lambda i: hashing._char_spans(lowered[i], SPECS[1])),
            "murmurhash": timed(lambda i: hashing.murmurhash3_32(*flat[i])),
            "dict cache": timed(lambda i: cached(*flat[i])),
        }
        print("  ".join(f"{name} {us:.2f}" for name, us in row.items()), "µs CPU per text")
    ngrams = sum(f[1].size for f in flat) / sum(map(len, work))
    print(f"{ngrams:.1f} n-grams per text, load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another version's model/hashing.py")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--corpus", action="store_true", help="the training corpus' texts")
    parser.add_argument("--stages", action="store_true", help="time the stages, then stop")
    args = parser.parse_args()
    work = batches(args)
    if args.stages:
        stages(work, 3)
        return
    variants: dict[str, Callable[..., Any]] = {"after": hash_features}
    if args.before is not None:
        variants = {"before": load(args.before), **variants}
        for batch in work[:50]:
            old, new = (fn(batch, SPECS) for fn in variants.values())
            assert all((a == b).all() for a, b in zip(old, new, strict=True)), "outputs differ"
    results: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        per_text_us(fn, work[:20])  # warm-up
    for round_ in range(args.rounds):
        order = list(variants.items())
        for name, fn in order if round_ % 2 == 0 else order[::-1]:
            results[name].append(per_text_us(fn, work))
    for name, values in results.items():
        spread = f"{min(values):.2f}–{max(values):.2f}"
        print(f"{name:7s} {statistics.median(values):6.2f} µs CPU per text (median; {spread})")
    print(f"batches of {args.batch}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
