"""Single-use enrolment links for a privileged account's first passkey.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "passkey_enrolment_links",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "delivery IN ('email', 'handover', 'cli')",
            name=op.f("ck_passkey_enrolment_links_delivery_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_passkey_enrolment_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passkey_enrolment_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_passkey_enrolment_links_token_hash")),
    )
    op.create_index(
        "ix_passkey_enrolment_links_user",
        "passkey_enrolment_links",
        ["user_id", "used_at", "revoked_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_passkey_enrolment_links_user", table_name="passkey_enrolment_links")
    op.drop_table("passkey_enrolment_links")
