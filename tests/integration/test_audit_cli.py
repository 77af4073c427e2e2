"""`corral audit verify` / `checkpoint`, run as real processes against a real database."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from corral.config import Settings
from tests.factories.audit import ACTIONS, audit_database

RUN_AUDIT_APP = "from corral.cli.audit import audit_app; audit_app()"


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


async def run_audit(command: str, *, url: URL | str, key: str, workdir: Path) -> Outcome:
    """Run `corral audit <command>` in a fresh interpreter with only our CORRAL_* settings."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("CORRAL_")}
    database_url = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    environment.update(
        {
            "CORRAL_DATABASE_URL": database_url,
            "CORRAL_SECURITY__AUDIT_KEY": key,
            "CORRAL_DATA_DIR": str(workdir / "data"),
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_AUDIT_APP,
        command,
        cwd=workdir,  # no stray .env file is read from here
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Outcome(process.returncode, stdout.decode(), stderr.decode())


async def test_verify_and_checkpoint_on_a_real_chain(
    fresh_database: Callable[[], URL], settings: Settings, tmp_path: Path
) -> None:
    url = fresh_database()
    key = settings.security.audit_key.get_secret_value()
    async with audit_database(url, settings) as chain:
        empty = await run_audit("checkpoint", url=url, key=key, workdir=tmp_path)
        assert empty.code == 0, empty.stderr
        assert "empty" in empty.stdout

        await chain.record(4)
        intact = await run_audit("verify", url=url, key=key, workdir=tmp_path)
        assert intact.code == 0, intact.stderr
        assert intact.stdout.strip().splitlines() == [
            "audit chain intact: 4 row(s) verified, head seq 4, 0 checkpoint(s) verified"
        ]

        recorded = await run_audit("checkpoint", url=url, key=key, workdir=tmp_path)
        assert recorded.code == 0, recorded.stderr
        assert recorded.stdout.startswith("checkpoint #1: head seq 4, hash ")
        still_intact = await run_audit("verify", url=url, key=key, workdir=tmp_path)
        assert still_intact.code == 0, still_intact.stderr
        assert "1 checkpoint(s) verified" in still_intact.stdout

        await chain.tamper("UPDATE audit_events SET payload = '{}'::jsonb WHERE seq = 2")
        broken = await run_audit("verify", url=url, key=key, workdir=tmp_path)
        assert broken.code == 1, broken.stderr
        line = broken.stdout.strip()
        assert line.startswith(f"audit chain BROKEN at seq 2 ({ACTIONS[1]} at ")
        bad_event = (await chain.verify()).bad_event
        assert bad_event is not None
        assert bad_event.occurred_at.isoformat() in line  # names when it happened
        assert "edited" in line


async def test_a_truncated_tail_fails_verification(
    fresh_database: Callable[[], URL], settings: Settings, tmp_path: Path
) -> None:
    url = fresh_database()
    key = settings.security.audit_key.get_secret_value()
    async with audit_database(url, settings) as chain:
        await chain.record(3)
        assert (await run_audit("checkpoint", url=url, key=key, workdir=tmp_path)).code == 0
        await chain.tamper("DELETE FROM audit_events WHERE seq = 3")
    outcome = await run_audit("verify", url=url, key=key, workdir=tmp_path)
    assert outcome.code == 1
    assert "BROKEN at seq 3" in outcome.stdout
    assert "truncated" in outcome.stdout


async def test_a_placeholder_key_is_refused(fresh_database: Callable[[], URL], tmp_path: Path) -> None:
    url = fresh_database()
    for command in ("verify", "checkpoint"):
        outcome = await run_audit(command, url=url, key="changeme", workdir=tmp_path)
        assert outcome.code == 2
        assert "CORRAL_SECURITY__AUDIT_KEY is a placeholder" in outcome.stderr


async def test_a_different_key_reports_every_row_as_foreign(
    fresh_database: Callable[[], URL], settings: Settings, tmp_path: Path
) -> None:
    url = fresh_database()
    async with audit_database(url, settings) as chain:
        await chain.record(2)
    outcome = await run_audit("verify", url=url, key="x" * 48, workdir=tmp_path)
    assert outcome.code == 1
    assert "BROKEN at seq 1" in outcome.stdout
    assert "unknown key id" in outcome.stdout


async def test_an_unreachable_database_is_not_reported_as_tampering(
    database_server: URL, tmp_path: Path, settings: Settings
) -> None:
    missing = database_server.set(database="corral_no_such_database")
    key = settings.security.audit_key.get_secret_value()
    outcome = await run_audit("verify", url=missing, key=key, workdir=tmp_path)
    assert outcome.code == 3
    assert "cannot read the audit log" in outcome.stderr
