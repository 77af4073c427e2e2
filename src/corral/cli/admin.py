"""`corral admin …`: operator maintenance commands."""

from __future__ import annotations

import asyncio
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from corral.audit import Target, audit
from corral.config import get_settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.db.url import resolve_database_url
from corral.demo.secrets import with_demo_secrets
from corral.kit.actors import Actor
from corral.kit.crypto import Keyring, KeyringError, generate_key_spec

admin_app = typer.Typer(help="Maintenance commands for operators.", no_args_is_help=True)


@admin_app.command("generate-key")
def generate_key(
    key_id: Annotated[str, typer.Option("--id", help="Key id (letters, digits, - or _).")] = "k1",
) -> None:
    """Print a new id:key entry for CORRAL_SECURITY__ENCRYPTION_KEYS (put it first to rotate)."""
    typer.echo(generate_key_spec(key_id))


@admin_app.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored node credential with the first key of CORRAL_SECURITY__ENCRYPTION_KEYS.

    All in one transaction; values already under that key are left alone, so running it twice is
    harmless. When every value is rotated the old keys can be removed from the list. Exit codes:
    0 done, 1 some values could not be decrypted (nothing changed), 2 configuration, 3 database.
    """
    from corral.nodes.credentials import RotationReport, rotate_all  # the CLI loads domains on use

    def fail(message: str, code: int) -> NoReturn:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code)

    try:
        settings = get_settings()
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        fail(str(error), 2)
    if settings.demo:
        settings = with_demo_secrets(settings)
    try:
        keyring = Keyring.parse(settings.security.encryption_keys.get_secret_value())
    except KeyringError as error:
        fail(f"CORRAL_SECURITY__ENCRYPTION_KEYS: {error}", 2)

    async def main() -> RotationReport:
        engine = create_engine(resolve_database_url(settings), settings)
        try:
            async with transaction(create_session_factory(engine, settings)) as session:
                report = await rotate_all(session, keyring)
                if report.rotated:
                    await audit.record(
                        session,
                        Actor.cli("admin rotate-keys"),
                        "node.credentials.rotate",
                        target=Target(type="node"),
                        payload={"rotated": report.rotated, "total": report.total, "key_id": report.key_id},
                    )
                return report
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(main())
    except (SQLAlchemyError, OSError) as error:
        fail(f"cannot reach the database: {type(error).__name__}: {error}", 3)
    for problem in report.unreadable:
        typer.secho(f"error: {problem}", fg=typer.colors.RED, err=True)
    if report.unreadable:
        fail("nothing was rotated: add the missing key to CORRAL_SECURITY__ENCRYPTION_KEYS and run again", 1)
    typer.echo(
        f"rotated {report.rotated} of {report.total} node credential(s) to key {report.key_id!r}"
        + ("" if report.rotated else " (all were already current)")
    )
