"""The `corral` command as an operator runs it: doctor, serve's refusal to start, migrate."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import URL

from corral.db import migrate
from corral.db.url import libpq_conninfo
from corral.kit.crypto import Keyring, generate_key_spec
from tests.support.processes import clean_env, run_corral

STRONG_SECRETS = {
    "CORRAL_SECURITY__SECRET_KEY": secrets.token_urlsafe(48),
    "CORRAL_SECURITY__AUDIT_KEY": secrets.token_urlsafe(48),
    "CORRAL_SECURITY__ENCRYPTION_KEYS": generate_key_spec(),
}


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run_corral("--help", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "worker", "migrate", "demo", "doctor", "audit", "admin"):
        assert command in result.stdout
    serve_help = run_corral("serve", "--help", env=clean_env(), cwd=tmp_path)
    assert "--host" in serve_help.stdout
    assert "--port" in serve_help.stdout


def test_doctor_names_an_invalid_setting(tmp_path: Path) -> None:
    result = run_corral("doctor", env=clean_env(CORRAL_WEB__PORT="eighty"), cwd=tmp_path)
    assert result.returncode == 1
    assert "CORRAL_WEB__PORT" in result.stdout
    assert "fix:" in result.stdout


def test_doctor_reports_missing_secrets_and_unreachable_database(tmp_path: Path) -> None:
    env = clean_env(CORRAL_DATABASE_URL="postgresql://corral:pw-must-not-show@127.0.0.1:1/corral")
    result = run_corral("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "CORRAL_SECURITY__SECRET_KEY is not set" in result.stdout
    assert "CORRAL_SECURITY__AUDIT_KEY is not set" in result.stdout
    assert "does not answer" in result.stdout
    assert "pw-must-not-show" not in result.stdout + result.stderr


def test_doctor_says_to_migrate_an_empty_database(tmp_path: Path, empty_database: Callable[[], URL]) -> None:
    env = clean_env(CORRAL_DATABASE_URL=libpq_conninfo(empty_database()), **STRONG_SECRETS)
    result = run_corral("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "run: corral migrate" in result.stdout


def test_doctor_passes_on_a_good_setup(tmp_path: Path, fresh_database: Callable[[], URL]) -> None:
    env = clean_env(
        CORRAL_DATABASE_URL=libpq_conninfo(fresh_database()),
        CORRAL_WEB__PUBLIC_URL="https://panel.example.com",
        **STRONG_SECRETS,
    )
    result = run_corral("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "[ok  ] migrations" in result.stdout


def test_serve_refuses_to_start_with_a_placeholder_secret(tmp_path: Path) -> None:
    env = clean_env(
        CORRAL_DATABASE_URL="postgresql://corral@127.0.0.1:1/corral",
        CORRAL_SECURITY__SECRET_KEY=STRONG_SECRETS["CORRAL_SECURITY__SECRET_KEY"],
        CORRAL_SECURITY__AUDIT_KEY="changeme",
        CORRAL_SECURITY__ENCRYPTION_KEYS=STRONG_SECRETS["CORRAL_SECURITY__ENCRYPTION_KEYS"],
    )
    result = run_corral("serve", "--port", "1", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "CORRAL_SECURITY__AUDIT_KEY is a placeholder" in result.stderr


def test_serve_refuses_an_unmigrated_external_database(
    tmp_path: Path, empty_database: Callable[[], URL]
) -> None:
    env = clean_env(CORRAL_DATABASE_URL=libpq_conninfo(empty_database()), **STRONG_SECRETS)
    result = run_corral("serve", "--port", "1", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "run: corral migrate" in result.stderr


def test_migrate_brings_an_empty_database_to_head(tmp_path: Path, empty_database: Callable[[], URL]) -> None:
    env = clean_env(CORRAL_DATABASE_URL=libpq_conninfo(empty_database()))
    first = run_corral("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"empty -> {migrate.head_revision()}" in first.stdout
    again = run_corral("migrate", env=env, cwd=tmp_path)
    head = migrate.head_revision()
    assert f"{head} -> {head}" in again.stdout


def test_generate_key_prints_a_usable_keyring_entry(tmp_path: Path) -> None:
    result = run_corral("admin", "generate-key", "--id", "k2", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0
    ring = Keyring.parse(result.stdout.strip())
    assert ring.current_id == "k2"
    assert ring.decrypt(ring.encrypt("x", context="c"), context="c") == "x"
