"""The lean export: the default pipeline as arrays, served with NumPy, equal to scikit-learn.

Expected values come from scikit-learn's own ``predict_proba`` on the same fitted pipeline,
in the same test; equality is bit-for-bit (the load-time check allows 1e-9).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfTransformer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.svm import LinearSVC
from test_model_hashing import HOSTILE  # a sibling test module (rootdir on sys.path)

from falcon_platform.errors import ModelIntegrityError
from falcon_platform.model.artifact import METADATA_FILE, read_metadata, save_model, sha256_hex
from falcon_platform.model.export import PROBE_TEXTS, export_lean, npz_bytes
from falcon_platform.model.lean import LeanModel, LeanPipeline
from falcon_platform.model.registry import LoadedModel, load_model, train_and_save, verify_model
from falcon_platform.model.training import default_corpus_path, load_corpus

CORPUS = list(load_corpus(default_corpus_path()).texts)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model, trained on the shipped corpus as `falcon model train` does."""
    out = tmp_path_factory.mktemp("lean") / "model"
    train_and_save(out)
    return out


@pytest.fixture(scope="module")
def sklearn_model(model_dir: Path) -> LoadedModel:
    model = load_model(model_dir, lean=False)
    assert isinstance(model, LoadedModel)
    return model


def test_the_default_model_is_exported_and_served_lean(model_dir: Path) -> None:
    metadata = read_metadata(model_dir)
    assert metadata.lean is not None
    data = (model_dir / metadata.lean.file).read_bytes()
    assert metadata.lean.sha256 == sha256_hex(data)
    assert metadata.lean.file == f"lean-{metadata.lean.sha256[:12]}.npz"
    with np.load(model_dir / metadata.lean.file, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["beta", "coef", "idf", "intercept"]
    assert list(metadata.lean.probes.texts) == list(PROBE_TEXTS)
    assert isinstance(load_model(model_dir), LeanModel)


def test_lean_equals_scikit_learn_bit_for_bit_on_the_corpus_and_hostile_texts(
    model_dir: Path, sklearn_model: LoadedModel
) -> None:
    lean = load_model(model_dir)
    texts = CORPUS + HOSTILE
    expected = sklearn_model.estimator.predict_proba(texts)
    assert isinstance(lean, LeanModel)
    np.testing.assert_array_equal(lean.pipeline.predict_proba(texts), expected)
    np.testing.assert_array_equal(lean.predict_proba(texts), sklearn_model.predict_proba(texts))


def test_each_text_scores_the_same_alone_as_in_a_batch(model_dir: Path) -> None:
    lean = load_model(model_dir)
    texts = CORPUS[:40] + HOSTILE
    together = lean.predict_proba(texts)
    alone = np.vstack([lean.predict_proba([t]) for t in texts])
    np.testing.assert_array_equal(together, alone)


def test_served_rows_sum_to_one_in_label_order(model_dir: Path) -> None:
    lean = load_model(model_dir)
    proba = lean.predict_proba(["love it", "never again", "it is blue"])
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert [lean.labels[i] for i in proba.argmax(axis=1)] == ["positive", "negative", "neutral"]
    assert lean.predict_proba([]).shape == (0, 3)


def test_the_export_is_reproducible(model_dir: Path, tmp_path: Path) -> None:
    """Same data and code => the same .npz bytes (numpy.savez would stamp the time)."""
    again = train_and_save(tmp_path / "again")
    first = read_metadata(model_dir)
    assert again.lean is not None
    assert first.lean is not None
    assert again.lean.sha256 == first.lean.sha256
    assert again.lean.probes == first.lean.probes


def _variant(**hashing: Any) -> Pipeline:
    sublinear = hashing.pop("sublinear_tf", True)
    norm = hashing.pop("norm", "l2")
    use_idf = hashing.pop("use_idf", True)
    sign = hashing.pop("alternate_sign", False)
    union = FeatureUnion(
        [
            ("word", HashingVectorizer(norm=None, dtype=np.float32, n_features=2**12,
                                       alternate_sign=sign)),
            ("char", HashingVectorizer(norm=None, dtype=np.float32, n_features=2**12,
                                       alternate_sign=sign,
                                       **{"analyzer": "char_wb", "ngram_range": (2, 4),
                                          **hashing})),
        ]
    )  # fmt: skip
    return Pipeline(
        [
            ("features", union),
            ("tfidf", TfidfTransformer(sublinear_tf=sublinear, norm=norm, use_idf=use_idf)),
            ("classifier", CalibratedClassifierCV(LinearSVC(), method="temperature",
                                                  cv=3, ensemble=False)),
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"alternate_sign": True, "sublinear_tf": False},
        {"norm": "l1", "use_idf": False},
        {"norm": None, "analyzer": "char", "ngram_range": (1, 3)},
        {"lowercase": False, "ngram_range": (3, 5)},
    ],
    ids=["char_wb", "alternate-sign", "l1-no-idf", "no-norm-char", "cased"],
)
def test_pipeline_variants_export_equal_to_scikit_learn(options: dict[str, Any]) -> None:
    corpus = load_corpus(default_corpus_path())
    pipe = _variant(**dict(options)).fit(list(corpus.texts), list(corpus.labels))
    export = export_lean(pipe)
    assert export is not None
    lean = LeanPipeline.from_arrays(export.params, export.arrays)
    texts = CORPUS[:300] + HOSTILE
    np.testing.assert_array_equal(lean.predict_proba(texts), pipe.predict_proba(texts))


