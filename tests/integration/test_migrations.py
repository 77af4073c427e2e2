"""Migrations build the schema from nothing, tear it down, and match the ORM models exactly."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

import corral.models
from corral.db import migrate
from corral.db.url import libpq_conninfo


def _tables(url: URL) -> set[str]:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def _routines(url: URL) -> set[str]:
    with psycopg.connect(libpq_conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def _drift(url: URL, metadata: sa.MetaData) -> list[object]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": migrate.include_object, "compare_type": True},
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_from_empty(empty_database: Callable[[], URL]) -> None:
    url = empty_database()
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    assert {"users", "audit_events", "audit_checkpoints", "job_logs", "procrastinate_jobs"} <= _tables(url)

    migrate.downgrade(url, "base")
    assert migrate.current_revision(url) is None
    assert _tables(url) <= {"alembic_version"}
    assert not {name for name in _routines(url) if name.startswith(("procrastinate", "corral"))}

    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()


def test_models_and_migrations_agree(empty_database: Callable[[], URL]) -> None:
    url = empty_database()
    migrate.upgrade(url)
    assert _drift(url, corral.models.Base.metadata) == []


def test_drift_check_notices_a_model_change(empty_database: Callable[[], URL]) -> None:
    """The comparison above is only worth something if it can fail: add a column no migration has."""
    url = empty_database()
    migrate.upgrade(url)
    metadata = sa.MetaData()
    for table in corral.models.Base.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["users"].append_column(sa.Column("nickname", sa.String(40)))
    differences = _drift(url, metadata)
    assert any(diff[0] == "add_column" and diff[3].name == "nickname" for diff in differences)  # type: ignore[index]
