"""Plans, SSH keys, console tickets, server suspension and cancellation, panel settings, step-up.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.Column("traffic_gib", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_plans_currency_iso")),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_plans_price_not_negative")),
        sa.CheckConstraint("traffic_gib >= 0", name=op.f("ck_plans_traffic_not_negative")),
        sa.CheckConstraint(
            "vcpus > 0 AND memory_mib > 0 AND disk_gib > 0", name=op.f("ck_plans_resources_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("slug", name=op.f("uq_plans_slug")),
    )
    op.create_table(
        "panel_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["users.id"],
            name=op.f("fk_panel_settings_updated_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_panel_settings")),
    )
    op.create_table(
        "plan_locations",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("location_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_plan_locations_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_plan_locations_plan_id_plans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("plan_id", "location_id", name=op.f("pk_plan_locations")),
    )
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("key_type", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ssh_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_keys")),
    )
    op.create_index("uq_ssh_keys_user_fingerprint", "ssh_keys", ["user_id", "fingerprint"], unique=True)
    op.create_table(
        "console_tickets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("server_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_console_tickets_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_console_tickets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_tickets")),
        sa.UniqueConstraint("ticket_hash", name=op.f("uq_console_tickets_ticket_hash")),
    )
    op.add_column("servers", sa.Column("plan_id", sa.BigInteger(), nullable=True))
    op.add_column("servers", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("servers", sa.Column("suspended_reason", sa.Text(), nullable=True))
    op.add_column("servers", sa.Column("cancel_mode", sa.String(length=16), nullable=True))
    op.add_column("servers", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("servers", sa.Column("cancel_due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "servers", sa.Column("cancel_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("servers", sa.Column("cancel_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_servers_cancel_due",
        "servers",
        ["cancel_due_at"],
        unique=False,
        postgresql_where=sa.text("cancel_due_at IS NOT NULL"),
    )
    op.create_foreign_key(op.f("fk_servers_plan_id_plans"), "servers", "plans", ["plan_id"], ["id"])
    op.create_check_constraint(
        op.f("ck_servers_cancel_mode_known"),
        "servers",
        "cancel_mode IS NULL OR cancel_mode IN ('grace', 'immediate')",
    )
    op.add_column("user_sessions", sa.Column("step_up_method", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("user_sessions", "step_up_method")
    op.drop_constraint(op.f("ck_servers_cancel_mode_known"), "servers", type_="check")
    op.drop_constraint(op.f("fk_servers_plan_id_plans"), "servers", type_="foreignkey")
    op.drop_index(
        "ix_servers_cancel_due", table_name="servers", postgresql_where=sa.text("cancel_due_at IS NOT NULL")
    )
    op.drop_column("servers", "cancel_error")
    op.drop_column("servers", "cancel_attempts")
    op.drop_column("servers", "cancel_due_at")
    op.drop_column("servers", "cancel_requested_at")
    op.drop_column("servers", "cancel_mode")
    op.drop_column("servers", "suspended_reason")
    op.drop_column("servers", "suspended_at")
    op.drop_column("servers", "plan_id")
    op.drop_table("console_tickets")
    op.drop_index("uq_ssh_keys_user_fingerprint", table_name="ssh_keys")
    op.drop_table("ssh_keys")
    op.drop_table("plan_locations")
    op.drop_table("panel_settings")
    op.drop_table("plans")
