"""Running Alembic from code (`corral migrate`, tests, `corral doctor`)."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection

# procrastinate owns these objects; its schema is applied by our first migration, but they are not
# declared as ORM models, so model/migration comparison must look past them.
PROCRASTINATE_PREFIX = "procrastinate_"


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "table" and name is not None and name.startswith(PROCRASTINATE_PREFIX):
        return False
    table = getattr(obj, "table", None)
    return not (table is not None and str(table.name).startswith(PROCRASTINATE_PREFIX))


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "corral.db:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _with_connection(url: URL, action: str, revision: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        config = alembic_config(connection)
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
    engine.dispose()


def upgrade(url: URL, revision: str = "head") -> None:
    _with_connection(url, "upgrade", revision)


def downgrade(url: URL, revision: str) -> None:
    _with_connection(url, "downgrade", revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url: URL) -> str | None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
