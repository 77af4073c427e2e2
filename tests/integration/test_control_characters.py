"""Issue 10 point 4: a control character in any text input is a 4xx, never a 500.

A NUL byte cannot be stored in PostgreSQL text: before the fix, ``POST /login`` with one in the
email and the staff user search with one in ``q`` answered 500. Every free-text field is now typed
with ``corral.kit.text`` (refused by the schema, 422, naming the field), and a database
``DataError`` that slips through anyway is a 422 too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.deps import PUBLIC
from corral.kit.text import MultiLine, SingleLine
from corral.models.users import User, UserRole
from corral.web.deps import DbSession
from tests.factories.fleet import create_ip_pool, create_location, create_server
from tests.factories.nodes import create_node, create_template
from tests.factories.plans import create_plan
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.admin import People, Person, people_for
from tests.support.auth import ORIGIN, form_token

NUL = "\x00"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as found:
        yield found


@dataclass(frozen=True)
class Case:
    """One text field of one form, body or query, sent with ``value`` in it."""

    name: str
    who: str  # anonymous | customer | staff
    method: str
    path: str  # {server} {plan} {location} {node} {template} {pool} {user} are filled in
    kind: str  # form | json | query
    data: dict[str, Any] = field(default_factory=dict)
    target: str = ""  # the field that gets the control character
    form_page: str = "/login"  # where an anonymous form's CSRF token comes from

    def with_value(self, value: str) -> dict[str, Any]:
        data = dict(self.data)
        data[self.target] = str(data.get(self.target, "")) + value
        return data


CASES = [
    Case(
        "sign-in email",
        "anonymous",
        "POST",
        "/login",
        "form",
        {"email": "a@example.com", "password": "x" * 12},
        "email",
    ),
    Case(
        "registration email",
        "anonymous",
        "POST",
        "/register",
        "form",
        {
            "email": "new@example.com",
            "name": "New Person",
            "password": "a long passphrase 42",
            "password_confirm": "a long passphrase 42",
        },
        "email",
        form_page="/register",
    ),
    Case(
        "registration name",
        "anonymous",
        "POST",
        "/register",
        "form",
        {
            "email": "new@example.com",
            "name": "New",
            "password": "a long passphrase 42",
            "password_confirm": "a long passphrase 42",
        },
        "name",
        form_page="/register",
    ),
    Case("verification token", "anonymous", "GET", "/verify", "query", {"token": "abc"}, "token"),
    Case("staff user search, page", "staff", "GET", "/admin/users", "query", {"q": "someone"}, "q"),
    Case("staff user search, API", "staff", "GET", "/api/v1/admin/users", "query", {"q": "someone"}, "q"),
    Case(
        "server rename, page", "customer", "POST", "/servers/{server}/rename", "form", {"name": "web"}, "name"
    ),
    Case(
        "server rename, API", "customer", "PATCH", "/api/v1/servers/{server}", "json", {"name": "web"}, "name"
    ),
    Case(
        "cancellation confirm, API",
        "customer",
        "POST",
        "/api/v1/servers/{server}/cancellation",
        "json",
        {"mode": "immediate", "confirm": "web"},
        "confirm",
    ),
    Case("SSH key name, page", "customer", "POST", "/account/ssh-keys", "form", {"name": "laptop"}, "name"),
    Case(
        "SSH key name, API",
        "customer",
        "POST",
        "/api/v1/account/ssh-keys",
        "json",
        {"name": "laptop"},
        "name",
    ),
    Case("account name, API", "customer", "PATCH", "/api/v1/account", "json", {"name": "Pat"}, "name"),
    Case("account name, page", "customer", "POST", "/account/name", "form", {"name": "Pat"}, "name"),
    Case(
        "API token name",
        "customer",
        "POST",
        "/api/v1/account/tokens",
        "json",
        {"name": "ci", "scopes": ["servers:read"]},
        "name",
    ),
    Case(
        "plan name, API",
        "staff",
        "POST",
        "/api/v1/admin/plans",
        "json",
        {
            "slug": "nul-plan",
            "name": "Plan",
            "vcpus": 1,
            "memory_mib": 1024,
            "disk_gib": 10,
            "currency": "USD",
            "price": "5.00",
        },
        "name",
    ),
    Case(
        "plan name, API update",
        "staff",
        "PATCH",
        "/api/v1/admin/plans/{plan}",
        "json",
        {"name": "Plan"},
        "name",
    ),
    Case(
        "plan name, page",
        "staff",
        "POST",
        "/admin/plans/{plan}",
        "form",
        {
            "slug": "p",
            "name": "Plan",
            "vcpus": "1",
            "memory_mib": "1024",
            "disk_gib": "10",
            "traffic_gib": "0",
            "currency": "USD",
            "price": "5.00",
        },
        "name",
    ),
    Case("node name, API", "staff", "PATCH", "/api/v1/admin/nodes/{node}", "json", {"name": "hv"}, "name"),
    Case(
        "location name, API",
        "staff",
        "POST",
        "/api/v1/admin/locations",
        "json",
        {"slug": "nul1", "name": "Place", "country_code": "AU"},
        "name",
    ),
    Case(
        "location name, API update",
        "staff",
        "PATCH",
        "/api/v1/admin/locations/{location}",
        "json",
        {"name": "Place"},
        "name",
    ),
    Case(
        "location name, page",
        "staff",
        "POST",
        "/admin/locations/{location}",
        "form",
        {"name": "Place", "country_code": "AU", "active": "on"},
        "name",
    ),
    Case(
        "IP pool name, API",
        "staff",
        "PATCH",
        "/api/v1/admin/ip-pools/{pool}",
        "json",
        {"name": "pool"},
        "name",
    ),
    Case(
        "OS template name, API",
        "staff",
        "PATCH",
        "/api/v1/admin/os-templates/{template}",
        "json",
        {"name": "Linux"},
        "name",
    ),
    Case(
        "block reason, API",
        "staff",
        "POST",
        "/api/v1/admin/users/{user}/block",
        "json",
        {"reason": "abuse"},
        "reason",
    ),
    Case(
        "suspension reason, API",
        "staff",
        "POST",
        "/api/v1/admin/servers/{server}/suspend",
        "json",
        {"reason": "abuse"},
        "reason",
    ),
]


@dataclass
class World:
    customer: Person
    staff: Person
    anonymous: httpx.AsyncClient
    ids: dict[str, int]
    public_key: str


@pytest.fixture
async def world(people: People, db: AsyncSession) -> World:
    customer = await people.sign_in(UserRole.CUSTOMER)
    staff = await people.sign_in(UserRole.SUPER_ADMIN)
    location = await create_location(db)
    server = await create_server(db, user=customer.user, location=location, name="web")
    plan = await create_plan(db, slug="p", locations=[location])
    node = await create_node(db, location=location)
    template = await create_template(db)
    pool = await create_ip_pool(db, location=location)
    victim = await create_user(db)
    ids = {
        "server": server.id,
        "plan": plan.id,
        "location": location.id,
        "node": node.id,
        "template": template.id,
        "pool": pool.id,
        "user": victim.id,
    }
    return World(customer, staff, await people.client(), ids, _public_key())


def _public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " me@laptop"


async def send(world: World, case: Case, value: str) -> httpx.Response:
    path = case.path.format(**world.ids)
    data = case.with_value(value)
    if case.name.startswith("SSH key"):
        data["public_key"] = world.public_key
    if case.who == "anonymous":
        client = world.anonymous
        if case.kind == "query":
            return await client.get(path, params=data)
        token = await form_token(client, case.form_page)
        return await client.request(case.method, path, data={**data, "csrf_token": token}, headers=ORIGIN)
    person = world.customer if case.who == "customer" else world.staff
    if case.kind == "query":
        return await person.client.get(path, params=data)
    if case.kind == "form":
        return await person.post_form(path, data)
    return await person.send_json(case.method, path, data)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize("character", [NUL, "\x1b", "\x7f", "\x85"], ids=["NUL", "ESC", "DEL", "NEL"])
async def test_a_control_character_in_a_text_field_is_refused_not_a_server_error(
    world: World, case: Case, character: str
) -> None:
    response = await send(world, case, f"x{character}y")
    assert response.status_code == 422, (case.name, response.status_code, response.text[:300])
    if case.path.startswith("/api/"):
        body = response.json()
        assert body["code"] == "validation_failed"
        # Named as the field's fault (a field with a stricter pattern of its own reports that one).
        assert case.target in {error["field"] for error in body["errors"]}, body


async def test_a_refusal_says_why_in_words(world: World) -> None:
    response = await world.customer.send_json(
        "PATCH", f"/api/v1/servers/{world.ids['server']}", {"name": "a\x00b"}
    )
    [error] = response.json()["errors"]
    assert error["message"].startswith("Must not contain control characters")
    page = await world.customer.post_form(f"/servers/{world.ids['server']}/rename", {"name": "a\tb"})
    assert page.status_code == 422
    assert "Must not contain control characters" in page.text


async def test_nothing_is_written_by_a_refused_request(world: World, db: AsyncSession) -> None:
    await world.customer.send_json("PATCH", "/api/v1/account", {"name": "Evil\x00Name"})
    name = await db.scalar(select(User.name).where(User.id == world.customer.user.id))
    assert name == world.customer.user.name


async def test_a_multi_line_reason_keeps_its_lines_and_nothing_else(world: World, db: AsyncSession) -> None:
    path = f"/api/v1/admin/users/{world.ids['user']}/block"
    tabbed = await world.staff.send_json("POST", path, {"reason": "line one\tline two"})
    assert tabbed.status_code == 422
    blocked = await world.staff.send_json("POST", path, {"reason": "line one\r\nline two\rthree"})
    assert blocked.status_code == 200, blocked.text
    reason = await db.scalar(select(User.blocked_reason).where(User.id == world.ids["user"]))
    assert reason == "line one\nline two\nthree"


def test_the_types_refuse_every_control_character_and_allow_ordinary_text() -> None:
    from pydantic import TypeAdapter, ValidationError

    single, multi = TypeAdapter(SingleLine), TypeAdapter(MultiLine)
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        with pytest.raises(ValidationError):
            single.validate_python(f"a{chr(code)}b")
        if chr(code) not in "\r\n":
            with pytest.raises(ValidationError):
                multi.validate_python(f"a{chr(code)}b")
    assert single.validate_python("Zoë's server 🚀 — 東京") == "Zoë's server 🚀 — 東京"
    assert multi.validate_python("one\ntwo\r\nthree") == "one\ntwo\r\nthree"


# ---------------------------------------------------------------- every API text field, by construction

# String fields of request bodies that need no pattern from kit.text: each is checked by its own
# parser or allowlist before it is used, and a NUL in it is refused as well (see the walk below).
OWN_VALIDATION = {
    "slug": "a lower-case slug pattern, applied after lower-casing",
    "os_family": "a lower-case pattern, applied after lower-casing",
    "country_code": "must be an ISO 3166 code",
    "currency": "must be an ISO 4217 code",
    "price": "parsed as a decimal amount",
    "driver": "must name a registered driver",
    "host": "checked as a DNS name or IP address",
    "ssh_user": "checked as a login name",
    "ssh_host_key": "parsed as an SSH public key",
    "username": "node credentials: control characters refused by their own validator",
}


def _string_fields(
    schema: dict[str, Any], components: dict[str, Any], where: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            yield from _string_fields(part, components, where)
    if schema.get("type") == "string":
        yield where, schema
    for name, part in schema.get("properties", {}).items():
        yield from _string_fields(part, components, f"{where}.{name}")
    if "items" in schema:
        yield from _string_fields(schema["items"], components, f"{where}[]")


def test_every_text_field_of_the_api_refuses_control_characters(app: FastAPI) -> None:
    document = app.openapi()
    components = document.get("components", {}).get("schemas", {})
    unguarded = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            places = [(f"?{p['name']}", p.get("schema", {})) for p in operation.get("parameters", [])]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                places.append(("body", media.get("schema", {})))
            for where, schema in places:
                for name, field_schema in _string_fields(schema, components, where):
                    if {"pattern", "enum", "format", "const"} & field_schema.keys():
                        continue
                    if name.rsplit(".", 1)[-1] not in OWN_VALIDATION:
                        unguarded.append(f"{method.upper()} {path} {name}")
    assert unguarded == [], f"free-text fields without kit.text's SingleLine/MultiLine: {unguarded}"


# ---------------------------------------------------------------- DataError, whatever slipped through


@pytest.fixture
async def app(app: FastAPI) -> FastAPI:
    """The panel with two probes that hand PostgreSQL a NUL byte in text, past any schema."""

    @app.get("/api/v1/test/nul", dependencies=[PUBLIC])
    async def api_probe(session: DbSession) -> dict[str, str]:
        await session.execute(text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})
        return {}

    @app.get("/test/nul", dependencies=[PUBLIC])
    async def page_probe(session: DbSession) -> dict[str, str]:
        await session.execute(text("SELECT CAST(:value AS inet)"), {"value": "not an address"})
        return {}

    return app


async def test_a_database_data_error_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    api = await client.get("/api/v1/test/nul")
    assert api.status_code == 422, api.text
    assert api.json()["code"] == "invalid_value"
    page = await client.get("/test/nul", headers={"Accept": "text/html"})
    assert page.status_code == 422
    assert "cannot be stored as given" in page.text


async def test_sign_in_with_a_nul_in_the_password_is_only_a_wrong_password(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    token = await form_token(client, "/login")
    response = await client.post(
        "/login",
        data={"email": user.email, "password": DEFAULT_PASSWORD + NUL, "csrf_token": token},
        headers=ORIGIN,
    )
    # The password field feeds only the hash check, so an existing password is never refused for
    # its characters; it simply does not match.
    assert response.status_code == 401
