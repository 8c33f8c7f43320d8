"""Loading, verifying and (on first start) creating the model a worker serves.

Use::

    path = ensure_model(settings)          # trains the default model there if none exists
    model = load_model(path)               # verified: sha256, probes or allowed types
    model.predict_proba(["great screen", "meh"])   # float64, columns in model.labels order

A model directory with a lean export (``metadata.json`` has a ``lean`` section: the default
pipeline as arrays, :mod:`falcon_platform.model.lean`) is served from those arrays with NumPy
only; nothing here imports scikit-learn, SciPy or skops on that path. Any other model is
loaded through skops. Loading refuses, with a
:class:`~falcon_platform.errors.ModelIntegrityError` that says what is wrong and how to fix
it, a file whose sha256 differs from ``metadata.json``, a lean export that does not reproduce
scikit-learn's probabilities on the probe texts, or a skops artifact that contains a type
outside :data:`falcon_platform.model.trust.ALLOWED_TYPES`.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from falcon_platform.errors import FalconError, ModelIntegrityError, ModelNotFoundError
from falcon_platform.model.artifact import (
    METADATA_FILE,
    ModelMetadata,
    check_servable,
    read_metadata,
    save_model,
    sha256_hex,
)
from falcon_platform.model.base import ServableModel
from falcon_platform.model.lean import (
    LEAN_FORMAT,
    PROBE_TOLERANCE,
    LeanModel,
    LeanParams,
    LeanPipeline,
    probe_differences,
)
from falcon_platform.model.training import (
    DEFAULT_MODEL_NAME,
    ProgressCallback,
    TrainingConfig,
    default_corpus_path,
    load_corpus,
    train_model,
)
from falcon_platform.model.trust import disallowed_types

if TYPE_CHECKING:
    from falcon_platform.config.settings import Settings

_SELF_CHECK_TEXT = "falcon model self-check"


@dataclass(eq=False)  # not frozen: ServableModel declares plain (settable) attributes
class LoadedModel:
    """A verified model ready to serve; implements :class:`falcon_platform.model.base.ServableModel`."""

    name: str
    version: str
    sha256: str
    labels: tuple[str, ...]
    metadata: dict[str, Any]
    estimator: Any = field(repr=False)
    # estimator.classes_ position of each label, so columns come out in `labels` order
    columns: tuple[int, ...] = field(repr=False)

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        *,
        name: str,
        version: str,
        labels: Sequence[str] | None = None,
        sha256: str = "0" * 64,
        metadata: dict[str, Any] | None = None,
    ) -> LoadedModel:
        """Wrap an in-memory fitted classifier (tests, notebooks); no file, so no verification.

        >>> LoadedModel.from_estimator(pipe, name="tiny", version="1").labels  # doctest: +SKIP
        ('negative', 'neutral', 'positive')
        """
        fitted = getattr(estimator, "classes_", None)
        classes = [str(label) for label in fitted] if fitted is not None else []
        order = tuple(str(label) for label in labels) if labels is not None else tuple(classes)
        check_servable(estimator, order)  # no predict_proba, not fitted, labels != classes_
        return cls(
            name=name,
            version=version,
            sha256=sha256,
            labels=order,
            metadata=metadata if metadata is not None else {},
            estimator=estimator,
            columns=tuple(classes.index(label) for label in order),
        )

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Shape ``(len(texts), len(labels))``, float64, each row summing to 1."""
        import sklearn

        if len(texts) == 0:
            return np.empty((0, len(self.labels)), dtype=np.float64)
        # inputs are strings we validated; skipping sklearn's per-call checks saves ~20% on
        # a single text (the config is thread-local, so other threads are unaffected)
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            raw = self.estimator.predict_proba(list(texts))
        proba = np.asarray(raw, dtype=np.float64)[:, self.columns]
        # float32 features leave rows ~1e-7 off 1; callers and clients expect an exact sum
        proba /= proba.sum(axis=1, keepdims=True)
        return proba


def load_model(path: Path, *, lean: bool = True) -> ServableModel:
    """Read, verify and load the model directory at ``path``: from its lean export (NumPy
    only) when it has one and ``lean``, else through skops and scikit-learn."""
    metadata = read_metadata(path)
    data = _read_verified(path, metadata.artifact, metadata.sha256)
    if lean and metadata.lean is not None:
        return load_lean_model(path, metadata)
    return load_skops_model(path, metadata, data)


