"""A server is never built or reinstalled with no way to sign in (issue 10, point 10): setup and
reinstall need at least one SSH key (saved or pasted) or a root password, through the pages and the
API alike (one rule: ``ServerSetupCreate`` and ``ServerService``), and the reinstall form offers
the account's saved keys as the setup wizard does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.actors import Actor
from corral.models.servers import Server
from corral.servers.errors import NoWayToSignIn
from corral.servers.service import ServerSetup, servers
from tests.integration.test_servers_pages import KEY, Offer, make_offer, make_server, server_jobs
from tests.support.admin import People, Person, people_for

API = "/api/v1/servers"
SAVED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrPtugCRY0SEJOGwXo8f0zZJXBJx1A7c/rEkTG1VRPR saved@laptop"
FORM_MESSAGE = "Choose or paste at least one SSH key, or set a root password"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def saved_key(customer: Person, name: str = "Work laptop") -> int:
    added = await customer.post_json("/api/v1/account/ssh-keys", {"name": name, "public_key": SAVED_KEY})
    assert added.status_code == 201, added.text
    return int(added.json()["id"])


async def job_keys(db: AsyncSession, server_id: int) -> list[str]:
    args = (
        await db.execute(
            text("SELECT args FROM procrastinate_jobs WHERE lock = :lock ORDER BY id DESC LIMIT 1"),
            {"lock": f"server:{server_id}"},
        )
    ).scalar_one()
    return list(args["ssh_keys"])


async def _waiting(db: AsyncSession, offer: Offer, customer: Person) -> Server:
    return await make_server(db, offer, customer.user, status="awaiting_setup")


async def test_the_api_refuses_a_setup_and_a_reinstall_with_no_way_in(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    waiting = await _waiting(db, offer, customer)
    bare = {"template_id": offer.template.id, "hostname": "api-1.example.com"}

    for body in (bare, {**bare, "ssh_keys": [], "ssh_key_ids": []}, {**bare, "ssh_keys": ["   "]}):
        refused = await customer.post_json(f"{API}/{waiting.id}/setup", body)
        assert refused.status_code == 422, refused.text
        error = refused.json()
        assert error["code"] == "validation_failed"
        [problem] = error["errors"]
        assert problem["type"] == "no_login_method"
        for field in ("ssh_key_ids", "ssh_keys", "root_password"):
            assert field in problem["message"]
    await db.refresh(waiting)
    assert waiting.status == "awaiting_setup"
    assert await server_jobs(db, waiting.id) == []

    key_id = await saved_key(customer)
    built = await customer.post_json(f"{API}/{waiting.id}/setup", {**bare, "ssh_key_ids": [key_id]})
    assert built.status_code == 202, built.text
    assert await job_keys(db, waiting.id) == [SAVED_KEY]

    active = await make_server(db, offer, customer.user)
    reinstall = {
        "template_id": offer.template.id,
        "hostname": "web-1.example.com",
        "confirm": "web-1.example.com",
    }
    refused = await customer.post_json(f"{API}/{active.id}/reinstall", reinstall)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["type"] == "no_login_method"
    assert await server_jobs(db, active.id) == []
    with_password = await customer.post_json(
        f"{API}/{active.id}/reinstall", {**reinstall, "root_password": "a long enough root password"}
    )
    assert with_password.status_code == 202, with_password.text


async def test_the_wizard_refuses_a_setup_with_no_way_in(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    waiting = await _waiting(db, offer, customer)
    key_id = await saved_key(customer)
    form = {"template_id": str(offer.template.id), "hostname": "web-9.example.com"}

    refused = await customer.post_form(f"/servers/{waiting.id}/setup", form)
    assert refused.status_code == 422
    assert 'data-field-error="ssh_keys"' in refused.text
    assert FORM_MESSAGE in refused.text
    assert 'value="web-9.example.com"' in refused.text  # what was typed comes back
    await db.refresh(waiting)
    assert waiting.status == "awaiting_setup"
    assert await server_jobs(db, waiting.id) == []

    built = await customer.post_form(f"/servers/{waiting.id}/setup", {**form, "ssh_key_ids": str(key_id)})
    assert built.status_code == 303, built.text[:500]
    assert await job_keys(db, waiting.id) == [SAVED_KEY]


async def test_the_reinstall_form_offers_saved_keys_and_needs_a_way_in(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)
    key_id = await saved_key(customer, "Work laptop")

    page = (await customer.client.get(f"/servers/{server.id}")).text
    offered = re.search(r'data-testid="reinstall-saved-keys".*?</div>', page, re.S)
    assert offered is not None
    assert f'name="ssh_key_ids" value="{key_id}"' in offered.group(0)
    assert "Work laptop" in offered.group(0)

    form = {"template_id": str(offer.template.id), "confirm": "web-1.example.com"}
    refused = await customer.post_htmx(f"/servers/{server.id}/reinstall", form)
    assert refused.status_code == 422
    assert 'data-field-error="ssh_keys"' in refused.text
    assert FORM_MESSAGE in refused.text
    assert 'data-testid="reinstall-saved-keys"' in refused.text  # the keys are offered again
    await db.refresh(server)
    assert server.status == "active"
    assert await server_jobs(db, server.id) == []

    chosen = await customer.post_htmx(
        f"/servers/{server.id}/reinstall", {**form, "ssh_key_ids": str(key_id), "ssh_keys": KEY}
    )
    assert chosen.status_code == 200, chosen.text[:500]
    assert chosen.headers["HX-Redirect"] == f"/servers/{server.id}?done=reinstalling"
    assert await job_keys(db, server.id) == [SAVED_KEY, KEY]


async def test_the_service_refuses_a_setup_with_no_way_in(people: People, db: AsyncSession) -> None:
    """Callers that skip the schema (jobs, the CLI, staff tools) meet the same rule."""
    offer = await make_offer(db)
    customer = await people.sign_in()
    waiting = await _waiting(db, offer, customer)
    active = await make_server(db, offer, customer.user)
    bare = ServerSetup(template_id=offer.template.id, hostname="web-1.example.com")
    actor = Actor.system("tests")

    with pytest.raises(NoWayToSignIn):
        await servers.setup(db, actor, waiting.id, bare)
    with pytest.raises(NoWayToSignIn):
        await servers.reinstall(db, actor, active.id, bare)
    assert await server_jobs(db, waiting.id) == []
    assert await server_jobs(db, active.id) == []
