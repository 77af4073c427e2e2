"""The admin user operations as JSON, under /api/v1/admin. Same service as the pages.

Errors are ``{"code", "message", "request_id"}``: 404 ``user_not_found``, 409 for conflicts
(``last_super_admin``, ``already_blocked`` …), 422 ``validation_failed`` with field ``errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from corral.admin.schemas import (
    MAX_USER_ID,
    AdminUserDetailRead,
    AdminUserPage,
    AdminUserRead,
    EmailActionRead,
    RoleChange,
    UserBlock,
    UserFilter,
    UserUnblock,
)
from corral.admin.service import admin_users
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.openapi import api_router

router = api_router("/api/v1/admin", tag="admin", operation_prefix="admin")

UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID)]
Reader = Annotated[Principal, require(Permission.USERS_READ)]
Blocker = Annotated[Principal, require(Permission.USERS_READ, Permission.USERS_BLOCK)]
RoleSetter = Annotated[Principal, require(Permission.USERS_READ, Permission.USERS_ROLES)]
Approver = Annotated[Principal, require(Permission.USERS_READ, Permission.USERS_APPROVE)]

_ERROR = {"description": "`{code, message, request_id}`"}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
_CONFLICT: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR}
_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    **_CONFLICT,
    429: {"description": "`{code, message, request_id}`; the `Retry-After` header says when to try again"},
}


@router.get("/users", response_model=AdminUserPage)
async def list_users(
    session: DbSession, principal: Reader, filters: Annotated[UserFilter, Query()]
) -> AdminUserPage:
    """Users, newest first, matching `q` (part of the email or name), `status` and `role`."""
    page = await admin_users.search(session, principal, filters)
    return page.read()


@router.get("/users/{user_id}", response_model=AdminUserDetailRead, responses=_NOT_FOUND)
async def get_user(session: DbSession, principal: Reader, user_id: UserId) -> AdminUserDetailRead:
    detail = await admin_users.detail(session, principal, user_id)
    return detail.read()


@router.post("/users/{user_id}/block", response_model=AdminUserRead, responses=_CONFLICT)
async def block_user(
    session: DbSession, principal: Blocker, user_id: UserId, data: UserBlock
) -> AdminUserRead:
    """Block the account and end all its sessions now. A reason is required."""
    user = await admin_users.block(session, principal, user_id, data)
    return AdminUserRead.model_validate(user)


@router.post("/users/{user_id}/unblock", response_model=AdminUserRead, responses=_CONFLICT)
async def unblock_user(
    session: DbSession, principal: Blocker, user_id: UserId, data: UserUnblock | None = None
) -> AdminUserRead:
    """Lift a block: the account returns to the state it was blocked from."""
    user = await admin_users.unblock(session, principal, user_id, data or UserUnblock())
    return AdminUserRead.model_validate(user)


@router.post("/users/{user_id}/role", response_model=AdminUserRead, responses=_CONFLICT)
async def change_role(
    session: DbSession, principal: RoleSetter, user_id: UserId, data: RoleChange
) -> AdminUserRead:
    """Change the account's role (super admins only). The last active super admin stays one."""
    user = await admin_users.change_role(session, principal, user_id, data)
    return AdminUserRead.model_validate(user)


@router.post("/users/{user_id}/approve", response_model=AdminUserRead, responses=_CONFLICT)
async def approve_user(session: DbSession, principal: Approver, user_id: UserId) -> AdminUserRead:
    """Approve an account waiting for approval; its owner is emailed."""
    user = await admin_users.approve(session, principal, user_id)
    return AdminUserRead.model_validate(user)


@router.post("/users/{user_id}/verify-email", response_model=EmailActionRead, responses=_CONFLICT)
async def mark_email_verified(session: DbSession, principal: Approver, user_id: UserId) -> EmailActionRead:
    """Mark the account's email verified, as if its owner had followed the link (audited). An
    address already verified is left alone: `outcome` is `already_verified`. Only a super admin
    can vouch for a staff account's address (403 `protected_user`); blocked accounts are a 409."""
    done = await admin_users.mark_email_verified(session, principal, user_id)
    return done.read()


@router.post("/users/{user_id}/resend-verification", response_model=EmailActionRead, responses=_RATE_LIMITED)
async def resend_verification(session: DbSession, principal: Approver, user_id: UserId) -> EmailActionRead:
    """Email the account a new verification link; earlier links stop working. 409
    `email_already_verified` when there is nothing to verify; 429 `verification_recently_sent`
    within a minute of the last link, whoever asked for it."""
    done = await admin_users.resend_verification(session, principal, user_id)
    return done.read()
