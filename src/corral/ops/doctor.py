"""`corral doctor`: check configuration, database, migrations and job queue; say how to fix each.

Every check returns a `Finding` instead of raising, so one run reports everything that is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import psycopg
from pydantic import ValidationError
from sqlalchemy.engine import URL

from corral.config import ENV_PREFIX, Settings, secret_problems
from corral.db import migrate
from corral.db.url import libpq_conninfo, redacted, resolve_database_url

Severity = Literal["ok", "warning", "error"]
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str
    fix: str = ""


def env_name(location: tuple[int | str, ...]) -> str:
    """The environment variable behind a settings field, e.g. ("web", "port") → CORRAL_WEB__PORT."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in location)


def load_settings() -> tuple[Settings | None, list[Finding]]:
    try:
        settings = Settings()
    except ValidationError as error:
        findings = [
            Finding(
                "config",
                "error",
                f"{env_name(item['loc'])}: {item['msg']}",
                f"fix or unset {env_name(item['loc'])} (environment or .env)",
            )
            for item in error.errors()
        ]
        return None, findings
    return settings, [Finding("config", "ok", "settings load")]


def check_secrets(settings: Settings) -> list[Finding]:
    if settings.demo:
        return [Finding("secrets", "ok", "demo mode: missing secrets are generated in the data directory")]
    problems = secret_problems(settings)
    if not problems:
        return [Finding("secrets", "ok", "all secrets set")]
    return [Finding("secrets", "error", problem, "set it in the environment or .env") for problem in problems]


def check_public_url(settings: Settings) -> list[Finding]:
    if settings.demo or settings.web.public_url.startswith("https://"):
        return [Finding("public_url", "ok", settings.web.public_url)]
    return [
        Finding(
            "public_url",
            "warning",
            f"{settings.web.public_url} is not https: sessions and passkeys need TLS in production",
            f"set {ENV_PREFIX}WEB__PUBLIC_URL to the https address customers use",
        )
    ]


def check_data_dir(settings: Settings) -> list[Finding]:
    if not settings.uses_embedded_database:
        return []
    directory = settings.data_dir
    probe = directory if directory.exists() else directory.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return [Finding("data_dir", "ok", f"{directory} (embedded PostgreSQL lives here)")]
    return [
        Finding(
            "data_dir",
            "error",
            f"{directory} is not writable",
            f"set {ENV_PREFIX}DATA_DIR to a writable folder, "
            f"or {ENV_PREFIX}DATABASE_URL to an external database",
        )
    ]


def check_database(settings: Settings) -> tuple[URL | None, list[Finding]]:
    try:
        url = resolve_database_url(settings)
    except Exception as error:  # any failure to start or parse is a finding, not a crash
        return None, [
            Finding(
                "database",
                "error",
                f"cannot use the database: {error}",
                f"check {ENV_PREFIX}DATABASE_URL (postgresql://user:password@host:5432/name)",
            )
        ]
    try:
        with psycopg.connect(libpq_conninfo(url), connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as error:
        return None, [
            Finding(
                "database",
                "error",
                f"{redacted(url)} does not answer: {str(error).strip().splitlines()[0]}",
                "start PostgreSQL or fix the host, port, user and password in the URL",
            )
        ]
    server = version[0] if version else "?"
    return url, [Finding("database", "ok", f"{redacted(url)} answers (PostgreSQL {server})")]


def check_migrations(url: URL) -> list[Finding]:
    current, head = migrate.current_revision(url), migrate.head_revision()
    if current == head:
        return [Finding("migrations", "ok", f"at head ({head})")]
    return [
        Finding(
            "migrations",
            "error",
            f"database is at {current or 'an empty schema'}, code expects {head}",
            "run: corral migrate",
        )
    ]


def check_job_queue(url: URL, settings: Settings) -> list[Finding]:
    try:
        with psycopg.connect(libpq_conninfo(url), connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'),"
                " (SELECT count(*) FROM procrastinate_workers"
                "   WHERE last_heartbeat > now() - make_interval(secs => %s))",
                (settings.jobs.stalled_after_seconds,),
            ).fetchone()
    except psycopg.Error as error:
        return [
            Finding(
                "job_queue",
                "error",
                f"job queue tables unreadable: {str(error).strip().splitlines()[0]}",
                "run: corral migrate",
            )
        ]
    waiting, workers = (int(row[0]), int(row[1])) if row else (0, 0)
    findings = [Finding("job_queue", "ok", f"{waiting} job(s) waiting, {workers} worker(s) alive")]
    if workers == 0 and not settings.runs_in_process_worker:
        findings.append(
            Finding(
                "workers",
                "warning",
                "no job worker is alive (no recent heartbeat); servers will not be provisioned",
                "start one: corral worker",
            )
        )
    return findings


def run_checks() -> list[Finding]:
    settings, findings = load_settings()
    if settings is None:
        return findings
    findings += check_secrets(settings)
    findings += check_public_url(settings)
    findings += check_data_dir(settings)
    url, database_findings = check_database(settings)
    findings += database_findings
    if url is not None:
        findings += check_migrations(url)
        findings += check_job_queue(url, settings)
    return findings
