"""The OpenAPI document is pinned: an accidental API change fails CI.

Regenerate after an intended change with::

    FALCON_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_serving_openapi.py
"""

from __future__ import annotations

import json
from pathlib import Path

from test_serving_cases import settings_for, tiny_model

from falcon_platform.serving.app import create_app
from falcon_platform.testing.golden import assert_golden
from falcon_platform.testing.stores import fake_stores

GOLDEN = Path(__file__).with_name("test_serving_openapi.golden.json")


def _document(tmp_path: Path) -> dict[str, object]:
    app = create_app(settings_for(tmp_path), model=tiny_model(), stores=fake_stores())
    schema = app.openapi()
    schema["info"]["version"] = "<version>"  # a release bump is not an API change
    return schema


def test_openapi_matches_the_golden_file(tmp_path: Path) -> None:
    assert_golden(GOLDEN, json.dumps(_document(tmp_path), indent=2, sort_keys=True) + "\n")


def test_inference_routes_are_documented_with_their_schemas(tmp_path: Path) -> None:
    """The fast-path routes stay in the document, with request and response schemas."""
    doc = _document(tmp_path)
    paths = doc["paths"]
    assert isinstance(paths, dict)
    infer = paths["/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferRequest"
    }
    assert infer["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferResponse"
    }
    for code in ("400", "413", "415", "422", "503", "504"):
        assert code in infer["responses"]
    for path in ("/infer/batch", "/v2/models/{model_name}/infer", "/healthz", "/readyz",
                 "/metrics", "/model", "/v2/health/live", "/v2/health/ready"):  # fmt: skip
        assert path in paths
    schemas = doc["components"]["schemas"]  # type: ignore[index]
    assert schemas["InferRequest"]["additionalProperties"] is False
    assert set(schemas["InferResponse"]["required"]) >= {"prediction", "request_id", "cache_hit"}
