"""The panel's SSH keys for nodes: made by the panel (Ed25519), the public half shown for
``authorized_keys``, the private half sealed to its row and never shown, returned or audited; a key
in use cannot be deleted; support reads, operators manage, customers and billing see nothing."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.kit.crypto import Keyring
from corral.models.nodes import NodeSshKey
from corral.models.users import UserRole
from corral.node_keys.service import context_for
from tests.factories.nodes import create_node, create_node_key
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for

API = "/api/v1/admin/node-keys"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def test_a_made_key_shows_only_its_public_half(
    people: People, db: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    made = await operator.post_json(API, {"name": "syd1-nodes"})

    assert made.status_code == 201, made.text
    key = made.json()
    assert key["public_key"].startswith("ssh-ed25519 ")
    assert key["public_key"].endswith(" corral-syd1-nodes")
    assert set(key) == {"id", "name", "public_key", "fingerprint", "created_at", "nodes"}
    # The fingerprint is the one ssh-keygen prints for the public key.
    public = tmp_path / "key.pub"
    public.write_text(key["public_key"] + "\n")
    command = ["ssh-keygen", "-lf", str(public)]
    printed = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True)
    assert printed.stdout.split()[1] == key["fingerprint"]

    stored = await db.get(NodeSshKey, key["id"])
    assert stored is not None
    keyring = Keyring.parse(settings.security.encryption_keys.get_secret_value())
    private = keyring.decrypt(stored.private_key_encrypted, context=context_for(key["id"]))
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    with pytest.raises(ValueError, match="wrong key or context"):
        keyring.decrypt(stored.private_key_encrypted, context=context_for(key["id"] + 1))
    raw = (await db.execute(text("SELECT node_ssh_keys::text FROM node_ssh_keys"))).scalar_one()
    assert "PRIVATE KEY" not in raw

    body = private.splitlines()[1]  # a line of the private key's base64
    for response in (await operator.client.get(API), await operator.client.get("/admin/node-keys")):
        assert response.status_code == 200
        assert body not in response.text
        assert "PRIVATE KEY" not in response.text
    [event] = await audit_events(db, "node_key.")
    assert (event.action, event.payload) == (
        "node_key.create",
        {"name": "syd1-nodes", "fingerprint": key["fingerprint"]},
    )


async def test_names_are_checked_and_unique(people: People) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await operator.post_json(API, {"name": "lab"})

    taken = await operator.post_json(API, {"name": "lab"})
    bad = await operator.post_json(API, {"name": "lab;rm -rf"})
    extra = await operator.post_json(API, {"name": "x", "private_key": "-----BEGIN"})

    assert (taken.status_code, error_code(taken.json())) == (409, "node_key_name_taken")
    assert (bad.status_code, error_code(bad.json())) == (422, "validation_failed")
    assert (extra.status_code, error_code(extra.json())) == (422, "validation_failed")


async def test_a_key_a_node_uses_cannot_be_deleted(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    used = await create_node_key(db, name="used")
    spare = await create_node_key(db, name="spare")
    await create_node(db, transport="ssh", host="hv1.example.net", ssh_user="corral", ssh_key_id=used.id)

    listed = {key["name"]: key["nodes"] for key in (await operator.client.get(API)).json()}
    refused = await operator.client.delete(f"{API}/{used.id}", headers=operator.headers())
    deleted = await operator.client.delete(f"{API}/{spare.id}", headers=operator.headers())
    missing = await operator.client.delete(f"{API}/{spare.id}", headers=operator.headers())

    assert listed == {"spare": 0, "used": 1}
    assert (refused.status_code, error_code(refused.json())) == (409, "node_key_in_use")
    assert deleted.status_code == 204
    assert (missing.status_code, error_code(missing.json())) == (404, "node_key_not_found")
    assert [event.action for event in await audit_events(db, "node_key.")] == ["node_key.delete"]


async def test_support_reads_operators_manage_others_are_refused(people: People, db: AsyncSession) -> None:
    key = await create_node_key(db, name="k1")
    customer = await people.sign_in(UserRole.CUSTOMER)
    billing = await people.sign_in(UserRole.BILLING)
    support = await people.sign_in(UserRole.SUPPORT)

    for path in (API, "/admin/node-keys"):
        assert (await customer.client.get(path)).status_code == 403
        assert (await billing.client.get(path)).status_code == 403
        assert (await support.client.get(path)).status_code == 200
    assert "Make a key" not in (await support.client.get("/admin/node-keys")).text
    for person in (customer, billing, support):
        assert (await person.post_json(API, {"name": "mine"})).status_code == 403
        assert (await person.client.delete(f"{API}/{key.id}", headers=person.headers())).status_code == 403
        assert (await person.post_form(f"/admin/node-keys/{key.id}/delete")).status_code == 403
    assert await audit_events(db, "node_key.") == []
