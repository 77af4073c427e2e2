"""Step-up and passkey-only staff powers (issue 4, seed 003 §§5 and 7).

- An operator or super-admin signed in with a password alone holds customer permissions only: a
  walk over every route that needs one of their staff permissions finds none that lets them in.
- Staff actions need a passkey step-up from the last five minutes; an older one is refused.
- A customer's sensitive actions need the account's strongest factor, within five minutes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.deps import ACCESS_ATTRIBUTE
from corral.auth.passkeys import passkeys
from corral.auth.principal import Principal
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.auth import UserSession
from corral.models.users import User, UserRole
from corral.panel_settings.schemas import PanelSettingsUpdate
from corral.panel_settings.service import panel_settings
from corral.rbac.permissions import ROLE_PERMISSIONS, Permission, permissions_for
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.admin import People, Person, people_for
from tests.support.auth import ORIGIN, page_token, sign_in
from tests.support.authenticator import SoftwareAuthenticator

OPERATOR_ONLY = ROLE_PERMISSIONS[UserRole.OPERATOR] - ROLE_PERMISSIONS[UserRole.CUSTOMER]
NEW_LOCATION = {"slug": "per1", "name": "Perth", "country_code": "AU"}


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as made:
        yield made


def operator_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route whose access needs a staff permission operators hold."""
    found: list[tuple[str, str]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        dependant = getattr(route, "dependant", None)
        for dependency in dependant.dependencies if dependant is not None else []:
            mark = getattr(dependency.call, ACCESS_ATTRIBUTE, None)
            if mark and mark[0] == "permission" and set(mark[1:]) & OPERATOR_ONLY:
                path = re.sub(r"\{[^}]+\}", "1", str(context.path))
                for method in sorted(getattr(route, "methods", None) or {"GET"}):
                    if method != "HEAD":
                        found.append((method, path))
    return sorted(set(found))


async def session_of(db: AsyncSession, user: User) -> UserSession:
    rows = await db.scalars(
        select(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    )
    return list(rows)[-1]


async def test_an_operator_with_a_password_alone_cannot_perform_any_operator_action(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession
) -> None:
    operator = await create_user(db, role=UserRole.OPERATOR.value)
    assert (await sign_in(client, operator.email, DEFAULT_PASSWORD)).status_code == 303
    dashboard = await client.get("/dashboard")
    assert 'data-testid="elevation-withheld"' in dashboard.text
    csrf = await page_token(client)
    routes = operator_routes(app)
    assert len(routes) > 20  # nodes, locations, templates, IP pools, plans, fleet servers, drift …
    before = await db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))

    outcomes = {
        (method, path): (
            await client.request(method, path, headers={**ORIGIN, "X-CSRF-Token": csrf}, data={})
        ).status_code
        for method, path in routes
    }

    assert {key: status for key, status in outcomes.items() if status != 403} == {}
    after = await db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    assert after == before  # nothing was done, nothing was recorded
    api = await client.get("/api/v1/admin/locations")
    assert api.json()["code"] == "passkey_sign_in_required"


async def test_a_passkey_sign_in_gives_the_operator_their_role(people: People) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    page = await operator.client.get("/admin/nodes")
    assert page.status_code == 200
    assert 'data-testid="elevation-withheld"' not in page.text


async def age_step_up(db: AsyncSession, person: Person, by: timedelta) -> None:
    user_session = await session_of(db, person.user)
    assert user_session.step_up_at is not None
    user_session.step_up_at = utcnow() - by
    await db.flush()


async def passkey_step_up(person: Person) -> httpx.Response:
    assert person.authenticator is not None
    options = await person.client.post("/step-up/passkey/options", json={}, headers=person.headers())
    assert options.status_code == 200
    assertion = person.authenticator.get(options.json())
    return await person.client.post(
        "/step-up/passkey", json={"credential": assertion}, headers=person.headers()
    )


