"""Unfinished orders (awaiting setup) are released after a setting, with a reminder email first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_AWAITING = sa.text("status = 'awaiting_setup'")


def upgrade() -> None:
    op.add_column("servers", sa.Column("setup_reminder_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_servers_awaiting_setup", "servers", ["created_at"], unique=False, postgresql_where=_AWAITING
    )


def downgrade() -> None:
    op.drop_index("ix_servers_awaiting_setup", table_name="servers", postgresql_where=_AWAITING)
    op.drop_column("servers", "setup_reminder_sent_at")
