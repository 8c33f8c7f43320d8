"""Offline Kubernetes validation for tests: core schemas, CRD schemas, kustomize builds.

No cluster is reachable from the test machines, so rendered objects are checked against
the real schemas instead::

    validate_core(obj, "1.37.0")                  # kubernetes-validate --strict
    validate_custom(obj, crd_file)               # the CRD's openAPIV3Schema, via jsonschema
    objects = kustomize_build(kubectl(), overlay_dir)

``kubectl()`` skips a test with the reason when kubectl (with a kustomize new enough for
the layout) is missing, and fails instead under CI=true when Debian offers a kubectl that
scripts/install-system-deps.sh should have installed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# Oldest Kubernetes the manifests are meant for (the preStop `sleep` action is on by default
# from 1.30) and the newest schema kubernetes-validate ships.
OLDEST_KUBERNETES = "1.30.0"
KUSTOMIZE_MIN_MAJOR = 4  # `patches:` with JSON 6902 files and `kind: Component`


def validate_core(obj: dict[str, Any], version: str) -> None:
    """Raise ``kubernetes_validate.ValidationError`` when ``obj`` is not valid for ``version``,
    rejecting unknown fields (``--strict``)."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, version, strict=True)


def latest_kubernetes() -> str:
    import kubernetes_validate

    return str(kubernetes_validate.latest_version())


def _strict(schema: Any) -> Any:
    """The apiserver rejects unknown fields (kubectl's default --validate=strict); a CRD schema
    says so only implicitly, so close every object that lists its properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=16)
def crd_schema(crd_file: Path, version: str = "v1") -> dict[str, Any]:
    """The strict openAPIV3Schema of one served version of a CRD file (cached: Argo's are
    ~600 kB; libyaml's loader where PyYAML has it, ten times faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = next(d for d in yaml.load_all(crd_file.read_text(), Loader=loader) if d)
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = _strict(served["schema"]["openAPIV3Schema"])
            # metadata is the apiserver's ObjectMeta, not described by the CRD
            schema["properties"]["metadata"] = {"type": "object"}
            return schema
    raise KeyError(f"{crd_file.name} serves no version {version}")


def validate_custom(obj: dict[str, Any], crd_file: Path) -> None:
    """Raise ``jsonschema.ValidationError`` when ``obj`` does not fit its CRD.

    OpenAPI 3.0 schemas follow JSON Schema draft 4; the schema itself is not checked against
    the draft's meta-schema, because CRDs hold Go (RE2) patterns such as ``^(?i)...$``."""
    import jsonschema

    api_version = obj["apiVersion"].split("/")[-1]
    jsonschema.Draft4Validator(crd_schema(crd_file, api_version)).validate(obj)


def _apt_offers(package: str) -> bool:
    done = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    match = re.search(r"Candidate:\s*(\S+)", done.stdout)
    return bool(match) and match is not None and match.group(1) != "(none)"


def kubectl() -> str:
    """Path of a kubectl whose kustomize can build the layout; skip (or fail under CI)."""
    path = shutil.which("kubectl")
    reason = None
    if path is None:
        reason = "kubectl is not installed"
    else:
        version = subprocess.run(
            [path, "version", "--client"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"Kustomize Version: v(\d+)", version)
        if match is None or int(match.group(1)) < KUSTOMIZE_MIN_MAJOR:
            reason = (
                f"{path}'s kustomize is older than v{KUSTOMIZE_MIN_MAJOR} ({version.strip()!r})"
            )
    if reason is None:
        assert path is not None
        return path
    if os.environ.get("CI") == "true" and _apt_offers("kubectl"):
        pytest.fail(f"CI=true and {reason}, though apt offers it: scripts/install-system-deps.sh")
    pytest.skip(
        f"{reason}; Debian does not ship a kubectl with kustomize v{KUSTOMIZE_MIN_MAJOR}+ "
        "(its kubernetes-client 1.20 has kustomize v2): install kubectl >= 1.21 to run this"
    )


def kustomize_build(kubectl_path: str, directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl_path, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]
