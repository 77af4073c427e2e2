"""Personal access tokens, and the session controls of the account security page.

A token's secret is ``crl_`` plus 256 random bits. It is returned once, when the token is made;
the database keeps only its SHA-256 (the same hash ``auth.authenticate_token`` looks up) and a
short display prefix. A token can only be given permissions its maker holds at that moment, and
at use it never gets more than its owner's role allows that day (``auth.authenticate_token``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth import repository
from corral.auth.principal import Principal
from corral.auth.schemas import AccountSessionRead, ApiTokenCreate, ApiTokenRead
from corral.auth.secrets import new_secret, secret_hash
from corral.auth.service import auth
from corral.kit.clock import utcnow
from corral.kit.errors import Conflict, NotFound, ValidationFailed
from corral.models.auth import ApiToken
from corral.rbac.permissions import Permission

# Recognisable in logs, config files and secret scanners; never part of the randomness.
TOKEN_PREFIX = "crl_"  # noqa: S105 (a marker, not a secret)
# "crl_" and 8 random characters (48 bits): enough to tell a person's tokens apart at a glance,
# leaving over 200 bits of the secret unknown.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
# A ceiling on live tokens per account, so a leaked token cannot mint thousands of others.
MAX_USABLE_TOKENS = 50


class ApiTokenNotFound(NotFound):
    code = "api_token_not_found"
    default_message = "That API token does not exist or has already been revoked."


class ScopeNotAllowed(ValidationFailed):
    code = "scope_not_allowed"
    default_message = "A token can only be given permissions your account holds."


class ApiTokenNameTaken(Conflict):
    code = "api_token_name_taken"
    default_message = "You already have a token with that name; choose another or revoke the old one."


class TooManyApiTokens(Conflict):
    code = "too_many_api_tokens"
    default_message = f"You already have {MAX_USABLE_TOKENS} tokens; revoke one you no longer use."


@dataclass(frozen=True)
class NewApiToken:
    token: ApiToken
    # The only copy of the secret there will ever be.
    secret: str


class ApiTokenService:
    def grantable_scopes(self, principal: Principal) -> list[Permission]:
        """What a new token may carry: what the requester holds now (for a token, its own scopes)."""
        return [permission for permission in Permission if principal.can(permission)]

    async def create(self, session: AsyncSession, principal: Principal, data: ApiTokenCreate) -> NewApiToken:
        # principal.permissions, not the role's: what this principal may do now is the ceiling.
        # (Only a browser session gets here: creation needs a step-up, which a token cannot do.)
        missing = sorted(set(data.scopes) - principal.permissions)
        if missing:
            listed = ", ".join(missing)
            raise ScopeNotAllowed(
                f"Your account does not hold {listed}, so a token cannot be given it.",
                details={"field": "scopes", "scopes": [str(scope) for scope in missing]},
            )
        now = utcnow()
        if await repository.api_token_name_in_use(session, principal.user_id, data.name, now):
            raise ApiTokenNameTaken(details={"field": "name"})
        if await repository.count_usable_api_tokens(session, principal.user_id, now) >= MAX_USABLE_TOKENS:
            raise TooManyApiTokens()

        secret = TOKEN_PREFIX + new_secret()
        token = ApiToken(
            user_id=principal.user_id,
            name=data.name,
            prefix=secret[:DISPLAY_PREFIX_LENGTH],
            token_hash=secret_hash(secret),
            scopes=[str(scope) for scope in data.scopes],
            created_at=now,
            expires_at=now + timedelta(days=data.expires_in_days) if data.expires_in_days else None,
        )
        session.add(token)
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "auth.token.create",
            target=Target(type="api_token", id=token.id),
            payload={
                "name": token.name,
                "prefix": token.prefix,
                "scopes": token.scopes,
                "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            },
        )
        return NewApiToken(token=token, secret=secret)

    async def list(self, session: AsyncSession, principal: Principal) -> Sequence[ApiToken]:
        return await repository.own_api_tokens(session, principal.user_id)

    async def revoke(self, session: AsyncSession, principal: Principal, token_id: int) -> None:
        # Selected through the owner's id: another user's token is indistinguishable from none.
        token = await repository.own_api_token(session, principal.user_id, token_id)
        if token is None:
            raise ApiTokenNotFound()
        token.revoked_at = utcnow()
        await audit.record(
            session,
            principal.actor,
            "auth.token.revoke",
            target=Target(type="api_token", id=token.id),
            payload={"name": token.name, "prefix": token.prefix},
        )


@dataclass(frozen=True)
class SecurityOverview:
    sessions: list[AccountSessionRead]
    tokens: list[ApiTokenRead]
    grantable_scopes: list[Permission]


class AccountSecurityService:
    """What the security page shows and the session actions ``AuthService`` lacks."""

    async def sessions(self, session: AsyncSession, principal: Principal) -> list[AccountSessionRead]:
        current = principal.session.id if principal.session is not None else None
        listed = [
            AccountSessionRead.model_validate(row).model_copy(update={"current": row.id == current})
            for row in await auth.list_sessions(session, principal)
        ]
        # This browser first, then the rest as listed (most recently active first).
        return sorted(listed, key=lambda item: not item.current)

    async def overview(self, session: AsyncSession, principal: Principal) -> SecurityOverview:
        tokens = await api_tokens.list(session, principal) if principal.can(Permission.TOKENS_MANAGE) else []
        return SecurityOverview(
            sessions=await self.sessions(session, principal),
            tokens=[ApiTokenRead.model_validate(token) for token in tokens],
            grantable_scopes=api_tokens.grantable_scopes(principal),
        )


api_tokens = ApiTokenService()
account_security = AccountSecurityService()
