"""Issue 10, point 1: an operator must never reach the panel host's shell or files through a node's
connection.

The landed panel took a free-form libvirt URI and checked its query with ``parse_qsl`` (which
splits on ``&`` only); libvirt also splits on ``;``, so ``?keyfile=/k;command=id`` ran ``id`` through
the ssh transport, and ``test:///etc/passwd%00.xml`` read a file's first line into the error. Now
the connection is fields (transport, host, port, login, panel key) and the driver builds the URI.

Every way a connection can be set is fed the same hostile values: the JSON API (create, change,
test) and the pages (add, edit, test). Each must be refused with a 4xx before any driver exists
(a spy driver proves no connection was even attempted) and leave nothing saved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.drivers import DriverConnection, HypervisorDriver, registry
from corral.models.locations import Location
from corral.models.nodes import Node
from corral.models.users import UserRole
from tests.factories.fleet import create_location
from tests.factories.nodes import TEST_POOL, create_node, create_node_key, host_key
from tests.support.admin import People, people_for

API = "/api/v1/admin/nodes"
COMMAND = "command=/usr/bin/touch /tmp/corral-pwned"
HOST_KEY = host_key()

# (field, value): each is a way an address smuggles syntax to libvirt, ssh or a file open.
HOSTILE: list[tuple[str, Any]] = [
    ("host", f"hv.example.net;{COMMAND}"),
    ("host", f"hv.example.net&{COMMAND}"),
    ("host", f"hv.example.net/system?{COMMAND}"),
    ("host", "hv.example.net\x00.xml"),
    ("host", "hv.example.net%00.xml"),
    ("host", "-oProxyCommand=id"),
    ("host", "root@hv.example.net"),
    ("host", "hv.example.net:2222"),
    ("host", "fe80::1%eth0"),
    ("host", "[::1]"),
    ("host", "hv example net"),
    ("host", "hv.example.net\n"),
    ("ssh_user", f"root;{COMMAND}"),
    ("ssh_user", "root&no_verify=1"),
    ("ssh_user", "ro\x00ot"),
    ("ssh_user", "root%00"),
    ("ssh_user", "-oProxyCommand=id"),
    ("ssh_user", "root@evil"),
    ("port", f"22;{COMMAND}"),
    ("port", "22&no_verify=1"),
    ("port", 0),
    ("port", 65536),
    ("transport", f"ssh;{COMMAND}"),
    ("transport", "qemu+ext"),
    ("transport", "test:///etc/passwd"),
    ("transport", "ssh\x00"),
    ("ssh_key_id", f"1;{COMMAND}"),
    ("ssh_host_key", f"{HOST_KEY};{COMMAND}"),
    ("ssh_host_key", f"{HOST_KEY}&known_hosts=/etc/shadow"),
    ("ssh_host_key", f"ssh-ed25519 {HOST_KEY.split()[1][:20]}"),
    ("ssh_host_key", "ssh-ed25519 AAAA\x00"),
    ("ssh_host_key", "/etc/ssh/ssh_host_ed25519_key.pub"),
    # Parameters of the old free-form URI, or anything else the fields do not name.
    ("connection_uri", f"qemu+ssh://root@hv.example.net/system?keyfile=/k;{COMMAND}"),
    ("connection_uri", "test:///etc/passwd%00.xml"),
    ("command", "id"),
    ("keyfile", "/etc/shadow"),
    ("known_hosts", "/etc/shadow"),
    ("no_verify", "1"),
    ("netcat", "/bin/sh"),
    ("params", {"command": "id"}),
]
# A form field holds text: nested values exist only in JSON.
HOSTILE_TEXT = [(name, value) for name, value in HOSTILE if not isinstance(value, dict)]
CONNECTION_FIELDS = {"host", "ssh_user", "port", "transport", "ssh_key_id", "ssh_host_key"}


class SpyDriver:
    """Stands in for every driver: records that one was built (it must not be)."""

    built: list[DriverConnection] = []

    def __new__(cls, connection: DriverConnection) -> HypervisorDriver:  # type: ignore[misc]
        cls.built.append(connection)
        raise AssertionError(f"a driver was built for a refused connection: {connection!r}")


@pytest.fixture(autouse=True)
def spy_driver(monkeypatch: pytest.MonkeyPatch) -> list[DriverConnection]:
    SpyDriver.built = []
    monkeypatch.setitem(registry._registered, "libvirt", SpyDriver)
    return SpyDriver.built


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
async def location(db: AsyncSession) -> Location:
    return await create_location(db, slug="syd9", name="Sydney 9")


@pytest.fixture
async def ssh_fields(db: AsyncSession) -> dict[str, Any]:
    key = await create_node_key(db)
    return {
        "transport": "ssh",
        "host": "hv.example.net",
        "port": 22,
        "ssh_user": "corral",
        "ssh_key_id": key.id,
        "ssh_host_key": HOST_KEY,
    }


def hostile(fields: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**fields, name: value}


def as_form(values: dict[str, Any]) -> dict[str, str]:
    return {name: value if isinstance(value, str) else str(value) for name, value in values.items()}


async def node_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Node)) or 0)


@pytest.mark.parametrize(("name", "value"), HOSTILE)
async def test_the_api_refuses_hostile_connections_everywhere(
    people: People,
    db: AsyncSession,
    location: Location,
    ssh_fields: dict[str, Any],
    spy_driver: list[DriverConnection],
    name: str,
    value: Any,
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create_node(db, location=location, name="existing")
    before = await node_count(db)
    base = {"name": "new-node", "location_id": location.id, "storage_pool": TEST_POOL, **ssh_fields}

    created = await operator.post_json(API, hostile(base, name, value))
    tested = await operator.post_json(f"{API}/test-connection", hostile(ssh_fields, name, value))
    changed = await operator.send_json("PATCH", f"{API}/{node.id}", hostile(ssh_fields, name, value))
    changed_alone = await operator.send_json("PATCH", f"{API}/{node.id}", {name: value})

    for response in (created, tested, changed, changed_alone):
        assert response.status_code == 422, (response.request.url, response.text)
        assert "Traceback" not in response.text
    assert spy_driver == []
    assert await node_count(db) == before
    await db.refresh(node)
    assert (node.transport, node.host, node.ssh_user) == ("test", None, None)


@pytest.mark.parametrize(("name", "value"), HOSTILE_TEXT)
async def test_the_pages_refuse_hostile_connections_everywhere(
    people: People,
    db: AsyncSession,
    location: Location,
    ssh_fields: dict[str, Any],
    spy_driver: list[DriverConnection],
    name: str,
    value: Any,
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    node = await create_node(db, location=location, name="existing")
    before = await node_count(db)
    base = {
        "name": "new-node",
        "location_id": location.id,
        "driver": "libvirt",
        "storage_pool": TEST_POOL,
        "network": "default",
        "domain_type": "qemu",
        **ssh_fields,
    }
    form = as_form(hostile(base, name, value))

    created = await operator.post_form("/admin/nodes", form)
    edited = await operator.post_form(f"/admin/nodes/{node.id}", form)
    tested = await operator.post_htmx("/admin/nodes/test-connection", form)

    for response in (created, edited, tested):
        assert response.status_code < 500
        assert "Traceback" not in response.text
    if name in CONNECTION_FIELDS:
        assert (created.status_code, edited.status_code) == (422, 422)
        assert 'data-ok="true"' not in tested.text
        assert spy_driver == []
    else:
        # The form has no such field and never reads it: the driver gets the valid fields alone
        # (the spy refuses to connect, so nothing is saved either way).
        assert spy_driver, "the valid rest of the form is tested"
        for connection in spy_driver:
            assert connection.endpoint.host == "hv.example.net"
            assert name not in repr(connection)
            assert len(str(value)) < 4 or str(value) not in repr(connection)
    assert await node_count(db) == before
    await db.refresh(node)
    assert (node.transport, node.host) == ("test", None)


async def test_a_valid_ssh_connection_reaches_the_driver_as_fields_only(
    people: People,
    db: AsyncSession,
    location: Location,
    ssh_fields: dict[str, Any],
    spy_driver: list[DriverConnection],
) -> None:
    """The control: the same fields, valid, do reach the driver, as a validated Endpoint with the
    key's private half, and nothing else."""
    operator = await people.sign_in(UserRole.OPERATOR)

    await operator.post_json(f"{API}/test-connection", ssh_fields)

    [connection] = spy_driver
    endpoint = connection.endpoint
    assert (endpoint.transport, endpoint.host, endpoint.port, endpoint.user) == (
        "ssh",
        "hv.example.net",
        22,
        "corral",
    )
    assert endpoint.host_key == HOST_KEY
    assert endpoint.private_key is not None
    assert endpoint.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "BEGIN OPENSSH" not in repr(connection)


async def test_an_ssh_connection_needs_a_key_the_panel_has(
    people: People,
    db: AsyncSession,
    location: Location,
    ssh_fields: dict[str, Any],
    spy_driver: list[DriverConnection],
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)

    no_key = await operator.post_json(f"{API}/test-connection", {**ssh_fields, "ssh_key_id": None})
    unknown_key = await operator.post_json(
        API, {"name": "n1", "location_id": location.id, **ssh_fields, "ssh_key_id": 999_999}
    )

    assert no_key.status_code == 422
    assert no_key.json()["errors"][0]["message"].endswith(
        "the ssh transport needs a login name, one of the panel's SSH keys and the node's host key"
    )
    assert unknown_key.status_code == 422
    assert "No node SSH key with that id." in unknown_key.text
    assert spy_driver == []
