"""Test fixtures on a real PostgreSQL.

The server is ``CORRAL_TEST_DATABASE_URL`` when set (any database on it; we create our own), else an
embedded PostgreSQL under ``.data/test-pg`` in the checkout. The schema is built once by
``alembic upgrade head`` into a template database; each test then gets either

- ``db``: a session inside a transaction that is rolled back afterwards (fast, the default), or
- ``fresh_database``: a whole database copied from the template, for tests that must commit or
  use several connections (jobs, the CLI, a served app).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from corral.app import create_app
from corral.config import Settings
from corral.db import embedded, migrate
from corral.db.session import translate_lock_errors
from corral.db.url import libpq_conninfo, sqlalchemy_url
from corral.kit.crypto import generate_key_spec
from corral.web.deps import get_db_session

# The real SMTP sink (aiosmtpd) is available to every test as `smtp_sink`.
pytest_plugins = ("tests.support.smtp",)

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_TEST_DIR = REPO_ROOT / ".data" / "test-pg"


def _server_url() -> URL:
    configured = os.environ.get("CORRAL_TEST_DATABASE_URL", "").strip()
    if configured:
        return sqlalchemy_url(configured)
    return sqlalchemy_url(embedded.ensure_running(EMBEDDED_TEST_DIR, database="postgres"))


def _admin(url: URL) -> psycopg.Connection:
    return psycopg.connect(libpq_conninfo(url), autocommit=True)


def _create_database(server: URL, name: str, template: str | None = None) -> URL:
    with _admin(server) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(statement)
    return server.set(database=name)


def _drop_database(server: URL, name: str) -> None:
    with _admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def database_server() -> URL:
    """A URL to the test server's maintenance database."""
    return _server_url()


@pytest.fixture(scope="session")
def template_database(database_server: URL) -> Iterator[str]:
    """A migrated database nobody connects to, copied for each database the tests use."""
    name = f"corral_tpl_{os.getpid()}_{secrets.token_hex(3)}"
    url = _create_database(database_server, name)
    migrate.upgrade(url)
    yield name
    _drop_database(database_server, name)


@pytest.fixture(scope="session")
def database_url(database_server: URL, template_database: str) -> Iterator[URL]:
    """The shared database that rollback-isolated tests run in."""
    name = f"corral_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = _create_database(database_server, name, template=template_database)
    yield url
    _drop_database(database_server, name)


@pytest.fixture
def fresh_database(database_server: URL, template_database: str) -> Iterator[Callable[[], URL]]:
    """Call it to get a brand-new migrated database (dropped after the test)."""
    made: list[str] = []

    def make() -> URL:
        name = f"corral_fresh_{os.getpid()}_{secrets.token_hex(4)}"
        made.append(name)
        return _create_database(database_server, name, template=template_database)

    yield make
    for name in made:
        _drop_database(database_server, name)


@pytest.fixture
def empty_database(database_server: URL) -> Iterator[Callable[[], URL]]:
    """Call it to get a brand-new database with no schema at all (dropped after the test)."""
    made: list[str] = []

    def make() -> URL:
        name = f"corral_empty_{os.getpid()}_{secrets.token_hex(4)}"
        made.append(name)
        return _create_database(database_server, name)

    yield make
    for name in made:
        _drop_database(database_server, name)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings as production would have them: real random secrets, no demo relaxations."""
    return Settings(
        demo=False,
        data_dir=tmp_path_factory.mktemp("corral-data"),
        web={"public_url": "https://panel.test", "secure_cookies": True},  # type: ignore[arg-type]
        security={  # type: ignore[arg-type]
            "secret_key": secrets.token_urlsafe(48),
            "audit_key": secrets.token_urlsafe(48),
            "encryption_keys": generate_key_spec("test"),
        },
        log={"level": "WARNING", "format": "console"},  # type: ignore[arg-type]
        # Real lockout thresholds, but a progressive delay in milliseconds so tests stay fast;
        # the real delays have their own test.
        auth={"delay_base_seconds": 0.001, "delay_max_seconds": 0.01},  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
async def engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    translate_lock_errors(engine)  # as the panel's own engines do
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine, settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session whose every change, commits included, is rolled back after the test."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        session = AsyncSession(
            bind=connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
            info={"settings": settings},
        )
        try:
            yield session
        finally:
            await session.close()
            await transaction.rollback()


@pytest.fixture
async def app(settings: Settings, database_url: URL, db: AsyncSession) -> AsyncIterator[FastAPI]:
    """The panel, with every request's session joined to the test's rolled-back transaction."""
    application = create_app(settings, database_url=database_url, run_worker=False)

    async def test_session() -> AsyncIterator[AsyncSession]:
        # As in production, a request's work is committed when the handler returns and undone when
        # it raises; here that is a savepoint of its own, so a failed request cannot undo the test's
        # setup, and the test's transaction is still rolled back at the end.
        request_work = await db.begin_nested()
        try:
            yield db
        except BaseException:
            await request_work.rollback()
            raise
        else:
            await request_work.commit()

    application.dependency_overrides[get_db_session] = test_session
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://panel.test") as http:
        yield http
