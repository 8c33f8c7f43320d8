"""Idempotency keys: replay a stored answer, refuse a key reused for a different request.

Keys are scoped per client (``client_id``: the hashed API key or Authorization value, else the
client address), so two clients that pick the same key never see each other's answers. The
body hash covers the endpoint and the validated input, so the same key sent to another
endpoint, or with another text, is a conflict (422)::

    replay = await keys.lookup(client, "order-42", body_hash, request_id)   # None on first use
    replay = await keys.remember(client, "order-42", body_hash, body, request_id)  # None: stored

A replay is the stored body with ``request_id`` set to this request's id and
``idempotency_hit: true``. Only 200 answers are stored, so a retry after a 503
is served afresh.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from falcon_platform.errors import IdempotencyConflictError
from falcon_platform.serving.state import ServingState
from falcon_platform.serving.validation import check_idempotency_key
from falcon_platform.stores.base import StoredResponse


def scoped_key(client: str, key: str) -> str:
    """The store's key: the client's identity, then the client's key (``"<16 hex>:<key>"``)."""
    return f"{client}:{key}"


def replay_body(
    key: str, body_hash: str, stored: StoredResponse, request_id: str
) -> dict[str, Any]:
    """The stored answer re-addressed to this request, or a conflict (pure).

    The conflict says nothing about the first use (not when, not what): only its sender
    could have made it, but the message is the same whoever asks."""
    if stored.body_hash != body_hash:
        raise IdempotencyConflictError(
            f"Idempotency-Key {key!r} was already used with a different request (endpoint or "
            "body); use a new key for a new request, or resend the same body to get the "
            "stored answer"
        )
    body: dict[str, Any] = orjson.loads(stored.body)
    body["request_id"] = request_id
    body["idempotency_hit"] = True
    return body


class IdempotencyKeys:
    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def lookup(
        self, client: str, key: str, body_hash: str, request_id: str
    ) -> dict[str, Any] | None:
        check_idempotency_key(key)
        stores = self.state.stores
        stored = await stores.idempotency.get(scoped_key(client, key)) if stores else None
        if stored is None:
            return None
        self.state.metrics.idempotency_hits.inc()
        return replay_body(key, body_hash, stored, request_id)

    async def remember(
        self, client: str, key: str, body_hash: str, body: bytes, request_id: str
    ) -> dict[str, Any] | None:
        """Store our answer (insert-if-absent); on a lost race, the first stored one wins."""
        stores = self.state.stores
        if stores is None:
            return None
        stored = await stores.idempotency.put(
            scoped_key(client, key), StoredResponse(body_hash, 200, body, time.time())
        )
        if stored.body == body:
            return None
        self.state.metrics.idempotency_hits.inc()
        return replay_body(key, body_hash, stored, request_id)
