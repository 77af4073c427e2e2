"""`corral admin rotate-keys`, run as the real command against a real database."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import URL

from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.kit.crypto import DecryptionFailed, Keyring, generate_key_spec
from corral.models.audit import AuditEvent
from corral.models.nodes import Node, NodeSshKey
from corral.node_keys.service import context_for as node_key_context
from corral.nodes.credentials import context_for
from corral.nodes.schemas import NodeCredentials
from tests.factories.nodes import create_node, create_node_key
from tests.support.processes import clean_env, run_corral

PASSWORDS = ("first-node-password", "second-node-password")


def with_keys(settings: Settings, keys: str) -> Settings:
    security = settings.security.model_copy(update={"encryption_keys": SecretStr(keys)})
    return settings.model_copy(update={"security": security})


async def rotate(url: URL, settings: Settings, keys: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        CORRAL_DATABASE_URL=url.render_as_string(hide_password=False),
        CORRAL_SECURITY__ENCRYPTION_KEYS=keys,
        CORRAL_SECURITY__AUDIT_KEY=settings.security.audit_key.get_secret_value(),
        CORRAL_DATA_DIR=str(workdir / "data"),
    )
    return await asyncio.to_thread(run_corral, "admin", "rotate-keys", env=env, cwd=workdir)


async def stored_tokens(url: URL, settings: Settings) -> dict[int, str]:
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            nodes = (await session.scalars(select(Node).order_by(Node.id))).all()
            return {node.id: node.credentials_encrypted for node in nodes if node.credentials_encrypted}
    finally:
        await engine.dispose()


async def stored_node_keys(url: URL, settings: Settings) -> dict[int, str]:
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            keys = (await session.scalars(select(NodeSshKey))).all()
            return {key.id: key.private_key_encrypted for key in keys}
    finally:
        await engine.dispose()


async def test_rotation_moves_every_credential_to_the_new_key(
    fresh_database: Callable[[], URL], settings: Settings, tmp_path: Path
) -> None:
    url = fresh_database()
    key_a, key_b, key_c = generate_key_spec("ka"), generate_key_spec("kb"), generate_key_spec("kc")
    old = with_keys(settings, key_a)
    engine = create_engine(url, old)
    try:
        async with transaction(create_session_factory(engine, old)) as session:
            for password in PASSWORDS:
                await create_node(session, credentials=NodeCredentials(username="corral", password=password))
            await create_node(session)  # no credentials: nothing to rotate
            await create_node_key(session, name="lab")  # a panel SSH key is rotated too
    finally:
        await engine.dispose()
    before = await stored_tokens(url, settings)
    assert {token.split(":")[1] for token in before.values()} == {"ka"}

    # A key list without the old key cannot read the values: nothing changes, and it says why.
    unreadable = await rotate(url, settings, key_c, tmp_path)
    assert unreadable.returncode == 1, unreadable.stderr
    assert "encrypted with key 'ka', which is not configured" in unreadable.stderr
    assert "nothing was rotated" in unreadable.stderr
    assert await stored_tokens(url, settings) == before

    first = await rotate(url, settings, f"{key_b},{key_a}", tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "rotated 3 of 3 node credential(s) and SSH key(s) to key 'kb'"

    again = await rotate(url, settings, f"{key_b},{key_a}", tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "rotated 0 of 3 node credential(s) and SSH key(s) to key 'kb' (all were already current)"
    )

    after = await stored_tokens(url, settings)
    [(key_id, sealed_key)] = (await stored_node_keys(url, settings)).items()
    assert sealed_key.split(":")[1] == "kb"
    assert Keyring.parse(key_b).decrypt(sealed_key, context=node_key_context(key_id)).startswith("-----BEGIN")
    only_b = Keyring.parse(key_b)
    only_a = Keyring.parse(key_a)
    plaintexts = [only_b.decrypt(token, context=context_for(node_id)) for node_id, token in after.items()]
    assert [password in text for password, text in zip(PASSWORDS, plaintexts, strict=True)] == [True, True]
    for node_id, token in after.items():
        try:
            only_a.decrypt(token, context=context_for(node_id))
        except DecryptionFailed:
            continue
        raise AssertionError("the old key still opens a rotated value")
    for output in (unreadable, first, again):
        assert not any(password in output.stdout + output.stderr for password in PASSWORDS)

    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            events = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "node.credentials.rotate")
                )
            ).all()
    finally:
        await engine.dispose()
    assert [(event.actor_label, event.payload) for event in events] == [
        ("cli:admin rotate-keys", {"rotated": 3, "total": 3, "key_id": "kb"})
    ]


async def test_rotation_needs_a_valid_key_list(
    fresh_database: Callable[[], URL], settings: Settings, tmp_path: Path
) -> None:
    result = await rotate(fresh_database(), settings, "not-a-key", tmp_path)
    assert result.returncode == 2
    assert "CORRAL_SECURITY__ENCRYPTION_KEYS" in result.stderr
