"""The `corral` command: serve, worker, migrate, demo, doctor, audit."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import warnings
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from sqlalchemy.engine import URL
from starlette.types import ASGIApp

from corral import __version__
from corral.cli.admin import admin_app
from corral.cli.audit import audit_app
from corral.config import ConfigError, Settings, get_settings, require_secrets
from corral.db import migrate
from corral.db.session import create_engine, create_session_factory, transaction
from corral.db.url import redacted, resolve_database_url
from corral.demo.fleet import seed_demo_fleet
from corral.demo.outbox import OUTBOX_PATH, DemoOutbox, catch_demo_mail
from corral.demo.secrets import with_demo_secrets
from corral.demo.service import DemoCredential, demo
from corral.kit.logging import configure_logging

# platformdirs warns on every start of the embedded PostgreSQL when XDG_RUNTIME_DIR is unset (as
# under cron, sudo or containers); it falls back to /tmp, which is what we want anyway.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

app = typer.Typer(
    help="Corral: a self-hosted control panel for VPS hosting providers.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(audit_app, name="audit")
app.add_typer(admin_app, name="admin")

Host = Annotated[str | None, typer.Option(help="Address to listen on (default: CORRAL_WEB__HOST).")]
Port = Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: CORRAL_WEB__PORT).")]


def fail(lines: list[str], code: int = 2) -> None:
    for line in lines:
        typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        fail([str(error), "run `corral doctor` for details"])
        raise  # unreachable: fail() exits


def with_address(settings: Settings, host: str | None, port: int | None) -> Settings:
    web = settings.web.model_copy(
        update={key: value for key, value in {"host": host, "port": port}.items() if value is not None}
    )
    return settings.model_copy(update={"web": web})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_current_schema(url: URL, settings: Settings) -> None:
    """Refuse to run against an out-of-date schema; an embedded database is migrated for you."""
    if migrate.current_revision(url) == migrate.head_revision():
        return
    if settings.uses_embedded_database:
        migrate.upgrade(url)
        return
    fail([f"the database at {redacted(url)} is not migrated to this version", "run: corral migrate"])


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run_server(settings: Settings, *, demo_outbox: DemoOutbox | None = None) -> None:
    from corral.app import create_app  # deferred: importing the app pulls in the whole web stack

    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal with the handler it
    # found. With the default handler the process would die without running atexit hooks, which is
    # where the embedded PostgreSQL is stopped; this handler turns it into a normal exit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    uvicorn.Server(server_config(create_app(settings, demo_outbox=demo_outbox), settings)).run()


def server_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """How uvicorn serves the panel (tests serve it the same way)."""
    return uvicorn.Config(
        app,
        host=settings.web.host,
        port=settings.web.port,
        log_config=None,
        server_header=False,
        # The panel reads X-Forwarded-For itself, from configured proxies only (web/client_ip.py);
        # uvicorn's own handling would believe any local client and put any text in the client IP.
        proxy_headers=False,
        lifespan="on",
    )


@app.command()
def serve(host: Host = None, port: Port = None) -> None:
    """Serve the panel (web, plus an in-process job worker when on the embedded database)."""
    settings = with_address(load_settings(), host, port)
    configure_logging(settings)
    if settings.demo:
        settings = with_demo_secrets(settings)
    try:
        require_secrets(settings)
    except ConfigError as error:
        fail(error.problems)
    url = resolve_database_url(settings)
    require_current_schema(url, settings)
    settings, outbox = catch_demo_mail(settings)
    run_server(settings, demo_outbox=outbox)


@app.command()
def worker() -> None:
    """Run a job worker until SIGTERM or Ctrl-C (run as many as you like, on any machine).

    It rides out database restarts; it exits with status 1 when the database stays away for
    CORRAL_JOBS__GIVE_UP_AFTER_SECONDS, so that its service manager starts it again."""
    from corral.jobs.runtime import JobRuntime, WorkerGaveUp

    settings = load_settings()
    configure_logging(settings)
    try:
        require_secrets(settings)
    except ConfigError as error:
        fail(error.problems)
    url = resolve_database_url(settings)
    require_current_schema(url, settings)

    async def run() -> None:
        runtime = JobRuntime(url, settings)
        await runtime.open()
        try:
            await runtime.run_worker()
        finally:
            await runtime.close()

    try:
        asyncio.run(run())
    except WorkerGaveUp as error:
        fail([f"the job worker gave up: {error}"], code=1)


@app.command(name="migrate")
def migrate_command(
    revision: Annotated[str, typer.Option("--to", help="Target revision (default: head).")] = "head",
) -> None:
    """Bring the database schema up to date."""
    settings = load_settings()
    url = resolve_database_url(settings)
    before = migrate.current_revision(url)
    migrate.upgrade(url, revision)
    after = migrate.current_revision(url)
    typer.echo(f"database {redacted(url)}: {before or 'empty'} -> {after}")


def print_demo_banner(settings: Settings, credentials: list[DemoCredential], *, catching_mail: bool) -> None:
    smtp = settings.smtp
    mail = (
        f"{settings.web.public_url}{OUTBOX_PATH} (nothing is delivered; read every email there)"
        if catching_mail
        else f"sent through {smtp.host}:{smtp.port} (CORRAL_SMTP__*)"
    )
    lines = [
        "",
        f"  Corral {__version__} demo: {settings.web.public_url}",
        f"  data: {settings.data_dir}",
        f"  mail: {mail}",
        "",
        *[f"  {cred.role:<12} {cred.email:<28} password: {cred.password}" for cred in credentials],
        "",
    ]
    for cred in credentials:
        if cred.enrolment_link:
            # Staff tools need a passkey sign-in, and a password alone never adds a staff passkey.
            lines += [
                f"  To use staff tools, sign in as {cred.email} with its password, then open this",
                "  single-use link (valid for one hour) in the same browser to add its passkey:",
                f"  {cred.enrolment_link}",
                "",
            ]
    typer.secho("\n".join(lines), fg=typer.colors.GREEN)


@app.command(name="demo")
def demo_command(host: Host = None, port: Port = None) -> None:
    """Serve the panel with demo data on the embedded defaults. Needs no configuration."""
    settings = with_address(load_settings(), host, port)
    loopback = is_loopback(settings.web.host)
    # On this machine the panel calls itself "localhost": passkeys need a domain name for their
    # relying party (an IP address is refused by browsers), and localhost is a secure context.
    name = "localhost" if loopback else settings.web.host
    public_url = f"http://{name}:{settings.web.port}"
    # A browser may call the same loopback address by either name; both are this panel.
    trusted = (
        [f"http://{name}:{settings.web.port}" for name in ("localhost", "127.0.0.1")] if loopback else []
    )
    web = settings.web.model_copy(
        update={"public_url": public_url, "secure_cookies": not loopback, "trusted_origins": trusted}
    )
    log = settings.log
    if "CORRAL_LOG__FORMAT" not in os.environ:
        log = log.model_copy(update={"format": "console"})  # a person is reading this terminal
    settings = with_demo_secrets(settings.model_copy(update={"demo": True, "web": web, "log": log}))
    configure_logging(settings)
    if not loopback:
        typer.secho(
            "warning: serving the demo beyond this machine over plain http; cookies stay Secure, "
            "so sign-in needs TLS in front",
            fg=typer.colors.YELLOW,
            err=True,
        )
    url = resolve_database_url(settings)
    migrate.upgrade(url)
    credentials = asyncio.run(seed_demo(url, settings))
    # Email needs somewhere to go: unless CORRAL_SMTP__HOST/PORT name a server, the demo catches
    # it in-process, so the verification link of a new account can be read at the outbox.
    settings, outbox = catch_demo_mail(settings)
    print_demo_banner(settings, credentials, catching_mail=outbox is not None)
    run_server(settings, demo_outbox=outbox)


async def seed_demo(url: URL, settings: Settings) -> list[DemoCredential]:
    engine = create_engine(url, settings)
    try:
        async with transaction(create_session_factory(engine, settings)) as session:
            await seed_demo_fleet(session)
            return await demo.seed(session, settings.data_dir)
    finally:
        await engine.dispose()


@app.command()
def doctor() -> None:
    """Check configuration, database, migrations and job queue; explain how to fix problems."""
    from corral.ops.doctor import run_checks

    findings = run_checks()
    marks = {"ok": ("ok  ", typer.colors.GREEN), "warning": ("warn", typer.colors.YELLOW)}
    for finding in findings:
        mark, colour = marks.get(finding.severity, ("FAIL", typer.colors.RED))
        typer.secho(f"[{mark}] {finding.check}: {finding.message}", fg=colour)
        if finding.fix and finding.severity != "ok":
            typer.echo(f"       fix: {finding.fix}")
    errors = sum(1 for finding in findings if finding.severity == "error")
    if errors:
        typer.secho(f"{errors} problem(s) found", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo("all checks passed")


@app.command()
def version() -> None:
    """Print Corral's version."""
    typer.echo(__version__)


def main() -> None:
    app()