def _other_model(kind: str) -> Any:
    """A fitted model that is not the default pipeline's exact shape."""
    texts, labels = CORPUS[:90], ["negative", "neutral", "positive"] * 30
    if kind == "nb":
        return make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, labels)
    pipe = _variant()
    changes = {"sigmoid": {"classifier__method": "sigmoid"},
               "ensemble": {"classifier__ensemble": True},
               "accents": {"features__word__strip_accents": "unicode"}}  # fmt: skip
    return pipe.set_params(**changes[kind]).fit(texts, labels)


@pytest.mark.parametrize("kind", ["nb", "sigmoid", "ensemble", "accents"])
def test_other_models_get_no_lean_export_and_load_through_skops(kind: str, tmp_path: Path) -> None:
    estimator = _other_model(kind)
    assert export_lean(estimator) is None
    metadata = save_model(estimator, tmp_path, name="other", version="1",
                          labels=estimator.classes_, metrics={}, data_hash=None)  # fmt: skip
    assert metadata.lean is None
    assert not list(tmp_path.glob("lean-*.npz"))
    model = load_model(tmp_path)
    assert isinstance(model, LoadedModel)
    np.testing.assert_allclose(
        model.predict_proba(HOSTILE[:8]), estimator.predict_proba(HOSTILE[:8]), atol=1e-12
    )


# --- refusing to serve --------------------------------------------------------------------


