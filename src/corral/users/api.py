"""JSON API for the signed-in user's own account (session cookie or an API token with these scopes)."""

from __future__ import annotations

from typing import Annotated

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.users.profile import profile
from corral.users.schemas import AccountRead, AccountUpdate
from corral.web.deps import DbSession
from corral.web.openapi import api_router

router = api_router("/api/v1", tag="account", operation_prefix="account")


@router.get("/account", response_model=AccountRead)
async def read_account(
    session: DbSession, principal: Annotated[Principal, require(Permission.ACCOUNT_READ)]
) -> AccountRead:
    """Your own account. Needs the ``account:read`` permission (API token scope)."""
    return await profile.read(session, principal)


@router.patch("/account", response_model=AccountRead)
async def update_account(
    data: AccountUpdate,
    session: DbSession,
    principal: Annotated[Principal, require(Permission.ACCOUNT_UPDATE)],
) -> AccountRead:
    """Change your name. Needs ``account:update``. Email and password are changed on the account
    page, which asks for the current password and confirms a new address by email."""
    return await profile.update(session, principal, data)
