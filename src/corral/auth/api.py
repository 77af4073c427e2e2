"""JSON API for a person's own sessions and personal access tokens, under /api/v1/account.

Every endpoint accepts a browser session (with the CSRF header on unsafe methods) or
``Authorization: Bearer crl_…``. A token acts with its scopes narrowed to its owner's role today.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response, status

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import (
    AccountSessionRead,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    ErrorRead,
    SessionsRevoked,
)
from corral.auth.service import auth
from corral.auth.tokens import account_security, api_tokens
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.openapi import api_router as api_router  # where the domains' API modules import it

_ERROR: dict[str, Any] = {"model": ErrorRead}


_BAD_ID: dict[str, Any] = {**_ERROR, "description": "The id is not a positive 64-bit integer."}
router = api_router("/api/v1/account", tag="account", operation_prefix="account")

SessionsManager = Annotated[Principal, require(Permission.SESSIONS_MANAGE)]
TokensManager = Annotated[Principal, require(Permission.TOKENS_MANAGE)]
# Creating a token hands out a credential: it needs a fresh step-up, and a browser session.
TokenCreator = Annotated[Principal, require(Permission.TOKENS_MANAGE, step_up=True)]
# Ids are bigint; anything outside that range can name no row and must not reach the database.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/sessions", response_model=list[AccountSessionRead])
async def list_sessions(session: DbSession, principal: SessionsManager) -> list[AccountSessionRead]:
    """Your active sign-in sessions, most recently used first. `current` marks the one making the
    request (never set when calling with an API token)."""
    return await account_security.sessions(session, principal)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {**_ERROR, "description": "No such active session of yours."}, 422: _BAD_ID},
)
async def revoke_session(session: DbSession, principal: SessionsManager, session_id: RowId) -> Response:
    """End one of your sessions. Another person's session id answers 404, as an unknown one does."""
    await auth.revoke_session(session, principal, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/sessions/revoke-all", response_model=SessionsRevoked)
async def revoke_all_sessions(session: DbSession, principal: SessionsManager) -> SessionsRevoked:
    """Sign out everywhere: end **every** session of your account, including the one making this
    request if it is a browser session. API tokens are not affected; revoke them separately."""
    return SessionsRevoked(revoked=await auth.sign_out_everywhere(session, principal))


@router.get("/tokens", response_model=list[ApiTokenRead])
async def list_tokens(session: DbSession, principal: TokensManager) -> list[ApiTokenRead]:
    """Your tokens that are not revoked, newest first (expired ones included until revoked).
    Secrets are never shown again after creation."""
    return [ApiTokenRead.model_validate(token) for token in await api_tokens.list(session, principal)]


@router.post(
    "/tokens",
    response_model=ApiTokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {**_ERROR, "description": "A usable token already has that name, or you have too many."},
        422: {**_ERROR, "description": "Invalid fields, or a scope your account does not hold."},
    },
)
async def create_token(
    session: DbSession, principal: TokenCreator, body: ApiTokenCreate, response: Response
) -> ApiTokenCreated:
    """Make a personal access token. The secret is in this response only: store it now.
    Needs a signed-in browser session with a recent step-up: an API token cannot create tokens,
    whatever its scopes (403 `step_up_needs_browser`). Scopes must be permissions you hold."""
    created = await api_tokens.create(session, principal, body)
    # The answer carries a live secret: no cache, proxy or back button may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return ApiTokenCreated(**ApiTokenRead.model_validate(created.token).model_dump(), token=created.secret)


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {**_ERROR, "description": "No such token of yours, or already revoked."}, 422: _BAD_ID},
)
async def revoke_token(session: DbSession, principal: TokensManager, token_id: RowId) -> Response:
    """Revoke a token: it stops working at once. Another person's token id answers 404."""
    await api_tokens.revoke(session, principal, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