@pytest.fixture
def copy_dir(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for item in model_dir.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def _rewrite_metadata(path: Path, change: Any) -> None:
    raw = json.loads((path / METADATA_FILE).read_text())
    change(raw)
    (path / METADATA_FILE).write_text(json.dumps(raw))


def _replace_arrays(path: Path, change: Any) -> None:
    """Write altered arrays *consistently* (new file, sha256 recorded): only the probes can
    tell."""
    metadata = read_metadata(path)
    assert metadata.lean is not None
    with np.load(path / metadata.lean.file, allow_pickle=False) as archive:
        arrays = {name: archive[name].copy() for name in archive.files}
    change(arrays)
    data = npz_bytes(arrays)
    (path / metadata.lean.file).write_bytes(data)

    def record(raw: dict[str, Any]) -> None:
        raw["lean"]["sha256"] = sha256_hex(data)

    _rewrite_metadata(path, record)


def test_a_flipped_byte_in_the_arrays_is_refused(copy_dir: Path) -> None:
    lean_file = copy_dir / read_metadata(copy_dir).lean.file  # type: ignore[union-attr]
    data = bytearray(lean_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    lean_file.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model(copy_dir)


def test_consistently_altered_weights_fail_the_probes_and_are_refused(copy_dir: Path) -> None:
    def shift(arrays: dict[str, Any]) -> None:
        arrays["coef"][0] += 0.01  # one class only: a shift of every class would cancel

    _replace_arrays(copy_dir, shift)
    with pytest.raises(ModelIntegrityError, match="does not reproduce scikit-learn") as info:
        load_model(copy_dir)
    assert "falcon model train --out" in info.value.detail


@pytest.mark.parametrize(("delta", "refused"), [(1e-6, True), (2e-9, True), (1e-12, False)])
def test_a_probe_expectation_off_by_more_than_1e_9_is_refused(
    copy_dir: Path, delta: float, refused: bool
) -> None:
    def nudge(raw: dict[str, Any]) -> None:
        raw["lean"]["probes"]["batch"][1][0] += delta

    _rewrite_metadata(copy_dir, nudge)
    if refused:
        with pytest.raises(ModelIntegrityError, match="probe"):
            load_model(copy_dir)
    else:
        assert isinstance(load_model(copy_dir), LeanModel)


def test_an_unknown_lean_format_is_refused(copy_dir: Path) -> None:
    _rewrite_metadata(copy_dir, lambda raw: raw["lean"].update(format=99))
    with pytest.raises(ModelIntegrityError, match="lean format 99"):
        load_model(copy_dir)


def test_a_missing_lean_file_is_refused(copy_dir: Path) -> None:
    (copy_dir / read_metadata(copy_dir).lean.file).unlink()  # type: ignore[union-attr]
    with pytest.raises(ModelIntegrityError, match="does not exist"):
        load_model(copy_dir)


def test_arrays_of_the_wrong_shape_are_refused(copy_dir: Path) -> None:
    def truncate(arrays: dict[str, Any]) -> None:
        arrays["idf"] = arrays["idf"][:10]

    _replace_arrays(copy_dir, truncate)
    with pytest.raises(ModelIntegrityError, match="not a usable lean export"):
        load_model(copy_dir)


def test_a_pickle_inside_the_npz_is_not_loaded(copy_dir: Path) -> None:
    """An object array would need pickle to load; the loader never allows pickle."""
    metadata = read_metadata(copy_dir)
    assert metadata.lean is not None
    target = copy_dir / metadata.lean.file
    with np.load(target, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    with zipfile.ZipFile(target, "w") as out:
        for name, value in arrays.items():
            with out.open(f"{name}.npy", "w") as member:
                if name == "coef":  # an object array: only pickle could rebuild it
                    value = np.array([{"a": 1}], dtype=object)
                np.save(member, value, allow_pickle=True)
    _rewrite_metadata(
        copy_dir, lambda raw: raw["lean"].update(sha256=sha256_hex(target.read_bytes()))
    )
    with pytest.raises(ModelIntegrityError, match="not a usable lean export"):
        load_model(copy_dir)


def test_loading_a_lean_model_imports_no_scikit_learn_scipy_or_skops(model_dir: Path) -> None:
    """In a fresh interpreter: load, predict, then look at what got imported."""
    code = (
        "import sys; from pathlib import Path\n"
        "from falcon_platform.model.registry import load_model\n"
        f"m = load_model(Path({str(model_dir)!r}))\n"
        "m.predict_proba(['great screen but the battery died'])\n"
        "print(type(m).__name__, sorted({k.split('.')[0] for k in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    kind, modules = out.split(" ", 1)
    assert kind == "LeanModel"
    for heavy in ("sklearn", "scipy", "skops", "joblib"):
        assert f"'{heavy}'" not in modules, heavy


def test_verify_checks_the_skops_artifact_against_the_lean_export(
    copy_dir: Path, tmp_path: Path
) -> None:
    """A worker serving the arrays never parses the skops file; `falcon model verify` does,
    and refuses a directory whose two files are different models (hashes made consistent)."""
    assert isinstance(verify_model(copy_dir), LeanModel)
    other = tmp_path / "other"
    corpus = load_corpus(default_corpus_path())
    pipe = _variant().fit(list(corpus.texts), list(corpus.labels))
    save_model(pipe, other, name="sentiment", version="x", labels=pipe.classes_, metrics={},
               data_hash=None, lean=False)  # fmt: skip
    swapped = read_metadata(other)
    (copy_dir / read_metadata(copy_dir).artifact).unlink()
    (copy_dir / swapped.artifact).write_bytes((other / swapped.artifact).read_bytes())
    _rewrite_metadata(copy_dir, lambda raw: raw.update(artifact=swapped.artifact,
                                                       sha256=swapped.sha256))  # fmt: skip
    assert isinstance(load_model(copy_dir), LeanModel)  # the worker's checks all pass
    with pytest.raises(ModelIntegrityError, match="disagree on the probe texts"):
        verify_model(copy_dir)
