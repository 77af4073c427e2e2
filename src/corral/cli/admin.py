"""`corral admin …`: operator maintenance commands."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.kit.crypto import generate_key_spec

admin_app = typer.Typer(help="Maintenance commands for operators.", no_args_is_help=True)


@admin_app.command("generate-key")
def generate_key(
    key_id: Annotated[str, typer.Option("--id", help="Key id (letters, digits, - or _).")] = "k1",
) -> None:
    """Print a new id:key entry for CORRAL_SECURITY__ENCRYPTION_KEYS (put it first to rotate)."""
    typer.echo(generate_key_spec(key_id))
