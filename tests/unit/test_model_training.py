"""Training the default model: corpus reading, determinism, evaluation, versioning."""

from __future__ import annotations

import csv
import hashlib
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from falcon_platform.errors import ModelError
from falcon_platform.model.evaluation import evaluate, expected_calibration_error
from falcon_platform.model.registry import train_and_save
from falcon_platform.model.skops_bytes import dumps_reproducible
from falcon_platform.model.training import (
    TrainingConfig,
    load_corpus,
    model_version,
    train_model,
)

_WORDS = {
    "positive": ["great", "lovely", "excellent", "fantastic", "superb", "wonderful"],
    "negative": ["awful", "terrible", "broken", "horrible", "useless", "dreadful"],
    "neutral": ["arrived", "contains", "located", "scheduled", "listed", "measured"],
}
_THINGS = ["phone", "hotel", "app", "pizza", "flight", "support", "screen", "room"]


def write_tiny_corpus(path: Path, per_class: int = 16, seed: int = 0) -> Path:
    """A small separable 3-class corpus, generated so tests need not read the shipped one."""
    rng = random.Random(seed)
    rows = []
    for label, words in _WORDS.items():
        for _ in range(per_class):
            rows.append(
                {
                    "text": f"the {rng.choice(_THINGS)} was {rng.choice(words)} "
                    f"and {rng.choice(words)} overall",
                    "label": label,
                    "domain": "test",
                }
            )
    rng.shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label", "domain"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "tiny.csv")


def test_training_twice_gives_identical_artifact_bytes_and_hashes(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """Same data + config + code => byte-identical skops artifact, same sha256 and version."""
    first = train_and_save(tmp_path / "a", corpus_path=tiny_corpus)
    second = train_and_save(tmp_path / "b", corpus_path=tiny_corpus)
    assert first.sha256 == second.sha256
    assert first.version == second.version
    assert first.artifact == second.artifact
    bytes_a = (tmp_path / "a" / first.artifact).read_bytes()
    bytes_b = (tmp_path / "b" / second.artifact).read_bytes()
    assert bytes_a == bytes_b
    assert hashlib.sha256(bytes_a).hexdigest() == first.sha256


def test_reproducible_bytes_do_not_depend_on_the_object_identity(tiny_corpus: Path) -> None:
    """Two separately fitted (equal) estimators serialise to the same bytes, unlike plain skops."""
    corpus = load_corpus(tiny_corpus)
    one = train_model(corpus).estimator
    two = train_model(corpus).estimator
    assert one is not two
    assert dumps_reproducible(one) == dumps_reproducible(two)


def test_reproducible_bytes_load_back_to_the_same_predictions(tiny_corpus: Path) -> None:
    """The renumbered archive is a valid skops file whose model predicts exactly as the original."""
    import skops.io

    corpus = load_corpus(tiny_corpus)
    estimator = train_model(corpus).estimator
    data = dumps_reproducible(estimator)
    loaded = skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    texts = list(corpus.texts[:20])
    np.testing.assert_array_equal(loaded.predict_proba(texts), estimator.predict_proba(texts))


def test_a_different_seed_or_corpus_changes_the_version(tiny_corpus: Path, tmp_path: Path) -> None:
    """The version identifies data + config: change either and it changes."""
    corpus = load_corpus(tiny_corpus)
    other = load_corpus(write_tiny_corpus(tmp_path / "other.csv", seed=1))
    base = model_version("sentiment", corpus.data_hash, TrainingConfig())
    assert base.startswith(f"sentiment-{corpus.data_hash[:8]}-")
    assert model_version("sentiment", corpus.data_hash, TrainingConfig(seed=7)) != base
    assert model_version("sentiment", other.data_hash, TrainingConfig()) != base


def test_the_data_hash_ignores_extra_columns_and_csv_quoting(tmp_path: Path) -> None:
    """Only (text, label) in order is hashed, so re-saving the CSV keeps the model version."""
    plain = tmp_path / "plain.csv"
    plain.write_text('text,label\nhello there,neutral\n"so, good",positive\n', encoding="utf-8")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text(
        'label,domain,text\n"neutral",x,"hello there"\npositive,y,"so, good"\n', encoding="utf-8"
    )
    assert load_corpus(plain).data_hash == load_corpus(quoted).data_hash
    swapped = tmp_path / "swapped.csv"
    swapped.write_text('text,label\n"so, good",positive\nhello there,neutral\n', encoding="utf-8")
    assert load_corpus(swapped).data_hash != load_corpus(plain).data_hash


def test_held_out_rows_are_not_in_the_training_set(tiny_corpus: Path) -> None:
    """Metrics count train and test rows separately and together they are the whole corpus."""
    corpus = load_corpus(tiny_corpus)
    result = train_model(corpus)
    assert result.metrics["n_test"] == math.ceil(len(corpus.texts) * TrainingConfig().test_size)
    assert result.metrics["n_train"] + result.metrics["n_test"] == len(corpus.texts)
    matrix = np.array(result.metrics["confusion_matrix"]["matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum() == result.metrics["n_test"]


def test_progress_callback_sees_every_step_in_order(tiny_corpus: Path, tmp_path: Path) -> None:
    """The CLI's progress bar is driven by (step, completed, total) calls that reach total."""
    calls: list[tuple[str, int, int]] = []
    train_and_save(
        tmp_path / "m",
        corpus_path=tiny_corpus,
        progress=lambda step, done, total: calls.append((step, done, total)),
    )
    completed = [done for _, done, _ in calls]
    assert completed == sorted(completed)
    assert calls[-1][1] == calls[-1][2] == 4
    assert {total for _, _, total in calls} == {4}


def test_word_only_configuration_trains(tiny_corpus: Path) -> None:
    """char_features=0 drops the character n-grams (the cheaper option) and still trains."""
    result = train_model(load_corpus(tiny_corpus), TrainingConfig(char_features=0))
    union = result.estimator.named_steps["features"]
    assert [name for name, _ in union.transformer_list] == ["word"]
    assert result.metrics["accuracy"] > 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("words,label\nhi,positive\n", "lacks column"),
        ("text,label\n,positive\nfine,neutral\n", "empty text or label on line(s) [2]"),
        ("text,label\nfine,\n", "empty text or label"),
    ],
)
def test_unusable_corpus_is_refused_with_the_reason(
    tmp_path: Path, content: str, message: str
) -> None:
    """A corpus with a missing column or an empty cell is refused, naming what to fix."""
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ModelError, match=re.escape(message)):
        load_corpus(path)


