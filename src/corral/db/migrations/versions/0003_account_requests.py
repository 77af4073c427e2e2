"""Account requests: anonymous registrations, verification resends and password-reset requests,
counted per IP and per address to rate-limit them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "account_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ip", postgresql.INET(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('register', 'verify_resend', 'password_forgot')",
            name=op.f("ck_account_requests_kind_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_requests")),
    )
    op.create_index("ix_account_requests_ip", "account_requests", ["kind", "ip", "created_at"], unique=False)
    op.create_index(
        "ix_account_requests_email", "account_requests", ["kind", "email", "created_at"], unique=False
    )
    op.create_index("ix_account_requests_created", "account_requests", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_account_requests_created", table_name="account_requests")
    op.drop_index("ix_account_requests_email", table_name="account_requests")
    op.drop_index("ix_account_requests_ip", table_name="account_requests")
    op.drop_table("account_requests")
