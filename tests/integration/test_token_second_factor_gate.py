"""Issue 10 point 6b: with "customers must have a second factor" on, a customer's API tokens follow
the same gate as a password session: only the account and security endpoints until the account
has a second factor. Before the fix, existing tokens kept every right their scopes gave."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.auth.schemas import ApiTokenCreate
from corral.auth.tokens import api_tokens
from corral.models.users import User, UserRole
from corral.panel_settings.schemas import PanelSettingsUpdate
from corral.panel_settings.service import panel_settings
from corral.rbac.permissions import Permission, permissions_for
from tests.factories.users import create_user
from tests.integration.test_second_factor_sign_in import with_app
from tests.support.admin import People, people_for

SCOPES = [Permission.ACCOUNT_READ, Permission.SERVERS_READ, Permission.SSH_KEYS_MANAGE]


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as found:
        yield found


async def require_second_factor(db: AsyncSession, required: bool) -> None:
    boss = await create_user(db, role=UserRole.SUPER_ADMIN.value)
    admin = Principal.of(boss, permissions_for(boss.role))
    await panel_settings.update(db, admin, PanelSettingsUpdate(require_customer_2fa=required))


async def token_for(db: AsyncSession, user: User, scopes: list[Permission] = SCOPES) -> dict[str, str]:
    principal = Principal.of(user, permissions_for(user.role))
    made = await api_tokens.create(
        db, principal, ApiTokenCreate(name="ci", scopes=scopes, expires_in_days=30)
    )
    return {"Authorization": f"Bearer {made.secret}"}


async def test_a_customer_token_without_a_second_factor_reaches_only_the_account(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    customer = await create_user(db)
    bearer = await token_for(db, customer)  # made before the rule was switched on
    await require_second_factor(db, True)

    for path in ["/api/v1/servers", "/api/v1/account/ssh-keys", "/api/v1/plans"]:
        refused = await client.get(path, headers=bearer)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["code"] == "second_factor_required"
        assert "two-step sign-in" in refused.json()["message"]
    # What the page gate allows, the token still does.
    account = await client.get("/api/v1/account", headers=bearer)
    assert account.status_code == 200
    assert account.json()["id"] == customer.id


async def test_a_customer_with_a_second_factor_keeps_the_token_s_rights(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await require_second_factor(db, True)
    customer, _secret, _codes = await with_app(db)
    bearer = await token_for(db, customer)
    assert (await client.get("/api/v1/servers", headers=bearer)).status_code == 200
    assert (await client.get("/api/v1/account/ssh-keys", headers=bearer)).status_code == 200


async def test_with_the_rule_off_tokens_are_untouched(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await require_second_factor(db, False)
    customer = await create_user(db)
    bearer = await token_for(db, customer)
    assert (await client.get("/api/v1/servers", headers=bearer)).status_code == 200


async def test_the_rule_is_for_customers_only(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await require_second_factor(db, True)
    support = await create_user(db, role=UserRole.SUPPORT.value)
    bearer = await token_for(db, support, [Permission.USERS_READ])
    assert (await client.get("/api/v1/admin/users", headers=bearer)).status_code == 200


async def test_a_password_session_gets_the_same_clear_refusal(people: People, db: AsyncSession) -> None:
    await require_second_factor(db, True)
    customer = await people.sign_in(UserRole.CUSTOMER)
    refused = await customer.client.get("/api/v1/servers")
    assert refused.status_code == 403
    assert refused.json()["code"] == "second_factor_required"
    assert (await customer.client.get("/api/v1/account")).status_code == 200
