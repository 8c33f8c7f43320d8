"""Open Inference Protocol v2 with the real ``tritonclient.http`` client against a real server."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from conftest import ServerProcess

pytestmark = pytest.mark.integration

TEXTS = ["great screen but the battery died", "not bad at all", "the refund never came"]


@pytest.fixture
def client(falcon_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{falcon_server.port}")


def _infer(
    client: triton.InferenceServerClient, *, binary_in: bool, binary_out: bool | None
) -> triton.InferResult:
    tensor = triton.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array(TEXTS, dtype=np.object_), binary_data=binary_in)
    outputs = (
        None
        if binary_out is None
        else [triton.InferRequestedOutput(n, binary_data=binary_out)
              for n in ("label", "probabilities")]
    )  # fmt: skip
    return client.infer("sentiment", [tensor], outputs=outputs)


def test_server_and_model_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("sentiment")
    meta = client.get_model_metadata("sentiment")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert client.get_server_metadata()["name"] == "falcon"


@pytest.mark.parametrize(
    ("binary_in", "binary_out"),
    [(False, False), (True, False), (True, True), (False, None)],
    ids=["json-json", "binary-json", "binary-binary", "json-default(binary)"],
)
def test_infer_returns_labels_and_probabilities(
    client: triton.InferenceServerClient, binary_in: bool, binary_out: bool | None
) -> None:
    result = _infer(client, binary_in=binary_in, binary_out=binary_out)
    labels = result.as_numpy("label")
    probs = result.as_numpy("probabilities")
    assert labels is not None
    assert probs is not None
    assert probs.shape == (3, 3)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    decoded = [x.decode() if isinstance(x, bytes) else str(x) for x in labels.tolist()]
    assert set(decoded) <= {"negative", "neutral", "positive"}
    names = ("negative", "neutral", "positive")
    assert decoded == [names[i] for i in probs.argmax(axis=1)]
    assert result.get_response()["model_name"] == "sentiment"


def test_unknown_model_is_a_clear_error(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(["hi"], dtype=np.object_), binary_data=False)
    with pytest.raises(InferenceServerException, match=r"not_found|not served"):
        client.infer("no-such-model", [tensor])
    assert not client.is_model_ready("no-such-model")
