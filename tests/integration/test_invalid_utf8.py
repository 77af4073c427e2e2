"""Issue 11 point 5: text that is not UTF-8 is refused with a 422, never stored as mojibake.

Before the fix, ``name=%FF%FE`` renamed a server to replacement characters (and raw Latin-1 bytes
or a multipart field to "ÿþ"): Starlette decodes form fields leniently. web.encoding checks the
bytes of every query string and form body, for every route, before a handler sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.servers import Server
from corral.models.users import User, UserRole
from tests.factories.fleet import create_server
from tests.support.admin import People, Person, people_for
from tests.support.auth import ORIGIN, form_token

FORM = {"Content-Type": "application/x-www-form-urlencoded", **ORIGIN}


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as found:
        yield found


@pytest.fixture
async def customer(people: People) -> Person:
    return await people.sign_in(UserRole.CUSTOMER)


async def _name_of(db: AsyncSession, server_id: int) -> str:
    name = await db.scalar(select(Server.name).where(Server.id == server_id))
    assert name is not None
    return name


def _refused_field(response_json: dict[str, object], field: str, location: str) -> None:
    assert response_json["code"] == "validation_failed", response_json
    assert response_json["errors"] == [
        {
            "field": field,
            "message": "This is not valid UTF-8 text. Send text encoded as UTF-8.",
            "type": "invalid_utf8",
            "location": location,
        }
    ]


@pytest.mark.parametrize(
    "name",
    [b"%FF%FE", b"\xff\xfe", b"ok%C3", b"%ED%A0%80", b"%C3%28"],
    ids=["escaped", "raw-latin-1", "truncated", "surrogate", "bad-continuation"],
)
async def test_a_server_rename_form_that_is_not_utf8_is_refused_and_changes_nothing(
    customer: Person, db: AsyncSession, name: bytes
) -> None:
    server = await create_server(db, user=customer.user, name="web")
    body = b"name=" + name + b"&csrf_token=" + customer.csrf.encode()
    page = await customer.client.post(f"/servers/{server.id}/rename", content=body, headers=FORM)
    assert page.status_code == 422, page.text[:300]
    assert "not valid UTF-8" in page.text
    htmx = await customer.client.post(
        f"/servers/{server.id}/rename", content=body, headers={**FORM, **customer.headers(htmx=True)}
    )
    assert htmx.status_code == 422
    assert "not valid UTF-8" in htmx.headers["HX-Trigger"]
    assert await _name_of(db, server.id) == "web"


async def test_utf8_text_in_a_form_is_still_taken_as_typed(customer: Person, db: AsyncSession) -> None:
    server = await create_server(db, user=customer.user, name="web")
    renamed = await customer.post_form(f"/servers/{server.id}/rename", {"name": "Zoë 東京 🚀+1%"})
    assert renamed.status_code == 303, renamed.text[:300]
    assert await _name_of(db, server.id) == "Zoë 東京 🚀+1%"


async def test_a_multipart_text_field_that_is_not_utf8_is_refused(customer: Person, db: AsyncSession) -> None:
    server = await create_server(db, user=customer.user, name="web")
    boundary = "corral-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{customer.csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
        ).encode()
        + b"\xff\xfe\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", **ORIGIN}
    response = await customer.client.post(f"/servers/{server.id}/rename", content=body, headers=headers)
    assert response.status_code == 422, response.text[:300]
    assert await _name_of(db, server.id) == "web"
    # The same form in UTF-8 goes through.
    fine = body.replace(b"\xff\xfe", "Zoë".encode())
    accepted = await customer.client.post(f"/servers/{server.id}/rename", content=fine, headers=headers)
    assert accepted.status_code == 303, accepted.text[:300]
    assert await _name_of(db, server.id) == "Zoë"


async def test_a_registration_that_is_not_utf8_is_refused_and_creates_no_account(
    people: People, db: AsyncSession
) -> None:
    client = await people.client()
    token = await form_token(client, "/register")
    body = (
        b"email=mojibake%40example.com&name=%FF%FE&password=a+long+passphrase+42"
        b"&password_confirm=a+long+passphrase+42&csrf_token=" + token.encode()
    )
    response = await client.post("/register", content=body, headers=FORM)
    assert response.status_code == 422, response.text[:300]
    assert "not valid UTF-8" in response.text
    made = await db.scalar(select(func.count()).where(User.email == "mojibake@example.com"))
    assert made == 0


async def test_an_api_body_that_is_not_utf8_is_refused_and_changes_nothing(
    customer: Person, db: AsyncSession
) -> None:
    server = await create_server(db, user=customer.user, name="web")
    headers = {**customer.headers(), "Content-Type": "application/json"}
    path = f"/api/v1/servers/{server.id}"
    for body in (b'{"name": "\xff\xfe"}', b'{"name": "\\ud800"}'):
        response = await customer.client.patch(path, content=body, headers=headers)
        assert response.status_code == 422, (body, response.status_code, response.text[:300])
        assert response.json()["code"] == "validation_failed"
    assert await _name_of(db, server.id) == "web"


async def test_a_query_string_that_is_not_utf8_is_refused(people: People, customer: Person) -> None:
    anonymous = await people.client()
    page = await anonymous.get("/verify?token=%FF%FE")
    assert page.status_code == 422
    assert "not valid UTF-8" in page.text
    api = await customer.client.get("/api/v1/servers?cursor=%C3")
    assert api.status_code == 422
    _refused_field(api.json(), "cursor", "query")
    # A field whose name is the broken part is the query's fault as a whole.
    unnamed = await customer.client.get("/api/v1/servers?%FF=1")
    _refused_field(unnamed.json(), "query", "query")


async def test_a_form_field_is_named_in_the_api_shape(customer: Person, db: AsyncSession) -> None:
    server = await create_server(db, user=customer.user, name="web")
    body = b"csrf_token=" + customer.csrf.encode() + b"&name=%FF"
    response = await customer.client.post(
        f"/servers/{server.id}/rename", content=body, headers={**FORM, "Accept": "application/json"}
    )
    assert response.status_code == 422
    _refused_field(response.json(), "name", "body")
