"""The request log's columns as plain data: what the shipper needs without SQLAlchemy.

``stores/schema.py`` is the schema (SQLAlchemy ``Table``, what Alembic's migrations create);
this is the same table's columns, in order, as (name, Python type, maximum length or None),
for a serving worker that ships rows without importing SQLAlchemy. A test checks that the two
agree.
"""

from __future__ import annotations

REQUEST_LOG_COLUMNS: tuple[tuple[str, type, int | None], ...] = (
    ("request_id", str, 128),
    ("ts", float, None),
    ("worker", str, 64),
    ("release", str, 64),
    ("model_version", str, 128),
    ("endpoint", str, 64),
    ("status_code", int, None),
    ("latency_ms", float, None),
    ("input_hash", str, 64),
    ("input_length", int, None),
    ("input_text", str, None),
    ("prediction", str, 128),
    ("confidence", float, None),
    ("cache_hit", bool, None),
    ("idempotency_hit", bool, None),
    ("client_id", str, 64),
    ("error_type", str, 64),
    ("client_request_id", str, 128),
)
