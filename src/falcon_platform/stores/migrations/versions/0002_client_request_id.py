"""The client's X-Request-ID in its own column; request_id is the server's key from now on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN of a nullable column: no table rewrite on SQLite or PostgreSQL.
    op.add_column("request_log", sa.Column("client_request_id", sa.String(128)))
    op.create_index("ix_request_log_client_request_id", "request_log", ["client_request_id"])


def downgrade() -> None:
    op.drop_index("ix_request_log_client_request_id", table_name="request_log")
    op.drop_column("request_log", "client_request_id")