def verify_model(path: Path) -> ServableModel:
    """What ``falcon model verify`` checks: everything a worker checks and, for a directory
    with a lean export, the skops artifact too (allowed types, loadable, a self-check) and
    that both give the same probabilities on the probe texts. Returns the model a worker
    would serve. (A worker does not parse the skops file when it serves the arrays: that
    would import scikit-learn, which is what the lean export avoids.)"""
    metadata = read_metadata(path)
    data = _read_verified(path, metadata.artifact, metadata.sha256)
    full = load_skops_model(path, metadata, data)
    if metadata.lean is None:
        return full
    lean = load_lean_model(path, metadata)
    texts = list(metadata.lean.probes.texts)
    worst = float(np.max(np.abs(lean.predict_proba(texts) - full.predict_proba(texts))))
    if not worst <= PROBE_TOLERANCE:
        raise ModelIntegrityError(
            f"{path / metadata.lean.file} and {path / metadata.artifact} disagree on the probe "
            f"texts (largest difference {worst:.3g}): they are not the same model. Retrain "
            f"with `falcon model train --out {path}`."
        )
    return lean


def _read_verified(path: Path, name: str, sha256: str) -> bytes:
    """The bytes of ``path/name``, refused unless their sha256 is the one recorded."""
    target = path / name
    try:
        data = target.read_bytes()
    except FileNotFoundError as exc:
        raise ModelIntegrityError(
            f"{METADATA_FILE} in {path} names {name}, which does not exist: "
            f"retrain with `falcon model train --out {path}`."
        ) from exc
    actual = sha256_hex(data)
    if actual != sha256:
        raise ModelIntegrityError(
            f"{target} has sha256 {actual} but {METADATA_FILE} records {sha256}: "
            "the file was changed or corrupted after it was saved, so it is not loaded. "
            f"Restore the original files or retrain with `falcon model train --out {path}`."
        )
    return data


def load_lean_model(path: Path, metadata: ModelMetadata) -> LeanModel:
    """The lean export of ``path``: sha256 checked, arrays checked against the parameters,
    and the probe texts scored exactly as scikit-learn scored them at export (to 1e-9)."""
    lean = metadata.lean
    assert lean is not None
    retrain = f"retrain with `falcon model train --out {path}`"
    if lean.format != LEAN_FORMAT:
        raise ModelIntegrityError(
            f"{path / lean.file} has lean format {lean.format}; this Falcon reads format "
            f"{LEAN_FORMAT}: {retrain} (or serve it with the Falcon that wrote it)."
        )
    data = _read_verified(path, lean.file, lean.sha256)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        params = LeanParams.from_json(lean.params)
        pipeline = LeanPipeline.from_arrays(params, arrays)
    except Exception as exc:  # malformed arrays or parameters all mean the same thing
        raise ModelIntegrityError(
            f"{path / lean.file} is not a usable lean export ({type(exc).__name__}: {exc}): "
            f"{retrain}."
        ) from exc
    if set(params.classes) != set(metadata.labels):
        raise ModelIntegrityError(
            f"{path / lean.file} has classes {list(params.classes)} but {METADATA_FILE} "
            f"labels {list(metadata.labels)}: {retrain}."
        )
    probes = lean.probes
    worst = probe_differences(
        pipeline,
        probes.texts,
        np.asarray(probes.batch, dtype=np.float64),
        np.asarray(probes.single, dtype=np.float64),
    )
    if not worst <= PROBE_TOLERANCE:
        raise ModelIntegrityError(
            f"{path / lean.file} does not reproduce scikit-learn's probabilities on the probe "
            f"texts recorded in {METADATA_FILE} (largest difference {worst:.3g}, allowed "
            f"{PROBE_TOLERANCE:g}), so it is not served: NumPy here computes differently from "
            f"where the model was exported, or the file set was altered. {retrain[0].upper()}"
            f"{retrain[1:]} in this environment."
        )
    model = LeanModel(
        name=metadata.name,
        version=metadata.version,
        sha256=metadata.sha256,
        labels=metadata.labels,
        metadata=metadata.model_dump(mode="json"),
        pipeline=pipeline,
        columns=tuple(params.classes.index(label) for label in metadata.labels),
    )
    _self_check(model, path / lean.file)
    return model


