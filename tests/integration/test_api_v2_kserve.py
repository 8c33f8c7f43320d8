"""Open Inference Protocol v2 with KServe's own Python client (``InferenceRESTClient``), beside
the tritonclient tests: it sends ``model_name`` and an ``id`` in the body."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from conftest import ServerProcess

pytestmark = pytest.mark.integration

TEXTS = ["great screen but the battery died", "not bad at all", "the refund never came"]


async def _infer(url: str, request: InferRequest, model: str = "sentiment") -> object:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
    try:
        return await client.infer(url, request, model_name=model)
    finally:
        await client.close()


def _request(texts: list[str], *, binary: bool, name: str = "text") -> InferRequest:
    tensor = InferInput(name=name, shape=[len(texts)], datatype="BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=binary)
    return InferRequest(model_name="sentiment", infer_inputs=[tensor], request_id="kserve-1")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client_infers_and_gets_labels_and_probabilities(
    falcon_server: ServerProcess, binary: bool
) -> None:
    response = asyncio.run(_infer(falcon_server.url, _request(TEXTS, binary=binary)))
    assert response.id == "kserve-1"  # type: ignore[attr-defined]
    outputs = {o.name: o.as_numpy() for o in response.outputs}  # type: ignore[attr-defined]
    probs = outputs["probabilities"]
    assert probs.shape == (3, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    labels = [x.decode() if isinstance(x, bytes) else x for x in outputs["label"]]
    assert set(labels) <= {"negative", "neutral", "positive"}
    assert len(labels) == 3


def test_kserve_client_with_a_wrong_input_name_gets_a_clear_400(
    falcon_server: ServerProcess,
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as info:
        asyncio.run(_infer(falcon_server.url, _request(["ok"], binary=False, name="sentence")))
    assert info.value.response.status_code == 400
    assert "its one input is 'text'" in info.value.response.json()["detail"]
