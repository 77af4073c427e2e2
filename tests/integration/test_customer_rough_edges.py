"""Issue 10, point 12: the smaller rough edges a new customer (and an operator) met.

"Done" toasts that outlive what they announce, pages promising features that do not exist, the
server limit shown only after the order form, the ``tokens:manage`` scope promising what a token
cannot do, and the node-delete refusal suggesting a move that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.auth.schemas import ApiTokenCreate
from corral.auth.security_views import describe_scope
from corral.auth.tokens import api_tokens
from corral.models.settings import PanelSetting
from corral.models.users import UserRole
from corral.rbac.permissions import Permission, permissions_for
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.factories.users import create_user
from tests.support.admin import People, people_for

BEING_BUILT = "Your server is being built."
# What the panel does not do (yet): no page may offer it.
NOT_THERE = re.compile(r"\b(wallet|billing|graphs?|snapshots?|backups?|top[ -]up|invoices?)\b", re.IGNORECASE)


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


# --- "done" toasts ---------------------------------------------------------------------------------


async def test_the_being_built_toast_shows_only_while_the_server_is_being_built(
    people: People, db: AsyncSession
) -> None:
    customer = await people.sign_in()
    server = await create_server(db, user=customer.user, status="provisioning")

    building = await customer.client.get(f"/servers/{server.id}?done=setup")
    assert BEING_BUILT in building.text

    server.status = "active"
    await db.flush()
    running = await customer.client.get(f"/servers/{server.id}?done=setup")
    assert running.status_code == 200
    assert BEING_BUILT not in running.text
    # A toast about something finished is still shown after its redirect.
    assert "Server renamed." in (await customer.client.get(f"/servers/{server.id}?done=renamed")).text


def test_the_page_script_takes_done_out_of_the_address() -> None:
    """Every ``?done=`` toast is shown once: corral.js (on every page) drops the key from the URL,
    so a reload does not show it again. The browser test proves it runs; this pins where."""
    from corral.web.rendering import STATIC_DIR

    script = (STATIC_DIR / "js" / "corral.js").read_text()
    assert 'url.searchParams.delete("done")' in script
    assert "history.replaceState" in script


# --- pages say only what the panel does ----------------------------------------------------------


async def test_the_start_and_sign_in_pages_promise_nothing_the_panel_lacks(client: httpx.AsyncClient) -> None:
    for path in ("/", "/login", "/register"):
        response = await client.get(path)
        assert response.status_code == 200, path
        text = re.sub(r"<[^>]+>", " ", response.text)  # words on the page, not class names
        assert NOT_THERE.findall(text) == [], path


async def test_the_welcome_email_promises_nothing_the_panel_lacks() -> None:
    from corral.config import Settings
    from corral.notifications.service import render, template_spec

    settings = Settings(web={"public_url": "https://panel.example.com"})  # type: ignore[arg-type]
    rendered = render(template_spec("welcome"), {"name": "Ada"}, settings)
    assert NOT_THERE.findall(rendered.text) == []
    assert NOT_THERE.findall(re.sub(r"<[^>]+>", " ", rendered.html)) == []


# --- the server limit, up front ------------------------------------------------------------------


async def test_the_order_page_shows_the_limit_before_the_form(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in()
    for _ in range(4):
        await create_server(db, user=customer.user)
    await create_server(db, user=customer.user, status="deleted")  # not counted

    page = await customer.client.get("/servers/new")

    assert page.status_code == 200
    assert "You have 4 of 5 servers." in page.text
    assert 'data-testid="server-limit-reached"' not in page.text


async def test_at_the_limit_the_order_page_says_so_and_offers_no_form(
    people: People, db: AsyncSession
) -> None:
    db.add(PanelSetting(key="customer_server_limit", value=1))
    await db.flush()
    customer = await people.sign_in()
    await create_server(db, user=customer.user)

    page = await customer.client.get("/servers/new")

    assert page.status_code == 200
    assert "You have 1 of 1 server." in page.text
    assert "You have reached your limit of 1 server." in page.text
    assert 'action="/servers/new"' not in page.text


# --- the tokens:manage scope says what a token can do --------------------------------------------


async def test_tokens_manage_describes_what_a_token_holding_it_can_do(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    description = describe_scope(Permission.TOKENS_MANAGE)
    assert "create" not in description.lower()
    assert description.startswith("List and revoke")

    # ...and that is what such a token does: list and revoke yes, create no.
    owner = await create_user(db)
    principal = Principal.of(owner, permissions_for(owner.role))
    holder = await api_tokens.create(
        db, principal, ApiTokenCreate(name="manager", scopes=[Permission.TOKENS_MANAGE], expires_in_days=30)
    )
    other = await api_tokens.create(
        db, principal, ApiTokenCreate(name="other", scopes=[Permission.ACCOUNT_READ], expires_in_days=30)
    )
    bearer = {"Authorization": f"Bearer {holder.secret}"}

    listed = await client.get("/api/v1/account/tokens", headers=bearer)
    assert listed.status_code == 200
    assert {token["name"] for token in listed.json()} == {"manager", "other"}
    revoked = await client.delete(f"/api/v1/account/tokens/{other.token.id}", headers=bearer)
    assert revoked.status_code == 204
    created = await client.post("/api/v1/account/tokens", json={"name": "x", "scopes": []}, headers=bearer)
    assert (created.status_code, created.json()["code"]) == (403, "step_up_needs_browser")

    # The API description says the same.
    operation = (await client.get("/api/v1/openapi.json")).json()["paths"]["/api/v1/account/tokens"]["post"]
    assert "cannot create tokens" in operation["description"]
    assert "a token may create tokens" not in operation["description"]


async def test_the_token_form_shows_the_truthful_description(people: People) -> None:
    customer = await people.sign_in()
    page = await customer.client.get("/account/security")
    assert "List, create and revoke" not in page.text
    assert describe_scope(Permission.TOKENS_MANAGE) in page.text


# --- the node-delete refusal suggests only what exists --------------------------------------------


async def test_a_used_node_refuses_deletion_with_advice_an_operator_can_follow(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    location = await create_location(db)
    node = await create_node(db, location=location)
    await create_server(db, location=location, node_id=node.id, status="deleted")

    refused = await operator.client.delete(f"/api/v1/admin/nodes/{node.id}", headers=operator.headers())

    assert refused.status_code == 409
    message = refused.json()["message"]
    assert "move" not in message.lower()  # there is no way to move a server off a node
    assert "maintenance" in message
    # ...and the maintenance it suggests is there to use.
    maintenance = await operator.post_json(f"/api/v1/admin/nodes/{node.id}/maintenance", {"enabled": True})
    assert maintenance.status_code == 200, maintenance.text
    assert maintenance.json()["status"] == "maintenance"


# --- API documentation ---------------------------------------------------------------------------


async def test_the_api_docs_are_served_from_our_own_origin(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []  # no inline script
    assets = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', page.text)
    assert any("vendor/swagger-ui/swagger-ui-bundle.js" in url for url in assets)
    assert any("js/api-docs.js" in url for url in assets)
    for url in assets:
        assert url.startswith("/"), url  # same origin, no CDN
        assert not url.startswith("//"), url
        fetched = await client.get(url)
        assert fetched.status_code == 200, url
    assert 'data-spec-url="/api/v1/openapi.json"' in page.text
    assert (await client.get("/api/v1/openapi.json")).status_code == 200


async def test_the_tokens_page_links_to_the_api_docs(people: People) -> None:
    customer = await people.sign_in()
    page = await customer.client.get("/account/security")
    assert 'href="/api/docs"' in page.text
