"""The relational schema, one SQLAlchemy Core ``MetaData`` for SQLite and PostgreSQL.

Alembic migrations in ``stores/migrations`` create exactly these tables; a test
checks that the migrated database matches this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

request_log = Table(
    "request_log",
    metadata,
    Column("request_id", String(128), primary_key=True),  # inserts are idempotent on this
    Column("ts", Float, nullable=False),  # epoch seconds UTC
    Column("worker", String(64), nullable=False),
    Column("release", String(64), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("input_hash", String(64)),
    Column("input_length", Integer),
    Column("input_text", Text),
    Column("prediction", String(128)),
    Column("confidence", Float),
    Column("cache_hit", Boolean, nullable=False, default=False),
    Column("idempotency_hit", Boolean, nullable=False, default=False),
    Column("client_id", String(64)),
    Column("error_type", String(64)),
    Index("ix_request_log_ts", "ts"),
    Index("ix_request_log_release_ts", "release", "ts"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", Float, nullable=False),  # epoch seconds UTC, millisecond precision or better
    Column("kind", String(64), nullable=False),
    Column("release", String(64)),
    Column("worker", String(64)),
    Column("details", JSON, nullable=False),
    Index("ix_events_ts", "ts"),
    Index("ix_events_kind_ts", "kind", "ts"),
)
