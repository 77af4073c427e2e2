"""Who may use which admin route: one table of routes, one table of roles, every combination.

Each route names the capability it needs and how to call it; each case is run anonymously, as every
role, and the outcome must match the capability table below, written out here rather than read
from ROLE_PERMISSIONS so that a change to the role map that widens access fails this test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.users import UserRole, UserStatus
from tests.support.admin import People, people_for, route_paths
from tests.support.auth import ORIGIN

Capability = Literal["read", "block", "approve", "roles"]

# The intended matrix (issue 3): support reads, blocks and approves; billing and operator only
# read; only a super admin changes roles; customers see nothing.
ALLOWED: dict[Capability, frozenset[UserRole]] = {
    "read": frozenset({UserRole.SUPPORT, UserRole.BILLING, UserRole.OPERATOR, UserRole.SUPER_ADMIN}),
    "block": frozenset({UserRole.SUPPORT, UserRole.SUPER_ADMIN}),
    "approve": frozenset({UserRole.SUPPORT, UserRole.SUPER_ADMIN}),
    "roles": frozenset({UserRole.SUPER_ADMIN}),
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{id}" is the target user's id
    needs: Capability
    # The state the target must be in for the action to succeed when allowed.
    target_status: UserStatus = UserStatus.ACTIVE
    target_role: UserRole = UserRole.CUSTOMER
    target_verified: bool = True  # whether the target's email address is verified
    form: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] | None = None
    ok: int = 200

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/")

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


BLOCK = {"reason": "spam from this account"}
ROLE = {"role": "support", "reason": "joined the support team"}
ROUTES = [
    Route("GET", "/admin/users", "read"),
    Route("GET", "/admin/users/{id}", "read"),
    Route("GET", "/admin/users/{id}/block", "block"),
    Route("POST", "/admin/users/{id}/block", "block", form=BLOCK, ok=303),
    Route("GET", "/admin/users/{id}/unblock", "block", target_status=UserStatus.BLOCKED),
    Route("POST", "/admin/users/{id}/unblock", "block", target_status=UserStatus.BLOCKED, ok=303),
    Route("GET", "/admin/users/{id}/role", "roles"),
    Route("POST", "/admin/users/{id}/role", "roles", form=ROLE, ok=303),
    Route("POST", "/admin/users/{id}/approve", "approve", target_status=UserStatus.PENDING_APPROVAL, ok=303),
    # A passkey enrolment link for a staff account without a passkey, shown once to hand over.
    Route(
        "POST",
        "/admin/users/{id}/enrolment-link",
        "roles",
        form={"delivery": "handover"},
        target_role=UserRole.OPERATOR,
    ),
    # Staff vouch for an address or send a new verification link (issue 10, point 8).
    Route(
        "POST",
        "/admin/users/{id}/verify-email",
        "approve",
        target_status=UserStatus.PENDING_VERIFICATION,
        target_verified=False,
        ok=303,
    ),
    Route(
        "POST",
        "/admin/users/{id}/resend-verification",
        "approve",
        target_status=UserStatus.PENDING_VERIFICATION,
        target_verified=False,
        ok=303,
    ),
    Route("GET", "/api/v1/admin/users", "read"),
    Route("GET", "/api/v1/admin/users/{id}", "read"),
    Route("POST", "/api/v1/admin/users/{id}/block", "block", json=BLOCK),
    Route("POST", "/api/v1/admin/users/{id}/unblock", "block", target_status=UserStatus.BLOCKED, json={}),
    Route("POST", "/api/v1/admin/users/{id}/role", "roles", json=ROLE),
    Route("POST", "/api/v1/admin/users/{id}/approve", "approve", target_status=UserStatus.PENDING_APPROVAL),
    Route(
        "POST",
        "/api/v1/admin/users/{id}/verify-email",
        "approve",
        target_status=UserStatus.PENDING_VERIFICATION,
    ),
    Route(
        "POST",
        "/api/v1/admin/users/{id}/resend-verification",
        "approve",
        target_status=UserStatus.PENDING_VERIFICATION,
        target_verified=False,
    ),
]
WHO: list[UserRole | None] = [None, *UserRole]


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


def test_the_matrix_covers_every_admin_route(app: FastAPI) -> None:
    declared = {
        f"{method} {path.replace('{user_id}', '{id}')}"
        for path, methods in route_paths(app).items()
        # This matrix covers the user administration; the fleet's admin pages (nodes, IP pools…)
        # have their own permission tests next to them.
        if path.startswith(("/admin/users", "/api/v1/admin/users"))
        for method in methods
    }
    assert declared == {str(route) for route in ROUTES}


@pytest.mark.parametrize("who", WHO, ids=lambda who: who.value if who else "anonymous")
@pytest.mark.parametrize("route", ROUTES, ids=str)
async def test_access(people: People, route: Route, who: UserRole | None) -> None:
    verified = {} if route.target_verified else {"email_verified_at": None}
    target = await people.user(route.target_role, status=route.target_status.value, **verified)
    path = route.path.replace("{id}", str(target.id))
    if who is None:
        client = await people.client()
        headers = dict(ORIGIN)
        csrf = ""
    else:
        person = await people.sign_in(who)
        client, headers, csrf = person.client, person.headers(), person.csrf

    if route.api:
        body = route.json if route.method == "POST" else None
        response = await client.request(route.method, path, json=body, headers=headers)
    elif route.method == "POST":
        data = {**route.form, "csrf_token": csrf}
        response = await client.request(route.method, path, data=data, headers=ORIGIN)
    else:
        response = await client.request(route.method, path)

    if who is None:
        if route.api:
            assert response.status_code == 401, response.text[:300]
            assert response.json()["code"] == "not_authenticated"
        else:
            assert response.status_code == 303
            assert response.headers["location"].startswith("/login?next=")
    elif who in ALLOWED[route.needs]:
        assert response.status_code == route.ok, response.text[:500]
        if route.ok == 303:
            assert response.headers["location"].startswith(f"/admin/users/{target.id}?done=")
    else:
        assert response.status_code == 403, response.text[:300]
        if route.api:
            assert response.json()["code"] == "missing_permission"


@pytest.mark.parametrize("route", [route for route in ROUTES if route.method == "POST"], ids=str)
async def test_cookie_posts_without_the_csrf_token_are_refused_even_for_a_super_admin(
    people: People, route: Route
) -> None:
    verified = {} if route.target_verified else {"email_verified_at": None}
    target = await people.user(route.target_role, status=route.target_status.value, **verified)
    admin = await people.sign_in(UserRole.SUPER_ADMIN)
    path = route.path.replace("{id}", str(target.id))

    if route.api:
        response = await admin.client.post(path, json=route.json, headers=ORIGIN)
    else:
        response = await admin.client.post(path, data=route.form, headers=ORIGIN)
    forged = await admin.client.post(
        path, data={**route.form, "csrf_token": admin.csrf}, headers={"Origin": "https://evil.test"}
    )

    assert response.status_code == 403
    assert forged.status_code == 403
    await people.db.refresh(target)
    assert target.status == route.target_status
