"""Turning configuration into the connection strings each library wants."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from corral.config import Settings
from corral.db import embedded


def sqlalchemy_url(raw: str) -> URL:
    """A SQLAlchemy URL on the psycopg 3 driver, whatever scheme the operator wrote."""
    url = make_url(raw)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"only PostgreSQL is supported, got {url.get_backend_name()!r}")
    return url.set(drivername="postgresql+psycopg")


def libpq_conninfo(url: URL) -> str:
    """The same URL as libpq understands it (procrastinate's connector and psql use this)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> URL:
    """The configured database, or the embedded one (started on demand) when none is configured."""
    if settings.database_url is not None:
        return sqlalchemy_url(settings.database_url.get_secret_value())
    return sqlalchemy_url(embedded.ensure_running(settings.data_dir))


def redacted(url: URL) -> str:
    return url.render_as_string(hide_password=True)
