"""Nodes are reached through structured connection fields (transport, host, port, login, a
panel-managed SSH key) instead of a free-form URI; the panel's SSH keys for nodes.

Existing URIs are converted when they say nothing the fields cannot: ``test:///default``,
``qemu:///system`` (and ``qemu+unix``), ``qemu+ssh``/``qemu+libssh*`` with a login and host and no
parameters, ``qemu+tls`` with a host. Anything else (parameters, files, other paths) is not guessed
at: the node keeps no transport, turns unhealthy and says the connection must be entered again. An
ssh node has no panel key or pinned host key yet either way; its health check says so until an
operator chooses them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_LOGIN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_SCHEMES = {"qemu+ssh", "qemu+libssh", "qemu+libssh2"}
REENTER = "The connection must be entered again: its old address ({uri}) cannot be expressed as fields."


def _host(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value if _HOST.match(value) else None


def convert(uri: str) -> dict[str, object] | None:
    """The fields for an old URI, or None when it cannot be converted faithfully."""
    if any(ord(char) < 32 or ord(char) == 127 for char in uri):
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if parts.query or parts.fragment or parts.password is not None:
        return None
    if uri == "test:///default":
        return {"transport": "test"}
    if parts.scheme in {"qemu", "qemu+unix"} and not parts.netloc and parts.path == "/system":
        return {"transport": "local"}
    host = _host(parts.hostname)
    if host is None or parts.path != "/system":
        return None
    if parts.scheme in _SSH_SCHEMES and parts.username and _LOGIN.match(parts.username):
        return {"transport": "ssh", "host": host, "port": port, "ssh_user": parts.username}
    if parts.scheme == "qemu+tls" and not parts.username:
        return {"transport": "tls", "host": host, "port": port}
    return None


def upgrade() -> None:
    op.create_table(
        "node_ssh_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=100), nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_ssh_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_node_ssh_keys_name")),
    )
    op.add_column("nodes", sa.Column("transport", sa.String(length=16), nullable=True))
    op.add_column("nodes", sa.Column("host", sa.String(length=253), nullable=True))
    op.add_column("nodes", sa.Column("port", sa.Integer(), nullable=True))
    op.add_column("nodes", sa.Column("ssh_user", sa.String(length=32), nullable=True))
    op.add_column("nodes", sa.Column("ssh_key_id", sa.BigInteger(), nullable=True))
    op.add_column("nodes", sa.Column("ssh_host_key", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_nodes_ssh_key_id_node_ssh_keys"),
        "nodes",
        "node_ssh_keys",
        ["ssh_key_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(op.f("ix_nodes_ssh_key_id"), "nodes", ["ssh_key_id"])
    op.create_check_constraint(
        op.f("ck_nodes_transport_known"), "nodes", "transport IN ('test', 'local', 'ssh', 'tls')"
    )
    op.create_check_constraint(
        op.f("ck_nodes_port_range"), "nodes", "port IS NULL OR port BETWEEN 1 AND 65535"
    )

    connection = op.get_bind()
    nodes = sa.table(
        "nodes",
        sa.column("id", sa.BigInteger()),
        sa.column("connection_uri", sa.String()),
        sa.column("transport", sa.String()),
        sa.column("host", sa.String()),
        sa.column("port", sa.Integer()),
        sa.column("ssh_user", sa.String()),
        sa.column("status", sa.String()),
        sa.column("last_error", sa.Text()),
    )
    for node_id, uri in connection.execute(sa.select(nodes.c.id, nodes.c.connection_uri)).all():
        fields = convert(uri)
        if fields is None:
            values: dict[str, object] = {"status": "unhealthy", "last_error": REENTER.format(uri=uri[:200])}
        else:
            values = fields
        connection.execute(sa.update(nodes).where(nodes.c.id == node_id).values(**values))
    op.drop_column("nodes", "connection_uri")


def downgrade() -> None:
    op.add_column("nodes", sa.Column("connection_uri", sa.String(length=500), nullable=True))
    op.execute(
        """
        UPDATE nodes SET connection_uri = CASE transport
            WHEN 'test' THEN 'test:///default'
            WHEN 'local' THEN 'qemu:///system'
            WHEN 'ssh' THEN 'qemu+ssh://' || ssh_user || '@'
                || CASE WHEN host LIKE '%:%' THEN '[' || host || ']' ELSE host END
                || COALESCE(':' || port, '') || '/system'
            WHEN 'tls' THEN 'qemu+tls://'
                || CASE WHEN host LIKE '%:%' THEN '[' || host || ']' ELSE host END
                || COALESCE(':' || port, '') || '/system'
            ELSE 'invalid:///re-enter-the-connection' END
        """
    )
    op.alter_column("nodes", "connection_uri", nullable=False)
    op.drop_constraint(op.f("ck_nodes_port_range"), "nodes", type_="check")
    op.drop_constraint(op.f("ck_nodes_transport_known"), "nodes", type_="check")
    op.drop_index(op.f("ix_nodes_ssh_key_id"), table_name="nodes")
    op.drop_constraint(op.f("fk_nodes_ssh_key_id_node_ssh_keys"), "nodes", type_="foreignkey")
    for column in ("ssh_host_key", "ssh_key_id", "ssh_user", "port", "host", "transport"):
        op.drop_column("nodes", column)
    op.drop_table("node_ssh_keys")
