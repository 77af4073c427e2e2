"""`corral audit verify` and `corral audit checkpoint`.

Exit codes of `verify`, for cron jobs and monitoring: 0 the chain is intact, 1 it is broken (the
first bad row is named), 2 the configuration is unusable (audit key, settings), 3 the database
could not be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import VerifyReport, audit
from corral.audit.chain import timestamp_text
from corral.config import SECRET_FIELDS, Settings, get_settings, secret_problem
from corral.db.session import create_engine, create_session_factory, transaction
from corral.db.url import resolve_database_url
from corral.demo.secrets import with_demo_secrets
from corral.models.audit import AuditCheckpoint

EXIT_BROKEN = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3
AUDIT_KEY_VARIABLE = SECRET_FIELDS["audit_key"]

audit_app = typer.Typer(
    help="Check and anchor the tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        _fail(str(error), EXIT_CONFIG)
    if settings.demo:
        # Demo mode keeps its generated audit key in the data directory; verify with that one.
        settings = with_demo_secrets(settings)
    problem = secret_problem(AUDIT_KEY_VARIABLE, settings.security.audit_key.get_secret_value())
    if problem is not None:
        _fail(problem, EXIT_CONFIG)
    return settings


def _run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on the configured database."""

    async def main() -> T:
        engine = create_engine(resolve_database_url(settings), settings)
        try:
            async with transaction(create_session_factory(engine, settings)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (SQLAlchemyError, OSError) as error:
        _fail(f"cannot read the audit log: {type(error).__name__}: {error}", EXIT_DATABASE)


@audit_app.command()
def verify() -> None:
    """Recompute the whole hash chain and check every checkpoint. Exit 1 if anything was altered."""
    settings = _settings()

    async def work(session: AsyncSession) -> VerifyReport:
        return await audit.verify(session)

    report = _run(settings, work)
    if report.ok:
        typer.echo(report.summary())
        return
    typer.secho(report.summary(), fg=typer.colors.RED)
    raise typer.Exit(EXIT_BROKEN)


@audit_app.command()
def checkpoint() -> None:
    """Sign the chain's current head, so a later truncation of the log is detected."""
    settings = _settings()

    async def work(session: AsyncSession) -> AuditCheckpoint | None:
        return await audit.checkpoint(session)

    recorded = _run(settings, work)
    if recorded is None:
        typer.echo("audit log is empty: nothing to checkpoint")
        return
    typer.echo(
        f"checkpoint #{recorded.id}: head seq {recorded.seq}, hash {recorded.hash}, "
        f"at {timestamp_text(recorded.created_at)}, key {recorded.key_id}"
    )
