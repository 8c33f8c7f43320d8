"""Idempotency keys: replay a stored answer, refuse a key reused for a different request.

The body hash covers the endpoint and the validated input, so the same key
sent to another endpoint, or with another text, is a conflict (422)::

    replay = await keys.lookup("order-42", body_hash, request_id)   # None on first use
    replay = await keys.remember("order-42", body_hash, body, request_id)  # None: ours stored

A replay is the stored body with ``request_id`` set to this request's id and
``idempotency_hit: true``. Only 200 answers are stored, so a retry after a 503
is served afresh.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from falcon_platform.errors import IdempotencyConflictError
from falcon_platform.serving.state import ServingState
from falcon_platform.serving.validation import check_idempotency_key
from falcon_platform.stores.base import StoredResponse


def replay_body(
    key: str, body_hash: str, stored: StoredResponse, request_id: str
) -> dict[str, Any]:
    """The stored answer re-addressed to this request, or a conflict saying why (pure)."""
    if stored.body_hash != body_hash:
        first = datetime.fromtimestamp(stored.created_at, UTC).isoformat(timespec="seconds")
        raise IdempotencyConflictError(
            f"Idempotency-Key {key!r} was first used at {first} with a different request "
            "(endpoint or body); use a new key for a new request, or resend the same body "
            "to get the stored answer"
        )
    body: dict[str, Any] = orjson.loads(stored.body)
    body["request_id"] = request_id
    body["idempotency_hit"] = True
    return body


class IdempotencyKeys:
    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def lookup(self, key: str, body_hash: str, request_id: str) -> dict[str, Any] | None:
        check_idempotency_key(key)
        stores = self.state.stores
        stored = await stores.idempotency.get(key) if stores is not None else None
        if stored is None:
            return None
        self.state.metrics.idempotency_hits.inc()
        return replay_body(key, body_hash, stored, request_id)

    async def remember(
        self, key: str, body_hash: str, body: bytes, request_id: str
    ) -> dict[str, Any] | None:
        """Store our answer (insert-if-absent); on a lost race, the first stored one wins."""
        stores = self.state.stores
        if stores is None:
            return None
        stored = await stores.idempotency.put(
            key, StoredResponse(body_hash, 200, body, time.time())
        )
        if stored.body == body:
            return None
        self.state.metrics.idempotency_hits.inc()
        return replay_body(key, body_hash, stored, request_id)
