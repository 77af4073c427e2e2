"""Fleet: locations, hypervisor nodes, OS templates, IP pools and addresses, servers, drift reports.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "locations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("country_code ~ '^[A-Z]{2}$'", name=op.f("ck_locations_country_code_iso")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
        sa.UniqueConstraint("slug", name=op.f("uq_locations_slug")),
    )
    op.create_table(
        "os_templates",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("os_family", sa.String(length=40), nullable=False),
        sa.Column("os_version", sa.String(length=40), nullable=False),
        sa.Column("min_disk_gib", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("cloud_init", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("default_user", sa.String(length=40), server_default=sa.text("'root'"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_os_templates")),
        sa.UniqueConstraint("slug", name=op.f("uq_os_templates_slug")),
    )
    op.create_table(
        "ip_pools",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("network", postgresql.CIDR(), nullable=False),
        sa.Column("gateway", postgresql.INET(), nullable=False),
        sa.Column("dns_servers", postgresql.ARRAY(postgresql.INET()), nullable=False),
        sa.Column("location_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("family(network) = version", name=op.f("ck_ip_pools_network_matches_version")),
        sa.CheckConstraint("version IN (4, 6)", name=op.f("ck_ip_pools_version_known")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_ip_pools_location_id_locations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_ip_pools_name")),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("location_id", sa.BigInteger(), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("connection_uri", sa.String(length=500), nullable=False),
        sa.Column("credentials_encrypted", sa.Text(), nullable=True),
        sa.Column("storage_pool", sa.String(length=100), server_default=sa.text("'default'"), nullable=False),
        sa.Column("network", sa.String(length=100), server_default=sa.text("'default'"), nullable=False),
        sa.Column("domain_type", sa.String(length=8), server_default=sa.text("'kvm'"), nullable=False),
        sa.Column(
            "driver_options",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("cpu_total", sa.Integer(), nullable=False),
        sa.Column("memory_total_mib", sa.BigInteger(), nullable=False),
        sa.Column("disk_total_gib", sa.BigInteger(), nullable=False),
        sa.Column(
            "cpu_oversell",
            sa.Numeric(precision=5, scale=2, asdecimal=False),
            server_default=sa.text("1"),
            nullable=False,
        ),
        sa.Column(
            "memory_oversell",
            sa.Numeric(precision=5, scale=2, asdecimal=False),
            server_default=sa.text("1"),
            nullable=False,
        ),
        sa.Column(
            "disk_oversell",
            sa.Numeric(precision=5, scale=2, asdecimal=False),
            server_default=sa.text("1"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'offline'"), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("domain_type IN ('kvm', 'qemu')", name=op.f("ck_nodes_domain_type_known")),
        sa.CheckConstraint(
            "status IN ('online', 'maintenance', 'offline', 'unhealthy')", name=op.f("ck_nodes_status_known")
        ),
        sa.CheckConstraint(
            "cpu_oversell >= 1 AND memory_oversell >= 1 AND disk_oversell >= 1",
            name=op.f("ck_nodes_oversell_min"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_nodes_location_id_locations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("name", name=op.f("uq_nodes_name")),
    )
    op.create_index("ix_nodes_location_status", "nodes", ["location_id", "status"], unique=False)
    op.create_table(
        "node_templates",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("template_id", sa.BigInteger(), nullable=False),
        sa.Column("image_ref", sa.String(length=500), nullable=False),
        sa.Column("boot_kernel", sa.String(length=500), nullable=True),
        sa.Column("boot_initrd", sa.String(length=500), nullable=True),
        sa.Column("boot_cmdline", sa.String(length=1000), nullable=True),
        sa.Column("present", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_templates_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["os_templates.id"],
            name=op.f("fk_node_templates_template_id_os_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_templates")),
        sa.UniqueConstraint("node_id", "template_id", name="uq_node_templates_node_template"),
    )
    op.create_table(
        "servers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("location_id", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=True),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=True),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), server_default=sa.text("'awaiting_setup'"), nullable=False),
        sa.Column("power_state", sa.String(length=16), server_default=sa.text("'unknown'"), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("state_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "power_state IN ('running', 'stopped', 'paused', 'crashed', 'starting', 'unknown')",
            name=op.f("ck_servers_power_state_known"),
        ),
        sa.CheckConstraint(
            "status IN ('awaiting_setup', 'provisioning', 'active', 'reinstalling', 'suspended',"
            " 'deleting', 'deleted', 'failed')",
            name=op.f("ck_servers_status_known"),
        ),
        sa.CheckConstraint(
            "vcpus > 0 AND memory_mib > 0 AND disk_gib > 0", name=op.f("ck_servers_resources_positive")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_servers_location_id_locations")
        ),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_servers_node_id_nodes")),
        sa.ForeignKeyConstraint(
            ["template_id"], ["os_templates.id"], name=op.f("fk_servers_template_id_os_templates")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_servers_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
    )
    op.create_index("ix_servers_node", "servers", ["node_id", "status"], unique=False)
    op.create_index("ix_servers_user", "servers", ["user_id", "status"], unique=False)
    op.create_index("uq_servers_node_external", "servers", ["node_id", "external_id"], unique=True)
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("node_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("server_id", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column(
            "first_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('unknown_instance', 'missing_instance')", name=op.f("ck_drift_reports_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_drift_reports_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_drift_reports_server_id_servers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_reports")),
    )
    op.create_index(
        "uq_drift_reports_open",
        "drift_reports",
        ["node_id", "kind", "external_id"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_table(
        "ip_addresses",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("address", postgresql.INET(), nullable=False),
        sa.Column("reserved", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("server_id", sa.BigInteger(), nullable=True),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["ip_pools.id"], name=op.f("fk_ip_addresses_pool_id_ip_pools"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["server_id"], ["servers.id"], name=op.f("fk_ip_addresses_server_id_servers"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_addresses")),
        sa.UniqueConstraint("pool_id", "address", name="uq_ip_addresses_pool_address"),
    )
    op.create_index(
        "ix_ip_addresses_free",
        "ip_addresses",
        ["pool_id", "address"],
        unique=False,
        postgresql_where=sa.text("server_id IS NULL AND NOT reserved"),
    )
    op.create_index("ix_ip_addresses_server", "ip_addresses", ["server_id"], unique=False)
    # A server's task timeline lists its jobs by lock ("server:<id>"), newest first; procrastinate
    # itself indexes the lock only for jobs still waiting or running.
    op.execute("CREATE INDEX ix_procrastinate_jobs_lock_id ON procrastinate_jobs (lock, id DESC)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_procrastinate_jobs_lock_id")
    op.drop_index("ix_ip_addresses_server", table_name="ip_addresses")
    op.drop_index(
        "ix_ip_addresses_free",
        table_name="ip_addresses",
        postgresql_where=sa.text("server_id IS NULL AND NOT reserved"),
    )
    op.drop_table("ip_addresses")
    op.drop_index(
        "uq_drift_reports_open", table_name="drift_reports", postgresql_where=sa.text("resolved_at IS NULL")
    )
    op.drop_table("drift_reports")
    op.drop_index("uq_servers_node_external", table_name="servers")
    op.drop_index("ix_servers_user", table_name="servers")
    op.drop_index("ix_servers_node", table_name="servers")
    op.drop_table("servers")
    op.drop_table("node_templates")
    op.drop_index("ix_nodes_location_status", table_name="nodes")
    op.drop_table("nodes")
    op.drop_table("ip_pools")
    op.drop_table("os_templates")
    op.drop_table("locations")
