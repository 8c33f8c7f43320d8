"""Initial schema: request_log, idempotency_keys, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("release", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("input_hash", sa.String(64)),
        sa.Column("input_length", sa.Integer),
        sa.Column("input_text", sa.Text),
        sa.Column("prediction", sa.String(128)),
        sa.Column("confidence", sa.Float),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("idempotency_hit", sa.Boolean, nullable=False),
        sa.Column("client_id", sa.String(64)),
        sa.Column("error_type", sa.String(64)),
    )
    op.create_index("ix_request_log_ts", "request_log", ["ts"])
    op.create_index("ix_request_log_release_ts", "request_log", ["release", "ts"])

    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("release", sa.String(64)),
        sa.Column("worker", sa.String(64)),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_index("ix_events_kind_ts", "events", ["kind", "ts"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("idempotency_keys")
    op.drop_table("request_log")
