"""Personal access tokens and the /api/v1/account endpoints, over HTTP with a real database."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth import tokens as tokens_module
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ApiTokenCreate
from corral.auth.tokens import NewApiToken, api_tokens
from corral.kit.clock import utcnow
from corral.models.auth import ApiToken, UserSession
from corral.models.users import User, UserRole
from corral.rbac.permissions import Permission, permissions_for
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, page_token, sign_in

TOKENS = "/api/v1/account/tokens"
SESSIONS = "/api/v1/account/sessions"
PROBE = "/api/v1/test/users-probe"


@pytest.fixture
async def app(app: FastAPI) -> FastAPI:
    """The panel with a users:read probe."""

    # A stand-in for a staff endpoint, to watch a permission come and go with the owner's role.
    @app.get(PROBE)
    async def users_probe(principal: Annotated[Principal, require(Permission.USERS_READ)]) -> dict[str, int]:
        return {"user_id": principal.user_id}

    return app


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def make_token(
    db: AsyncSession,
    user: User,
    scopes: list[Permission],
    *,
    name: str = "ci",
    days: int | None = 30,
) -> NewApiToken:
    principal = Principal.of(user, permissions_for(user.role))
    data = ApiTokenCreate(name=name, scopes=scopes, expires_in_days=days)
    return await api_tokens.create(db, principal, data)


async def cookie_session(client: httpx.AsyncClient, db: AsyncSession, **overrides: Any) -> tuple[User, str]:
    """A signed-in browser; returns the user and the CSRF token for unsafe API calls."""
    user = await create_user(db, **overrides)
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 303
    return user, await page_token(client)


async def test_a_token_is_shown_once_and_stored_only_as_a_hash(
    client: httpx.AsyncClient,
    db: AsyncSession,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    _, csrf = await cookie_session(client, db)
    body = {"name": "Backup script", "scopes": ["account:read", "tokens:manage"], "expires_in_days": 90}

    response = await client.post(TOKENS, json=body, headers={**ORIGIN, "X-CSRF-Token": csrf})

    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    secret = created["token"]
    assert secret.startswith("crl_")
    assert len(secret) >= len("crl_") + 43  # 32 random bytes, urlsafe base64
    assert created["prefix"] == secret[:12]
    assert created["scopes"] == ["account:read", "tokens:manage"]
    assert (
        timedelta(days=90) - timedelta(seconds=5)
        < (_parse(created["expires_at"]) - _parse(created["created_at"]))
        <= timedelta(days=90)
    )

    row = (await db.execute(select(ApiToken))).scalar_one()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:12]
    rows_as_text = (await db.execute(text("SELECT string_agg(t::text, ' ') FROM api_tokens t"))).scalar_one()
    assert secret not in rows_as_text
    assert secret[12:] not in rows_as_text

    listed = await client.get(TOKENS)
    assert listed.status_code == 200
    assert secret[12:] not in listed.text
    assert "token" not in listed.json()[0]

    [event] = await audit.list(db, action="auth.token.create")
    assert event.payload["name"] == "Backup script"
    assert event.payload["prefix"] == secret[:12]
    every_event = (await db.execute(text("SELECT string_agg(e::text, ' ') FROM audit_events e"))).scalar_one()
    assert secret[12:] not in every_event
    assert row.token_hash not in every_event
    # Logs go through the standard library and out on stdout/stderr: the secret is in neither.
    assert secret[12:] not in caplog.text
    printed = capfd.readouterr()
    assert "/api/v1/account/tokens" in printed.out + printed.err  # the request log line was captured
    assert secret[12:] not in printed.out + printed.err
    assert all(secret[12:] not in repr(record.__dict__) for record in caplog.records)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_bearer_tokens_work_on_the_account_api_without_csrf(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    made = await make_token(db, user, [Permission.SESSIONS_MANAGE, Permission.TOKENS_MANAGE])
    assert made.token.last_used_at is None

    listed = await client.get(TOKENS, headers=bearer(made.secret))
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()] == ["ci"]
    assert made.token.last_used_at is not None
    assert (await client.get(SESSIONS, headers=bearer(made.secret))).status_code == 200

    # No cookie, no CSRF token, no Origin: a bearer token is never sent by a browser on its own.
    other = await make_token(db, user, [Permission.ACCOUNT_READ], name="old")
    revoked = await client.delete(f"{TOKENS}/{other.token.id}", headers=bearer(made.secret))
    assert revoked.status_code == 204, revoked.text
    [event] = await audit.list(db, action="auth.token.revoke", limit=1)
    assert event.actor_label == f"{user.email} (token {made.token.prefix})"

    # Minting a credential needs a fresh step-up, which only a signed-in browser can give.
    created = await client.post(
        TOKENS, json={"name": "second", "scopes": ["sessions:manage"]}, headers=bearer(made.secret)
    )
    assert created.status_code == 403
    assert created.json()["code"] == "step_up_needs_browser"


async def test_a_token_without_tokens_manage_is_refused_the_token_endpoints(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    made = await make_token(db, user, [Permission.SESSIONS_MANAGE])

    for method, path in (("GET", TOKENS), ("POST", TOKENS), ("DELETE", f"{TOKENS}/{made.token.id}")):
        response = await client.request(
            method, path, headers=bearer(made.secret), json={"name": "x", "scopes": ["account:read"]}
        )
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "missing_permission"
    assert (await client.get(SESSIONS, headers=bearer(made.secret))).status_code == 200


async def test_a_token_never_exceeds_its_owners_current_role(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await create_user(db, role=UserRole.SUPER_ADMIN.value)
    made = await make_token(db, admin, [Permission.USERS_READ, Permission.TOKENS_MANAGE])
    assert (await client.get(PROBE, headers=bearer(made.secret))).status_code == 200

    admin.role = UserRole.CUSTOMER.value
    await db.flush()

    probe = await client.get(PROBE, headers=bearer(made.secret))
    assert probe.status_code == 403
    assert probe.json()["code"] == "missing_permission"
    # What the role still allows keeps working.
    assert (await client.get(TOKENS, headers=bearer(made.secret))).status_code == 200

    admin.role = UserRole.SUPER_ADMIN.value
    await db.flush()
    assert (await client.get(PROBE, headers=bearer(made.secret))).status_code == 200


async def test_a_token_cannot_mint_tokens(client: httpx.AsyncClient, db: AsyncSession) -> None:
    """A leaked token must not be able to make itself a successor: minting needs a step-up."""
    admin = await create_user(db, role=UserRole.SUPER_ADMIN.value)
    made = await make_token(db, admin, [Permission.TOKENS_MANAGE])

    for scopes in (["audit:read"], ["tokens:manage"]):
        response = await client.post(
            TOKENS, json={"name": "escalate", "scopes": scopes}, headers=bearer(made.secret)
        )
        assert response.status_code == 403
        assert response.json()["code"] == "step_up_needs_browser"
    assert len((await db.execute(select(ApiToken))).scalars().all()) == 1


async def test_asking_for_a_scope_the_role_lacks_is_a_clear_422(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    _, csrf = await cookie_session(client, db)

    response = await client.post(
        TOKENS,
        json={"name": "too much", "scopes": ["account:read", "users:block"]},
        headers={**ORIGIN, "X-CSRF-Token": csrf},
    )

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "scope_not_allowed"
    assert "users:block" in problem["message"]
    assert problem["details"]["scopes"] == ["users:block"]
    assert (await db.execute(select(ApiToken))).first() is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "scopes": ["account:read"]}, "name"),
        ({"name": "   ", "scopes": ["account:read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["account:read"]}, "name"),
        ({"name": "tab\there", "scopes": ["account:read"]}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scopes": ["root:everything"]}, "scopes.0"),
        ({"name": "ok", "scopes": ["account:read"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "scopes": ["account:read"], "expires_in_days": 366}, "expires_in_days"),
    ],
)
async def test_invalid_token_requests_are_422_with_the_field(
    client: httpx.AsyncClient, db: AsyncSession, body: dict[str, Any], field: str
) -> None:
    _, csrf = await cookie_session(client, db)

    response = await client.post(TOKENS, json=body, headers={**ORIGIN, "X-CSRF-Token": csrf})

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert field in [error["field"] for error in problem["errors"]]


async def test_expiry_limits_and_never(client: httpx.AsyncClient, db: AsyncSession) -> None:
    _, csrf = await cookie_session(client, db)
    headers = {**ORIGIN, "X-CSRF-Token": csrf}

    never = await client.post(
        TOKENS, json={"name": "forever", "scopes": ["account:read"], "expires_in_days": None}, headers=headers
    )
    year = await client.post(
        TOKENS, json={"name": "year", "scopes": ["account:read"], "expires_in_days": 365}, headers=headers
    )
    default = await client.post(TOKENS, json={"name": "default", "scopes": ["account:read"]}, headers=headers)

    assert never.status_code == year.status_code == default.status_code == 201
    assert never.json()["expires_at"] is None
    assert _parse(year.json()["expires_at"]) - utcnow() > timedelta(days=364)
    assert timedelta(days=29) < _parse(default.json()["expires_at"]) - utcnow() <= timedelta(days=30)


async def test_a_duplicate_name_is_a_conflict(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user, csrf = await cookie_session(client, db)
    headers = {**ORIGIN, "X-CSRF-Token": csrf}
    made = await make_token(db, user, [Permission.TOKENS_MANAGE, Permission.ACCOUNT_READ], name="Deploy")
    # Read before the refused request: its rollback expires the ORM objects.
    token_id = made.token.id

    response = await client.post(
        TOKENS, json={"name": " deploy ", "scopes": ["account:read"]}, headers=headers
    )

    assert response.status_code == 409
    assert response.json()["code"] == "api_token_name_taken"
    # Once the old token is revoked the name is free again.
    assert (await client.delete(f"{TOKENS}/{token_id}", headers=headers)).status_code == 204
    again = await client.post(TOKENS, json={"name": "Deploy", "scopes": ["account:read"]}, headers=headers)
    assert again.status_code == 201


async def test_too_many_tokens_is_a_conflict(
    client: httpx.AsyncClient, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens_module, "MAX_USABLE_TOKENS", 2)
    user, csrf = await cookie_session(client, db)
    await make_token(db, user, [Permission.TOKENS_MANAGE, Permission.ACCOUNT_READ], name="one")
    await make_token(db, user, [Permission.ACCOUNT_READ], name="two")

    response = await client.post(
        TOKENS, json={"name": "three", "scopes": ["account:read"]}, headers={**ORIGIN, "X-CSRF-Token": csrf}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "too_many_api_tokens"


async def test_expired_and_revoked_tokens_are_401(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db)
    expired = await make_token(db, user, [Permission.TOKENS_MANAGE], name="expired")
    revoked = await make_token(db, user, [Permission.TOKENS_MANAGE], name="revoked")
    live = await make_token(db, user, [Permission.TOKENS_MANAGE], name="live")
    await db.execute(
        update(ApiToken)
        .where(ApiToken.id == expired.token.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )

    revoke = await client.delete(f"{TOKENS}/{revoked.token.id}", headers=bearer(live.secret))
    assert revoke.status_code == 204
    [event] = await audit.list(db, action="auth.token.revoke")
    assert event.payload == {"name": "revoked", "prefix": revoked.token.prefix}

    for secret in (expired.secret, revoked.secret, "crl_" + "A" * 43, "garbage"):
        response = await client.get(TOKENS, headers=bearer(secret))
        assert response.status_code == 401, secret
        # RFC 6750: the challenge says the token itself is the problem (issue 10 point 5).
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert response.json()["code"] == "invalid_token"
    assert (await client.get(TOKENS, headers=bearer(live.secret))).status_code == 200


async def test_anonymous_api_requests_get_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", TOKENS), ("GET", SESSIONS), ("POST", f"{SESSIONS}/revoke-all")):
        response = await client.request(method, path, headers=ORIGIN)
        assert response.status_code in (401, 403), (method, path)
        if method == "GET":
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"


async def test_a_cookie_session_still_needs_the_csrf_token_on_the_api(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await cookie_session(client, db)
    response = await client.post(TOKENS, json={"name": "x", "scopes": ["account:read"]}, headers=ORIGIN)
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_rejected"


async def test_nobody_can_revoke_another_users_token(client: httpx.AsyncClient, db: AsyncSession) -> None:
    owner = await create_user(db)
    theirs = await make_token(db, owner, [Permission.TOKENS_MANAGE], name="owner's")
    intruder = await create_user(db)
    mine = await make_token(db, intruder, [Permission.TOKENS_MANAGE], name="intruder's")

    response = await client.delete(f"{TOKENS}/{theirs.token.id}", headers=bearer(mine.secret))

    assert response.status_code == 404
    assert response.json()["code"] == "api_token_not_found"
    assert (await client.get(TOKENS, headers=bearer(theirs.secret))).status_code == 200
    listed = await client.get(TOKENS, headers=bearer(mine.secret))
    assert [item["name"] for item in listed.json()] == ["intruder's"]
    # A missing id looks exactly the same.
    missing = await client.delete(f"{TOKENS}/{theirs.token.id + 1000}", headers=bearer(mine.secret))
    assert missing.json()["code"] == "api_token_not_found"


async def test_nobody_can_revoke_another_users_session(client: httpx.AsyncClient, db: AsyncSession) -> None:
    owner, _ = await cookie_session(client, db)
    [their_session] = (await db.execute(select(UserSession).where(UserSession.user_id == owner.id))).scalars()
    intruder = await create_user(db)
    mine = await make_token(db, intruder, [Permission.SESSIONS_MANAGE])

    response = await client.delete(f"{SESSIONS}/{their_session.id}", headers=bearer(mine.secret))

    assert response.status_code == 404
    assert response.json()["code"] == "session_not_found"
    assert their_session.revoked_at is None
    assert (await client.get("/dashboard")).status_code == 200


# A number out of the id range is a 422 on the field; an id that is not digits names no path at
# all (ids match digits only, so /sessions/revoke-all is never taken for one): a 404.
@pytest.mark.parametrize(("bad_id", "status"), [("0", 422), (str(2**63), 422), ("-1", 404), ("abc", 404)])
async def test_out_of_range_ids_are_refused_not_500(
    client: httpx.AsyncClient, db: AsyncSession, bad_id: str, status: int
) -> None:
    user = await create_user(db)
    made = await make_token(db, user, [Permission.SESSIONS_MANAGE, Permission.TOKENS_MANAGE])
    for path in (f"{TOKENS}/{bad_id}", f"{SESSIONS}/{bad_id}"):
        response = await client.delete(path, headers=bearer(made.secret))
        assert response.status_code == status, path


async def test_session_list_marks_the_current_session(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user, _ = await cookie_session(client, db)
    made = await make_token(db, user, [Permission.SESSIONS_MANAGE])

    by_cookie = (await client.get(SESSIONS, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})).json()
    assert [item["current"] for item in by_cookie] == [True]
    assert by_cookie[0]["device"]
    assert "ip" in by_cookie[0]

    # Asked with a token, no session is "current": the token is not a session.
    tokenless = httpx.AsyncClient(transport=client._transport, base_url="https://panel.test")
    async with tokenless:
        by_token = (await tokenless.get(SESSIONS, headers=bearer(made.secret))).json()
    assert [item["current"] for item in by_token] == [False]


async def test_deleting_one_session_through_the_api(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user, csrf = await cookie_session(client, db)
    [current] = (await client.get(SESSIONS)).json()

    response = await client.delete(f"{SESSIONS}/{current['id']}", headers={**ORIGIN, "X-CSRF-Token": csrf})

    assert response.status_code == 204
    assert (await client.get("/dashboard")).status_code == 303
    [event] = await audit.list(db, action="auth.session.revoke")
    assert event.actor_id == user.id


async def test_revoke_all_ends_every_session_but_not_tokens(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user, _ = await cookie_session(client, db)
    made = await make_token(db, user, [Permission.SESSIONS_MANAGE])

    response = await client.post(f"{SESSIONS}/revoke-all", headers=bearer(made.secret))

    assert response.status_code == 200
    assert response.json() == {"revoked": 1}
    assert (await client.get("/dashboard")).status_code == 303
    assert (await client.get(SESSIONS, headers=bearer(made.secret))).json() == []
    assert [event.action for event in await audit.list(db, action="auth.sign_out_everywhere")] == [
        "auth.sign_out_everywhere"
    ]