async def test_a_staff_step_up_older_than_five_minutes_is_refused(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await age_step_up(db, operator, timedelta(minutes=5, seconds=5))

    page = await operator.post_htmx("/admin/locations", NEW_LOCATION)
    api = await operator.post_json("/api/v1/admin/locations", NEW_LOCATION)

    assert page.status_code == api.status_code == 403
    assert page.headers["x-corral-step-up"] == "required"
    assert page.headers["hx-retarget"] == "#step-up-body"
    assert 'data-testid="step-up-passkey"' in page.text
    assert "step-up-password" not in page.text  # staff confirm with a passkey only
    assert api.json()["code"] == "step_up_required"
    assert api.json()["details"]["methods"] == ["passkey"]

    assert (await passkey_step_up(operator)).status_code == 200
    done = await operator.post_json("/api/v1/admin/locations", NEW_LOCATION)
    assert done.status_code == 201, done.text
    events = await db.scalars(select(AuditEvent.payload).where(AuditEvent.action == "auth.step_up"))
    assert [event["method"] for event in events] == ["passkey"]


async def test_a_step_up_within_five_minutes_is_accepted(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    await age_step_up(db, operator, timedelta(minutes=4, seconds=50))
    assert (await operator.post_json("/api/v1/admin/locations", NEW_LOCATION)).status_code == 201


async def test_a_passkey_of_someone_else_cannot_step_up(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    other = await people.sign_in(UserRole.OPERATOR)
    await age_step_up(db, operator, timedelta(minutes=6))
    options = await operator.client.post("/step-up/passkey/options", json={}, headers=operator.headers())
    assert other.authenticator is not None
    forged = other.authenticator.get({**options.json(), "allowCredentials": []})

    refused = await operator.client.post(
        "/step-up/passkey", json={"credential": forged}, headers=operator.headers()
    )

    assert refused.status_code == 400
    assert (await operator.post_json("/api/v1/admin/locations", NEW_LOCATION)).status_code == 403
    failures = await db.scalars(
        select(AuditEvent.reason).where(
            AuditEvent.action == "auth.passkey.authenticate", AuditEvent.result == "failure"
        )
    )
    assert list(failures) == ["credential_not_for_user"]


async def test_a_customer_without_a_second_factor_steps_up_with_the_password(
    people: People, db: AsyncSession
) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    token_form = {"name": "deploy", "scopes": "account:read", "expires_in_days": "30"}
    # Signing in with the password was this account's strongest proof: fresh for five minutes.
    assert (await customer.post_htmx("/account/security/tokens", token_form)).status_code == 200
    await age_step_up(db, customer, timedelta(minutes=6))

    refused = await customer.post_htmx("/account/security/tokens", {**token_form, "name": "second"})
    assert refused.status_code == 403
    assert 'data-testid="step-up-password"' in refused.text
    wrong = await customer.post_htmx("/step-up/password", {"password": "not the password at all"})
    assert wrong.status_code == 401
    assert "not right" in wrong.text
    right = await customer.post_htmx("/step-up/password", {"password": DEFAULT_PASSWORD})
    assert right.status_code == 200
    assert right.headers["hx-trigger"] == "corral:stepped-up"

    again = await customer.post_htmx("/account/security/tokens", {**token_form, "name": "second"})
    assert again.status_code == 200


async def test_a_customer_with_a_passkey_must_step_up_with_it(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    principal = Principal.of(customer.user, permissions_for(customer.user.role))
    key = SoftwareAuthenticator()
    await passkeys.finish_registration(
        db, principal, key.create(await passkeys.registration_options(db, principal)), name="k"
    )

    refused = await customer.post_htmx("/account/security/tokens", {"name": "x", "scopes": "account:read"})
    password = await customer.post_htmx("/step-up/password", {"password": DEFAULT_PASSWORD})

    assert refused.status_code == 403
    assert 'data-testid="step-up-passkey"' in refused.text
    assert password.status_code == 401  # a password never stands in for an existing passkey


async def test_changing_the_password_needs_a_fresh_step_up(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    await age_step_up(db, customer, timedelta(minutes=10))
    form = {
        "current_password": DEFAULT_PASSWORD,
        "password": "a brand new passphrase 42",
        "password_confirm": "a brand new passphrase 42",
    }
    page = await customer.post_form("/account/password", form)
    assert page.status_code == 403
    assert 'data-testid="step-up"' in page.text  # the full-page prompt for a plain form
    # A plain form's prompt posts normally and then returns to the page the form was on.
    assert 'action="/step-up/password"' in page.text


async def test_the_panel_can_require_customers_to_enrol_a_second_factor(
    people: People, db: AsyncSession
) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    admin = Principal.of(boss.user, permissions_for(boss.user.role))
    await panel_settings.update(db, admin, PanelSettingsUpdate(require_customer_2fa=True))
    customer = await people.sign_in(UserRole.CUSTOMER)

    dashboard = await customer.client.get("/dashboard")
    servers = await customer.client.get("/api/v1/servers")
    totp_page = await customer.client.get("/account/security/totp")

    assert 'data-testid="must-enrol"' in dashboard.text
    assert servers.status_code == 403
    assert totp_page.status_code == 200
    # Staff are not customers: the setting does not touch them.
    assert (await boss.client.get("/admin/settings")).status_code == 200


async def test_expired_challenges_are_pruned(db: AsyncSession) -> None:
    from corral.auth import repository
    from corral.models.mfa import WebAuthnChallenge

    user = await create_user(db)
    now = utcnow()
    db.add_all(
        [
            WebAuthnChallenge(
                challenge_hash="a" * 64, purpose="authenticate", expires_at=now - timedelta(days=2)
            ),
            WebAuthnChallenge(
                challenge_hash="b" * 64,
                purpose="step_up",
                user_id=user.id,
                expires_at=now + timedelta(minutes=5),
            ),
        ]
    )
    await db.flush()
    removed = await repository.prune_challenges(db, now - timedelta(days=1))
    left = await db.scalars(select(WebAuthnChallenge.challenge_hash))
    assert removed == 1
    assert list(left) == ["b" * 64]


def test_the_permission_walk_sees_the_fleet_routes(app: FastAPI) -> None:
    paths = {path for _method, path in operator_routes(app)}
    assert "/admin/nodes" in paths
    assert any(path.startswith("/api/v1/admin/ip-pools") for path in paths)
    assert Permission.NODES_MANAGE in OPERATOR_ONLY
