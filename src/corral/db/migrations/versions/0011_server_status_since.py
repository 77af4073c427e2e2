"""When a server entered its status, so the reconciler can report one stuck in a transitional state
(building, reinstalling, deleting) past a deadline; drift reports gain the kind "stuck_server".

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

_KINDS_BEFORE = "kind IN ('unknown_instance', 'missing_instance')"
_KINDS_AFTER = "kind IN ('unknown_instance', 'missing_instance', 'stuck_server')"


def upgrade() -> None:
    op.add_column(
        "servers",
        sa.Column(
            "status_changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
    )
    op.drop_constraint(op.f("ck_drift_reports_kind_known"), "drift_reports", type_="check")
    op.create_check_constraint(op.f("ck_drift_reports_kind_known"), "drift_reports", _KINDS_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM drift_reports WHERE kind = 'stuck_server'")
    op.drop_constraint(op.f("ck_drift_reports_kind_known"), "drift_reports", type_="check")
    op.create_check_constraint(op.f("ck_drift_reports_kind_known"), "drift_reports", _KINDS_BEFORE)
    op.drop_column("servers", "status_changed_at")
