"""The admin JSON API: shapes, bearer tokens and their scopes, typed errors, the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.secrets import new_secret, secret_hash
from corral.kit.clock import utcnow
from corral.models.auth import ApiToken
from corral.models.users import User, UserRole, UserStatus
from tests.support.admin import People, people_for


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def _token(db: AsyncSession, user: User, scopes: list[str]) -> dict[str, str]:
    secret = new_secret()
    db.add(
        ApiToken(
            user_id=user.id,
            name="automation",
            prefix=secret[:8],
            token_hash=secret_hash(secret),
            scopes=scopes,
            created_at=utcnow(),
        )
    )
    await db.flush()
    return {"Authorization": f"Bearer {secret}"}


async def test_list_and_get_return_the_documented_shapes(people: People, db: AsyncSession) -> None:
    admin = await people.user(UserRole.SUPPORT)
    target = await people.user(email="shape@example.com", name="Shay Pe")
    bearer = await _token(db, admin, ["users:read"])
    client = await people.client()

    listed = await client.get("/api/v1/admin/users", params={"q": "shape@"}, headers=bearer)
    one = await client.get(f"/api/v1/admin/users/{target.id}", headers=bearer)

    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 1
    assert body["older"] is None
    assert body["newer"] is None
    [item] = body["items"]
    assert set(item) == {
        "id",
        "email",
        "name",
        "role",
        "status",
        "created_at",
        "email_verified_at",
        "approved_at",
        "blocked_at",
        "blocked_reason",
    }
    assert (item["email"], item["role"], item["status"]) == ("shape@example.com", "customer", "active")
    assert one.status_code == 200
    assert one.json() == {**item, "active_sessions": 0}
    # Never the password hash, under any name.
    assert "hash" not in listed.text
    assert "password" not in one.text


async def test_a_token_acts_with_its_scopes_not_its_owners_whole_role(
    people: People, db: AsyncSession
) -> None:
    boss = await people.user(UserRole.SUPER_ADMIN)
    target = await people.user()
    read_only = await _token(db, boss, ["users:read"])
    blocker = await _token(db, boss, ["users:read", "users:block"])
    client = await people.client()

    refused = await client.post(
        f"/api/v1/admin/users/{target.id}/block", json={"reason": "bot traffic"}, headers=read_only
    )
    # A token is not sent by a browser on its own, so it needs no CSRF token and no Origin.
    blocked = await client.post(
        f"/api/v1/admin/users/{target.id}/block", json={"reason": "bot traffic"}, headers=blocker
    )

    assert refused.status_code == 403
    assert refused.json()["code"] == "missing_permission"
    assert blocked.status_code == 200
    assert blocked.json()["status"] == "blocked"
    assert blocked.json()["blocked_reason"] == "bot traffic"


async def test_a_token_of_a_blocked_staff_member_stops_working(people: People, db: AsyncSession) -> None:
    support = await people.user(UserRole.SUPPORT)
    bearer = await _token(db, support, ["users:read"])
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    client = await people.client()
    assert (await client.get("/api/v1/admin/users", headers=bearer)).status_code == 200

    await boss.post_json(f"/api/v1/admin/users/{support.id}/block", {"reason": "left the company"})

    response = await client.get("/api/v1/admin/users", headers=bearer)
    assert response.status_code == 401


async def test_unknown_fields_and_users_are_typed_errors(people: People) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await people.user()

    extra = await boss.post_json(
        f"/api/v1/admin/users/{target.id}/block", {"reason": "spam", "status": "active"}
    )
    unknown = await boss.post_json("/api/v1/admin/users/99999999/block", {"reason": "spam"})
    not_json = await boss.client.post(
        f"/api/v1/admin/users/{target.id}/role", content=b"role=support", headers=boss.headers()
    )

    assert extra.status_code == 422
    assert extra.json()["code"] == "validation_failed"
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "user_not_found"
    assert not_json.status_code == 422


async def test_the_full_flow_over_the_api(people: People) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await people.user(status=UserStatus.PENDING_APPROVAL.value)
    base = f"/api/v1/admin/users/{target.id}"

    approved = await support.post_json(f"{base}/approve")
    blocked = await support.post_json(f"{base}/block", {"reason": "chargebacks"})
    unblocked = await support.post_json(f"{base}/unblock", {"reason": "paid up"})
    promoted = await boss.post_json(f"{base}/role", {"role": "billing", "reason": "joins billing"})

    assert [r.status_code for r in (approved, blocked, unblocked, promoted)] == [200] * 4
    assert approved.json()["status"] == "active"
    assert approved.json()["approved_at"] is not None
    assert blocked.json()["status"] == "blocked"
    assert unblocked.json()["status"] == "active"
    assert promoted.json()["role"] == "billing"


async def test_the_openapi_document_describes_the_admin_api(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()

    paths = document["paths"]
    assert set(paths["/api/v1/admin/users/{user_id}/block"]["post"]["responses"]) >= {
        "200",
        "404",
        "409",
        "422",
    }
    schemas = document["components"]["schemas"]
    assert {"AdminUserRead", "AdminUserDetailRead", "AdminUserPage", "UserBlock", "RoleChange"} <= set(
        schemas
    )
    # The HTML pages are not part of the API.
    assert not any(path.startswith("/admin") for path in paths)
