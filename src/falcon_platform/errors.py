"""Falcon's one error tree, translated at the edges.

Domain code raises these; it never raises ``HTTPException`` and never calls
``sys.exit``. One HTTP handler (``serving.errors``) maps them to a JSON body
``{"error": code, "detail": ..., "request_id": ...}`` with ``http_status``;
one CLI wrapper (``cli.main``) prints ``detail`` on stderr and exits with
``exit_code``::

    FalconError                       code            http  exit
    ├── ConfigError                   config_error     500     2
    │   └── PolicyViolationError      policy_violation 500     1
    │       └── ReleaseRefusedError       policy_violation 422     1   (restart/deploy refused)
    ├── ModelError                    model_error      503     3
    │   ├── ModelNotFoundError        model_not_found  503     3
    │   └── ModelIntegrityError       model_integrity  503     3
    ├── ClientError                   (4xx, the caller can fix it)
    │   ├── InvalidInputError         invalid_input    422     2
    │   ├── MalformedRequestError     malformed_request 400    2
    │   ├── NotFoundError             not_found        404     2
    │   ├── PayloadTooLargeError      payload_too_large 413    2
    │   ├── UnsupportedMediaTypeError unsupported_media_type 415  2
    │   ├── IdempotencyConflictError  idempotency_conflict 422 2
    │   └── UnauthorizedError         unauthorized     401     2
    ├── OverloadedError               overloaded       503     4   (+ Retry-After)
    ├── InferenceTimeoutError         inference_timeout 504    4
    ├── DependencyError               dependency_unavailable 503 5
    │   └── SchemaBehindError         schema_behind    503     5
    └── RuntimeStateError             runtime_error    409     6   (supervisor/control plane)
        └── SupervisorUnreachableError supervisor_unreachable 503 6
"""

from __future__ import annotations

from typing import ClassVar


class FalconError(Exception):
    """Root of every error Falcon raises on purpose.

    ``detail`` says what is wrong *and how to fix it*; it is shown to users as is.
    """

    code: ClassVar[str] = "falcon_error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigError(FalconError):
    code = "config_error"
    exit_code = 2


class PolicyViolationError(ConfigError):
    code = "policy_violation"
    exit_code = 1


class ReleaseRefusedError(PolicyViolationError):
    """The gate refused the settings new workers would run with (a restart or a deploy):
    the caller sent a release it can fix, so the control API answers 422."""

    http_status = 422


class ModelError(FalconError):
    code = "model_error"
    http_status = 503
    exit_code = 3


class ModelNotFoundError(ModelError):
    code = "model_not_found"


class ModelIntegrityError(ModelError):
    code = "model_integrity"


class ClientError(FalconError):
    """The caller sent something it can fix; always a 4xx."""

    code = "bad_request"
    http_status = 400
    exit_code = 2


class InvalidInputError(ClientError):
    code = "invalid_input"
    http_status = 422


class MalformedRequestError(ClientError):
    code = "malformed_request"
    http_status = 400


class NotFoundError(ClientError):
    code = "not_found"
    http_status = 404


class PayloadTooLargeError(ClientError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaTypeError(ClientError):
    code = "unsupported_media_type"
    http_status = 415


class IdempotencyConflictError(ClientError):
    code = "idempotency_conflict"
    http_status = 422


class UnauthorizedError(ClientError):
    code = "unauthorized"
    http_status = 401


class OverloadedError(FalconError):
    """Shed load: the bounded queue is full, or the request-log disk budget is spent."""

    code = "overloaded"
    http_status = 503
    exit_code = 4

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class InferenceTimeoutError(FalconError):
    code = "inference_timeout"
    http_status = 504
    exit_code = 4


class DependencyError(FalconError):
    code = "dependency_unavailable"
    http_status = 503
    exit_code = 5


class SchemaBehindError(DependencyError):
    code = "schema_behind"


class RuntimeStateError(FalconError):
    code = "runtime_error"
    http_status = 409
    exit_code = 6


class SupervisorUnreachableError(RuntimeStateError):
    code = "supervisor_unreachable"
    http_status = 503
