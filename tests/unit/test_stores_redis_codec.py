"""What the Redis idempotency store keeps: a stored response survives encoding byte for byte."""

from __future__ import annotations

from falcon_platform.stores.base import StoredResponse
from falcon_platform.stores.redis_stores import decode_stored, encode_stored


def test_stored_response_round_trips_including_newlines_and_binary_body() -> None:
    original = StoredResponse(
        body_hash="ab" * 32, status_code=200, body=b'{"a":1}\n\x00\xff', created_at=1.5
    )
    assert decode_stored(encode_stored(original)) == original
