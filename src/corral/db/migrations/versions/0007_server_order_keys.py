"""Servers remember the idempotency key of the order that made them (unique per customer).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("servers", sa.Column("order_key", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_servers_user_order_key",
        "servers",
        ["user_id", "order_key"],
        unique=True,
        postgresql_where=sa.text("order_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_servers_user_order_key", table_name="servers", postgresql_where=sa.text("order_key IS NOT NULL")
    )
    op.drop_column("servers", "order_key")
