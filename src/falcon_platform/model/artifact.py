"""A model directory on disk: one skops artifact plus ``metadata.json``.

Layout::

    <model dir>/
        model-<sha256[:12]>.skops   the estimator, skops format (never pickle/joblib)
        lean-<sha256[:12]>.npz      the default pipeline's parameters as plain arrays, when
                                    it has that shape (model/export.py); workers serve it
                                    with NumPy only
        metadata.json               name, version, labels, sha256 of the artifact, data hash,
                                    metrics, creation time (UTC), library versions; ``lean``:
                                    the array file's sha256, parameters, probe texts and
                                    scikit-learn's probabilities for them

``metadata.json`` is written last and is the commit point: it names the artifact it was
written with, so a reader never pairs new metadata with a half-written artifact, and the
artifact's name changes with its content. Both files are written atomically (temp + rename).

Use (any fitted scikit-learn classifier with ``predict_proba``)::

    pipe = make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, labels)
    save_model(pipe, Path("my-model"), name="mine", version="1.0.0",
               labels=tuple(pipe.classes_), metrics={}, data_hash=None)
    # then: FALCON_MODEL_PATH=my-model falcon up
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from falcon_platform.errors import ModelError, ModelIntegrityError, ModelNotFoundError
from falcon_platform.files import write_atomic
from falcon_platform.model.skops_bytes import dumps_reproducible
from falcon_platform.model.trust import disallowed_types

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_LIBRARIES = ("falcon-platform", "scikit-learn", "skops", "numpy", "scipy")


class LeanProbes(BaseModel):
    """Texts and the probabilities scikit-learn gave for them (classes order), as one batch
    and one text at a time; a worker recomputes both before it serves the arrays."""

    model_config = ConfigDict(frozen=True)

    texts: tuple[str, ...] = Field(min_length=1)
    batch: tuple[tuple[float, ...], ...]
    single: tuple[tuple[float, ...], ...]


class LeanMetadata(BaseModel):
    """``metadata.json``'s ``lean`` section: the NumPy-only export of the default pipeline."""

    model_config = ConfigDict(frozen=True)

    format: int
    file: str = Field(pattern=r"^lean-[0-9a-f]{12}\.npz$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    params: dict[str, Any]
    probes: LeanProbes


class ModelMetadata(BaseModel):
    """The contents of ``metadata.json``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int = FORMAT_VERSION
    name: str = Field(pattern=_NAME_PATTERN)
    version: str = Field(min_length=1, max_length=128)
    labels: tuple[str, ...] = Field(min_length=2)
    # a bare file name: metadata must not be able to point the loader outside the directory
    artifact: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.skops$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data_hash: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    library_versions: dict[str, str] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    lean: LeanMetadata | None = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that write and read the artifact."""
    versions = {"python": platform.python_version()}
    for dist in _LIBRARIES:
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def check_servable(estimator: Any, labels: Sequence[str]) -> None:
    """Refuse an estimator Falcon could not serve with these labels."""
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ModelError(
            f"{type(estimator).__name__} has no predict_proba: Falcon serves probabilistic "
            "classifiers (wrap it in sklearn.calibration.CalibratedClassifierCV)."
        )
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise ModelError(f"{type(estimator).__name__} is not fitted: call .fit() before saving.")
    fitted = [str(label) for label in classes]
    if len(set(labels)) != len(labels) or set(labels) != set(fitted):
        raise ModelError(
            f"labels {list(labels)} do not match the estimator's classes {fitted}: "
            "pass each class exactly once (their order sets the probability columns)."
        )


def save_model(
    estimator: Any,
    out_dir: Path,
    *,
    name: str,
    version: str,
    labels: Sequence[str],
    metrics: dict[str, Any],
    data_hash: str | None,
    training: dict[str, Any] | None = None,
    now: datetime | None = None,
    lean: bool = True,
) -> ModelMetadata:
    """Write ``estimator`` and its metadata into ``out_dir``; return the metadata written.

    Works for any fitted scikit-learn classifier with ``predict_proba`` whose parts skops can
    store and :mod:`falcon_platform.model.trust` allows; anything else is refused here, at
    save time, rather than when a worker tries to load it. When the estimator has the
    default pipeline's shape (and ``lean``), its arrays are exported beside it as well.
    """
    import skops.io

    from falcon_platform.model.export import export_lean, npz_bytes
    from falcon_platform.model.lean import LEAN_FORMAT

    labels = tuple(str(label) for label in labels)
    check_servable(estimator, labels)
    try:
        data = dumps_reproducible(estimator)
    except Exception as exc:  # skops raises several types for what it cannot store
        raise ModelError(
            f"skops cannot store this {type(estimator).__name__} ({type(exc).__name__}: {exc}); "
            "use scikit-learn components that skops supports."
        ) from exc
    refused = disallowed_types(skops.io.get_untrusted_types(data=data))
    if refused:
        raise ModelError(
            f"the model contains types Falcon will not load: {refused}. Use scikit-learn "
            "components only (no custom classes or functions), or extend "
            "falcon_platform.model.trust.ALLOWED_TYPES after reviewing them."
        )
    digest = sha256_hex(data)
    export = export_lean(estimator) if lean else None
    lean_meta, lean_data = None, b""
    if export is not None:
        lean_data = npz_bytes(export.arrays)
        lean_digest = sha256_hex(lean_data)
        lean_meta = LeanMetadata(
            format=LEAN_FORMAT,
            file=f"lean-{lean_digest[:12]}.npz",
            sha256=lean_digest,
            params=export.params.to_json(),
            probes=LeanProbes(
                texts=export.probe_texts,
                batch=tuple(tuple(row) for row in export.probe_batch),
                single=tuple(tuple(row) for row in export.probe_single),
            ),
        )
    try:
        metadata = ModelMetadata(
            name=name,
            version=version,
            labels=labels,
            artifact=f"model-{digest[:12]}.skops",
            sha256=digest,
            data_hash=data_hash,
            metrics=metrics,
            created_at=(now or datetime.now(UTC)).astimezone(UTC),
            library_versions=library_versions(),
            training=training or {},
            lean=lean_meta,
        )
    except ValidationError as exc:
        raise ModelError(f"invalid model metadata: {exc}") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / metadata.artifact, data)
    if lean_meta is not None:
        write_atomic(out_dir / lean_meta.file, lean_data)
    write_atomic(out_dir / METADATA_FILE, metadata.model_dump_json(indent=2).encode() + b"\n")
    keep = {metadata.artifact, lean_meta.file if lean_meta is not None else ""}
    for stale in [*out_dir.glob("model-*.skops"), *out_dir.glob("lean-*.npz")]:
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    return metadata


def read_metadata(model_dir: Path) -> ModelMetadata:
    """Parse ``<model_dir>/metadata.json``; say how to create a model when there is none."""
    path = model_dir / METADATA_FILE
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ModelNotFoundError(
            f"no model at {model_dir} ({METADATA_FILE} missing): create one with "
            f"`falcon model train --out {model_dir}`, or point FALCON_MODEL_PATH at a "
            "directory written by falcon_platform.model.artifact.save_model."
        ) from exc
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValidationError as exc:
        raise ModelIntegrityError(
            f"{path} is not valid model metadata ({exc.error_count()} problem(s): "
            f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); retrain with "
            f"`falcon model train --out {model_dir}`."
        ) from exc
