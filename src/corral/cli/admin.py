"""`corral admin …`: operator maintenance commands."""

from __future__ import annotations

import asyncio
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from corral.audit import Target, audit
from corral.config import Settings, get_settings
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


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as an error and exit with ``code`` (each command documents its codes)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _settings_or_exit() -> Settings:
    """The settings (with the demo's generated secrets in demo mode), or exit 2 saying what is wrong."""
    try:
        settings = get_settings()
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        fail(str(error), 2)
    return with_demo_secrets(settings) if settings.demo else settings


@admin_app.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored node credential and node SSH key with the first key of
    CORRAL_SECURITY__ENCRYPTION_KEYS.

    All in one transaction; values already under that key are left alone, so running it twice is
    harmless. When every value is rotated the old keys can be removed from the list. Exit codes:
    0 done, 1 some values could not be decrypted (nothing changed), 2 configuration, 3 database.
    """
    # The CLI loads domains on use.
    from corral.node_keys.service import rotate_all as rotate_node_keys
    from corral.nodes.credentials import RotationReport, rotate_all

    settings = _settings_or_exit()
    try:
        keyring = Keyring.parse(settings.security.encryption_keys.get_secret_value())
    except KeyringError as error:
        fail(f"CORRAL_SECURITY__ENCRYPTION_KEYS: {error}", 2)

    async def main() -> RotationReport:
        engine = create_engine(resolve_database_url(settings), settings)
        try:
            async with transaction(create_session_factory(engine, settings)) as session:
                report = await rotate_all(session, keyring)
                keys = await rotate_node_keys(session, keyring)
                if report.unreadable or keys.unreadable:
                    # All or nothing across both: roll back whatever the first part changed.
                    await session.rollback()
                    return RotationReport(
                        rotated=0,
                        total=report.total + keys.total,
                        key_id=report.key_id,
                        unreadable=[*report.unreadable, *keys.unreadable],
                    )
                report = RotationReport(
                    rotated=report.rotated + keys.rotated,
                    total=report.total + keys.total,
                    key_id=report.key_id,
                )
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
        f"rotated {report.rotated} of {report.total} node credential(s) and SSH key(s)"
        f" to key {report.key_id!r}" + ("" if report.rotated else " (all were already current)")
    )


@admin_app.command("enrolment-link")
def enrolment_link(
    email: Annotated[str, typer.Argument(help="The operator's or super-admin's email address.")],
) -> None:
    """Print a single-use link that adds the first passkey of an operator or super-admin account.

    For the first super-admin, who has nobody to send them one: open the link in a browser signed
    in with that account's password (a password alone never adds a staff passkey). It works once,
    for one hour, and replaces any earlier link; the issue is audited. Exit codes: 0 printed,
    1 refused (no such account, not an active operator or super-admin, or it has a passkey),
    2 configuration, 3 database.
    """
    from corral.auth.enrolment import IssuedEnrolmentLink, passkey_enrolment  # domains load on use
    from corral.kit.errors import PanelError
    from corral.models.mfa import EnrolmentDelivery

    settings = _settings_or_exit()

    async def main() -> IssuedEnrolmentLink:
        engine = create_engine(resolve_database_url(settings), settings)
        try:
            async with transaction(create_session_factory(engine, settings)) as session:
                return await passkey_enrolment.issue_for_email(
                    session, Actor.cli("admin enrolment-link"), email, EnrolmentDelivery.CLI
                )
        finally:
            await engine.dispose()

    try:
        issued = asyncio.run(main())
    except PanelError as refused:
        fail(refused.message, 1)
    except (SQLAlchemyError, OSError) as error:
        fail(f"cannot reach the database: {type(error).__name__}: {error}", 3)
    until = f"{issued.expires_at:%Y-%m-%d %H:%M} UTC"
    typer.echo(f"passkey enrolment link for {issued.email} (works once, until {until}):")
    typer.echo(issued.link)
    typer.echo("Sign in with the account's password, then open the link in the same browser.")
