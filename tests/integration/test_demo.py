"""`corral demo` runs with no configuration on the embedded PostgreSQL and keeps its data."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from corral.db import embedded
from tests.support.processes import CORRAL, answers, clean_env, free_port, run_corral, wait_until

CREDENTIAL = re.compile(r"^\s+(\w+)\s+(\S+@\S+)\s+password: (\S+)$", re.MULTILINE)


def run_demo_until_healthy(data_dir: Path, cwd: Path) -> str:
    """Start `corral demo`, wait for /health, stop it gracefully; return what it printed."""
    port = free_port()
    process = subprocess.Popen(
        [*CORRAL, "demo", "--host", "127.0.0.1", "--port", str(port)],
        env=clean_env(CORRAL_DATA_DIR=str(data_dir), CORRAL_LOG__LEVEL="WARNING"),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: process.poll() is None and answers(f"http://127.0.0.1:{port}/health"),
            deadline_s=90,
            what="corral demo to answer /health",
        )
        assert answers(f"http://127.0.0.1:{port}/ready")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


@pytest.fixture
def demo_data_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "demo"
    yield data_dir
    embedded.stop(data_dir)


def users_in(data_dir: Path) -> set[str]:
    with psycopg.connect(embedded.ensure_running(data_dir)) as conn:
        return {row[0] for row in conn.execute("SELECT email FROM users").fetchall()}


def test_demo_prints_credentials_and_keeps_data_across_restarts(demo_data_dir: Path, tmp_path: Path) -> None:
    first = run_demo_until_healthy(demo_data_dir, tmp_path)
    accounts = {email: (role, password) for role, email, password in CREDENTIAL.findall(first)}
    roles = {role for role, _ in accounts.values()}
    assert roles == {"super_admin", "customer"}, first
    # The super-admin's first passkey needs a single-use link; the banner prints one.
    assert re.search(r"^  http://localhost:\d+/account/security/passkeys/enrol\?token=\S+$", first, re.M), (
        first
    )

    # Something written between runs must still be there after the next start.
    with psycopg.connect(embedded.ensure_running(demo_data_dir)) as conn:
        conn.execute(
            "INSERT INTO users (email, name, role, status)"
            " VALUES ('kept@example.com', 'Kept', 'customer', 'active')"
        )
    embedded.stop(demo_data_dir)

    second = run_demo_until_healthy(demo_data_dir, tmp_path)
    again = {email: (role, password) for role, email, password in CREDENTIAL.findall(second)}
    assert again == accounts, "the same demo accounts and passwords are printed after a restart"
    assert users_in(demo_data_dir) == {*accounts, "kept@example.com"}

    # The audit key generated on the first run is the one the second run used: the chain verifies.
    embedded.stop(demo_data_dir)
    verify = run_corral(
        "audit", "verify", env=clean_env(CORRAL_DATA_DIR=str(demo_data_dir), CORRAL_DEMO="true"), cwd=tmp_path
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