def load_skops_model(path: Path, metadata: ModelMetadata, data: bytes) -> LoadedModel:
    """The skops artifact of ``path`` (its bytes already verified), through scikit-learn."""
    import skops.io

    artifact = path / metadata.artifact
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # any parse failure of the archive means the same thing
        raise ModelIntegrityError(
            f"{artifact} is not a readable skops archive ({exc}): "
            f"retrain with `falcon model train --out {path}`."
        ) from exc
    refused = disallowed_types(untrusted)
    if refused:
        raise ModelIntegrityError(
            f"{artifact} contains types Falcon does not trust: {refused}. Loading it could run "
            "code chosen by whoever wrote the file, so it is refused. Save a model built from "
            "scikit-learn components with falcon_platform.model.artifact.save_model, or "
            f"retrain the default with `falcon model train --out {path}`."
        )
    try:
        estimator = skops.io.loads(data, trusted=untrusted)
        check_servable(estimator, metadata.labels)
    except FalconError as exc:
        raise ModelIntegrityError(f"{artifact}: {exc.detail}") from exc
    except Exception as exc:
        raise ModelIntegrityError(
            f"{artifact} could not be loaded ({type(exc).__name__}: {exc}); check the "
            f"library versions in {METADATA_FILE} against this environment, or retrain."
        ) from exc
    model = LoadedModel.from_estimator(
        estimator,
        name=metadata.name,
        version=metadata.version,
        labels=metadata.labels,
        sha256=metadata.sha256,
        metadata=metadata.model_dump(mode="json"),
    )
    _self_check(model, artifact)
    return model


def _self_check(model: ServableModel, artifact: Path) -> None:
    """Fail at load time, not on the first request, if the model cannot score a text."""
    try:
        proba = model.predict_proba([_SELF_CHECK_TEXT])
    except Exception as exc:
        raise ModelIntegrityError(
            f"{artifact} loaded but cannot score a text ({type(exc).__name__}: {exc}): "
            "Falcon serves models whose predict_proba takes a list of strings."
        ) from exc
    if proba.shape != (1, len(model.labels)) or not np.isfinite(proba).all():
        raise ModelIntegrityError(
            f"{artifact} returned probabilities of shape {proba.shape} (expected "
            f"(1, {len(model.labels)})) or non-finite values for a plain text."
        )


def train_and_save(
    out_dir: Path,
    *,
    name: str = DEFAULT_MODEL_NAME,
    corpus_path: Path | None = None,
    config: TrainingConfig | None = None,
    progress: ProgressCallback | None = None,
) -> ModelMetadata:
    """Train the default model on the corpus and save it into ``out_dir``."""
    config = config or TrainingConfig()
    corpus = load_corpus(corpus_path or default_corpus_path())
    total = 4

    def step(description: str, completed: int, _total: int) -> None:
        if progress is not None:
            progress(description, completed, total)

    result = train_model(corpus, config, name=name, progress=step)
    step("saving artifact", 3, total)
    metadata = save_model(
        result.estimator,
        out_dir,
        name=name,
        version=result.version,
        labels=result.labels,
        metrics=result.metrics,
        data_hash=result.data_hash,
        training={"corpus": Path(corpus.source).name, "config": asdict(config)},
    )
    step("saved", 4, total)
    return metadata


def ensure_model(settings: Settings, progress: ProgressCallback | None = None) -> Path:
    """Return ``settings.resolved_model_path``, training the default model there if empty.

    Safe when several processes start at once: one trains under an exclusive lock into a
    temporary directory and renames it into place (atomic); the others wait for the lock and
    find the finished model. An existing model is never replaced (loading verifies it).
    """
    target = settings.resolved_model_path
    if (target / METADATA_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if (target / METADATA_FILE).exists():
            return target
        if target.exists() and any(target.iterdir()):
            raise ModelNotFoundError(
                f"{target} exists but holds no {METADATA_FILE}, so it is not a Falcon model "
                "and Falcon will not overwrite it: move it away, or set FALCON_MODEL_PATH to "
                "a model directory."
            )
        # under the lock, any staging directory left here belongs to a process that died
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        try:
            train_and_save(staging, name=settings.model_name, progress=progress)
            if target.exists():
                target.rmdir()  # empty (checked above); rename() needs the name free or empty
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (stdlib: released by the kernel if we die)."""
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
