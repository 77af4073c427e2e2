"""A node reached over SSH, end to end with real parts: a panel-made key, a real sshd on loopback,
libvirt's libssh transport and the real libvirtd behind it.

The connection test through the API reaches libvirtd over SSH and reports the host. A host key
other than the one pinned on the node is refused (no trust on first use), and so is a panel key the
node does not authorize. What this cannot show: a node on another machine (the network here is
loopback only), so `virt-ssh-helper` runs on this same machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.users import UserRole
from tests.factories.nodes import host_key
from tests.support.admin import People, Person, people_for
from tests.support.libvirt_env import LibvirtUnavailable, StoragePoolDir, dir_pool, ensure_libvirtd
from tests.support.sshd import SshServer, running_sshd

API = "/api/v1/admin/nodes"


@pytest.fixture(scope="module")
def libvirtd() -> str:
    try:
        return ensure_libvirtd()
    except LibvirtUnavailable as error:
        pytest.skip(f"no libvirt daemon here: {error}")


@pytest.fixture(scope="module")
def pool(libvirtd: str) -> Iterator[StoragePoolDir]:
    with dir_pool(libvirtd) as made:
        yield made


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
async def operator(people: People) -> Person:
    return await people.sign_in(UserRole.OPERATOR)


@pytest.fixture
async def panel_key(operator: Person) -> dict[str, Any]:
    made = await operator.post_json("/api/v1/admin/node-keys", {"name": "lab-nodes"})
    assert made.status_code == 201, made.text
    return dict(made.json())


@pytest.fixture
def sshd(panel_key: dict[str, Any], pool: StoragePoolDir) -> Iterator[SshServer]:
    with running_sshd(panel_key["public_key"]) as server:
        yield server


def fields(server: SshServer, key_id: int, pool: StoragePoolDir, **overrides: Any) -> dict[str, Any]:
    values = {
        "transport": "ssh",
        "host": server.host,
        "port": server.port,
        "ssh_user": server.user,
        "ssh_key_id": key_id,
        "ssh_host_key": server.host_key,
        "storage_pool": pool.name,
    }
    values.update(overrides)
    return values


async def test_the_panel_reaches_libvirtd_over_ssh_with_its_own_key(
    operator: Person, panel_key: dict[str, Any], sshd: SshServer, pool: StoragePoolDir
) -> None:
    tested = await operator.post_json(f"{API}/test-connection", fields(sshd, panel_key["id"], pool))

    body = tested.json()
    assert tested.status_code == 200
    assert body["ok"] is True, body["error"]
    assert body["host"]["hypervisor"] == "QEMU"
    assert body["host"]["cpus"] >= 1


async def test_a_host_key_other_than_the_pinned_one_is_refused(
    operator: Person, panel_key: dict[str, Any], sshd: SshServer, pool: StoragePoolDir
) -> None:
    impostor = await operator.post_json(
        f"{API}/test-connection", fields(sshd, panel_key["id"], pool, ssh_host_key=host_key())
    )

    body = impostor.json()
    assert (body["ok"], body["host"]) == (False, None)
    assert "host key verification failed" in body["error"].lower(), body["error"]
    assert body["status"] == "unhealthy"  # it answered, but is not the node we pinned


async def test_a_panel_key_the_node_does_not_authorize_is_refused(
    operator: Person, sshd: SshServer, pool: StoragePoolDir
) -> None:
    other = await operator.post_json("/api/v1/admin/node-keys", {"name": "not-on-the-node"})
    refused = await operator.post_json(f"{API}/test-connection", fields(sshd, other.json()["id"], pool))

    body = refused.json()
    assert (body["ok"], body["host"]) == (False, None)
    assert "failed to authenticate" in body["error"], body["error"]
