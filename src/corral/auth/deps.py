"""The one gate every route passes: who is asking, is the request forged, may they do this.

Every route declares its access with exactly one of:

- ``require(Permission.X, …)``: a signed-in user (session or API token) holding those permissions;
  as a parameter ``principal: Annotated[Principal, require(...)]`` or in ``dependencies=[...]``;
- ``PUBLIC``: anyone, signed in or not (``OptionalPrincipal`` gives the principal if there is one).

A test walks the route table and fails on any route that declares neither. Both run the same
checks for every HTTP method, so a HEAD or PUT cannot slip past a check written for POST:
the session or token is resolved, then CSRF is enforced on every unsafe method of a
cookie-authenticated or anonymous request, then permissions are checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.cookies import cookie_names, set_cookie
from corral.auth.errors import (
    CsrfRejected,
    ElevationWithheld,
    InvalidBearerToken,
    MissingPermission,
    NotAuthenticated,
    SecondFactorRequired,
)
from corral.auth.principal import Principal
from corral.auth.secrets import keyed_digest, new_secret, same
from corral.auth.service import auth
from corral.auth.step_up import step_up as step_up_service
from corral.config import Settings
from corral.rbac.permissions import STAFF_PERMISSIONS, Permission
from corral.web.deps import DbSession

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
ACCESS_ATTRIBUTE = "__corral_access__"
_RESOLVED = "corral_principal_resolved"

# Documentation only: every route behind require() thereby carries the Bearer security requirement
# in the OpenAPI document (and web.openapi declares its 401 and 403), whichever router it is on.
# With auto_error off it never refuses anything; resolve_principal() decides.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="crl_…",
    description=(
        "A personal access token made under Account → Security (or POST /api/v1/account/tokens), "
        "sent as `Authorization: Bearer crl_…`. It acts with its scopes, limited to what its "
        "owner's role allows at the time of the request."
    ),
)
_BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


@dataclass
class CsrfContext:
    """Produces the request's CSRF token on demand (templates ask for it when they render a form)."""

    secret_key: str
    session_hash: str | None
    anonymous_id: str | None
    request: Request

    def token(self) -> str:
        if self.session_hash is not None:
            return keyed_digest(self.secret_key, "csrf-session", self.session_hash)
        if self.anonymous_id is None:
            # First form for this browser: give it an anonymous id to bind the token to.
            self.anonymous_id = new_secret()
            settings: Settings = self.request.app.state.settings
            set_cookie(self.request, cookie_names(settings).anonymous, self.anonymous_id)
        return keyed_digest(self.secret_key, "csrf-anonymous", self.anonymous_id)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def resolve_principal(request: Request, session: AsyncSession) -> Principal | None:
    """Authenticate the request once (cached on request.state) and prepare its CSRF context."""
    if getattr(request.state, _RESOLVED, False):
        principal: Principal | None = request.state.principal
        return principal
    settings: Settings = request.app.state.settings
    names = cookie_names(settings)
    principal = None
    bearer = _bearer(request)
    if bearer is not None:
        principal = await auth.authenticate_token(session, bearer)
        if principal is None:
            # A bad token is an error in itself, never a silent fall-back to anonymous.
            raise InvalidBearerToken()
    else:
        secret = request.cookies.get(names.session)
        found = await auth.authenticate_session(session, secret) if secret else None
        if found is not None:
            principal = found.principal
            if found.rotated_secret is not None:
                set_cookie(request, names.session, found.rotated_secret, _session_max_age(settings))
    request.state.principal = principal
    request.state.csrf = CsrfContext(
        secret_key=settings.security.secret_key.get_secret_value(),
        session_hash=principal.session.token_hash if principal and principal.session else None,
        anonymous_id=request.cookies.get(names.anonymous),
        request=request,
    )
    setattr(request.state, _RESOLVED, True)
    return principal


def _session_max_age(settings: Settings) -> int:
    return settings.auth.session_lifetime_hours * 3600


def same_site_origin(settings: Settings, origin: str | None) -> bool:
    """Whether an Origin (or Referer) header names this panel: its public URL or a trusted origin.

    Used for CSRF on unsafe methods and, by the console, against cross-site WebSocket hijacking.
    """
    return bool(origin) and _origin(origin or "") in _allowed_origins(settings)


def _allowed_origins(settings: Settings) -> set[str]:
    origins = {_origin(settings.web.public_url)}
    origins.update(_origin(extra) for extra in settings.web.trusted_origins)
    return origins


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def enforce_csrf(request: Request, principal: Principal | None) -> None:
    if request.method in SAFE_METHODS:
        return
    if principal is not None and principal.token is not None:
        return  # bearer tokens are not sent by browsers on their own, so they cannot be forged
    settings: Settings = request.app.state.settings
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not same_site_origin(settings, origin):
        raise CsrfRejected("This request did not come from this panel's own pages.")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    csrf: CsrfContext = request.state.csrf
    if csrf.session_hash is None and csrf.anonymous_id is None:
        raise CsrfRejected()
    if not sent or not same(sent, csrf.token()):
        raise CsrfRejected()


def _mark(dependency: Callable[..., Awaitable[Any]], access: tuple[str, ...]) -> None:
    setattr(dependency, ACCESS_ATTRIBUTE, access)


def require(*permissions: Permission, step_up: bool = False) -> Any:
    """A dependency admitting only a signed-in principal holding every one of ``permissions``.

    Sensitive routes pass ``step_up=True``: they also need a recent step-up (auth.step_up). Any
    unsafe request to a route needing a staff permission needs a recent passkey step-up anyway.
    """
    staff = any(permission in STAFF_PERMISSIONS for permission in permissions)

    async def dependency(request: Request, session: DbSession, _documented: _BearerDoc) -> Principal:
        principal = await resolve_principal(request, session)
        if principal is None:
            raise NotAuthenticated()
        await enforce_csrf(request, principal)
        if not all(principal.can(permission) for permission in permissions):
            if principal.elevation_withheld:
                raise ElevationWithheld()
            if principal.must_enrol_second_factor:
                raise SecondFactorRequired()
            raise MissingPermission()
        if step_up or (staff and request.method not in SAFE_METHODS):
            await step_up_service.ensure(session, principal, staff_action=staff)
        return principal

    _mark(dependency, ("permission", *permissions))
    return Depends(dependency)


async def _public(request: Request, session: DbSession) -> Principal | None:
    principal = await resolve_principal(request, session)
    await enforce_csrf(request, principal)
    return principal


_mark(_public, ("public",))
PUBLIC: Any = Depends(_public)
OptionalPrincipal = Annotated[Principal | None, PUBLIC]


async def _machine() -> None:
    """Nothing to check, and nothing looked at: no cookie, no token, no database."""


# Probes for load balancers and Prometheus (/health, /ready, /metrics): public, and blind to any
# Authorization header or cookie, so a stale token in a monitor's config can never turn a health
# check into a 401 or a redirect.
_mark(_machine, ("public", "machine"))
MACHINE: Any = Depends(_machine)
