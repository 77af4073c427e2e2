"""JSON API for the signed-in user's own account (session cookie or an API token with these scopes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.users.profile import profile
from corral.users.schemas import AccountRead, AccountUpdate
from corral.web.deps import DbSession

router = APIRouter(prefix="/api/v1", tags=["account"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not signed in, or the API token is invalid"},
    403: {"description": "The session or token lacks the permission"},
}


@router.get("/account", response_model=AccountRead, responses=_ERRORS)
async def read_account(
    session: DbSession, principal: Annotated[Principal, require(Permission.ACCOUNT_READ)]
) -> AccountRead:
    """Your own account. Needs the ``account:read`` permission (API token scope)."""
    return await profile.read(session, principal)


@router.patch(
    "/account",
    response_model=AccountRead,
    responses={**_ERRORS, 422: {"description": "A field breaks a rule"}},
)
async def update_account(
    data: AccountUpdate,
    session: DbSession,
    principal: Annotated[Principal, require(Permission.ACCOUNT_UPDATE)],
) -> AccountRead:
    """Change your name. Needs ``account:update``. Email and password are changed on the account
    page, which asks for the current password and confirms a new address by email."""
    return await profile.update(session, principal, data)