def test_missing_corpus_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_corpus(tmp_path / "nope.csv")


def test_too_small_corpus_is_refused_before_training(tmp_path: Path) -> None:
    """A class with fewer rows than the split and calibration folds need is named."""
    corpus = load_corpus(write_tiny_corpus(tmp_path / "small.csv", per_class=4))
    with pytest.raises(ModelError, match="too few rows"):
        train_model(corpus)


def test_confusion_matrix_rows_are_truth_and_columns_are_predictions() -> None:
    """Orientation and label order of the confusion matrix, plus accuracy and macro-F1."""
    labels = ("a", "b", "c")
    y_true = ["a", "a", "b", "c"]
    proba = np.array(
        [
            [0.8, 0.1, 0.1],  # a -> a
            [0.1, 0.8, 0.1],  # a -> b
            [0.1, 0.8, 0.1],  # b -> b
            [0.1, 0.1, 0.8],  # c -> c
        ]
    )
    metrics = evaluate(y_true, proba, labels)
    assert metrics["confusion_matrix"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
    }
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert metrics["per_class"]["a"]["recall"] == pytest.approx(0.5)


def test_expected_calibration_error_of_known_cases() -> None:
    """Perfectly calibrated confidence gives 0; overconfidence shows as the gap."""
    calibrated = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(calibrated, np.array([True, True, True, False])) == 0
    overconfident = np.array([[0.95, 0.05]] * 2)
    assert expected_calibration_error(overconfident, np.array([True, False])) == pytest.approx(0.45)


def test_cli_progress_bar_renders_the_training_steps() -> None:
    """`training_progress` (also used by `falcon up`) turns callbacks into a Rich bar."""
    import io

    from rich.console import Console

    from falcon_platform.cli.model_cli import training_progress

    out = io.StringIO()
    with training_progress(Console(file=out, width=100)) as progress:
        progress("fitting on 840 texts", 1, 4)
        progress("saved", 4, 4)
    assert "training model" in out.getvalue()
    assert "saved" in out.getvalue()
