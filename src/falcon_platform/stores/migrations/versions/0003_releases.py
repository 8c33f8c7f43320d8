"""Releases: one row per release (r1, r2, ...), written by the supervisor's release manager.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("model_sha256", sa.String(64)),
        sa.Column("settings_fingerprint", sa.String(64), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_index("ix_releases_number", "releases", ["number"])


def downgrade() -> None:
    op.drop_index("ix_releases_number", table_name="releases")
    op.drop_table("releases")
