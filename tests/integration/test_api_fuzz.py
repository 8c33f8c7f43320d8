"""Schema-driven fuzzing (schemathesis) of a real server against its own OpenAPI document.

Every operation gets generated valid and invalid requests; no response may be a
5xx or break the documented schema (status, content type, headers, body).
Bounded: a fixed number of examples per operation and mode (~30 s in total).
(Driven with hypothesis directly: schemathesis' pytest plugin does not run under pytest 9.)
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import ServerProcess

# serial: fuzzing within a time budget
pytestmark = [pytest.mark.integration, pytest.mark.serial]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 40
BUDGET_S = 60.0


def test_no_5xx_and_no_schema_breaking_response(falcon_server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{falcon_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert (
        len(operations) >= 14
    )  # /infer, /infer/batch, v2 (9), /healthz, /readyz, /metrics, /model
    started = time.monotonic()
    seen = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                nonlocal seen
                seen += 1
                response = case.call(timeout=10)
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # no parameters or body to break (e.g. GET /healthz): nothing negative to send
                assert mode is GenerationMode.NEGATIVE
        assert time.monotonic() - started < BUDGET_S, "fuzzing overran its time budget"
    assert seen >= len(operations) * 2
