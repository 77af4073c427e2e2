"""Cookies set by the auth layer, written by a middleware so they survive any response type.

FastAPI drops cookies set on an injected ``Response`` when a handler returns its own response
object (a redirect, a rendered page), so handlers and dependencies only *ask* for a cookie through
``request.state`` and this middleware writes it onto whatever response goes out.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.config import Settings

_PENDING = "corral_pending_cookies"


@dataclass(frozen=True)
class CookieNames:
    session: str
    anonymous: str
    # Names a password sign-in waiting for its second factor (five minutes).
    second_factor: str


def cookie_names(settings: Settings) -> CookieNames:
    # The __Host- prefix makes browsers refuse the cookie unless it is Secure, host-only and Path=/,
    # so a sibling subdomain cannot plant one.
    prefix = "__Host-" if settings.web.secure_cookies else ""
    return CookieNames(
        session=f"{prefix}corral_session",
        anonymous=f"{prefix}corral_anon",
        second_factor=f"{prefix}corral_2fa",
    )


@dataclass(frozen=True)
class PendingCookie:
    name: str
    value: str | None  # None deletes the cookie
    max_age: int | None = None


def set_cookie(connection: HTTPConnection, name: str, value: str, max_age: int | None = None) -> None:
    _pending(connection).append(PendingCookie(name, value, max_age))


def delete_cookie(connection: HTTPConnection, name: str) -> None:
    _pending(connection).append(PendingCookie(name, None))


def _pending(connection: HTTPConnection) -> list[PendingCookie]:
    pending: list[PendingCookie] | None = getattr(connection.state, _PENDING, None)
    if pending is None:
        pending = []
        setattr(connection.state, _PENDING, pending)
    return pending


def _header(cookie: PendingCookie, secure: bool) -> str:
    value = cookie.value if cookie.value is not None else ""
    parts = [f"{cookie.name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if cookie.value is None:
        parts.append("Max-Age=0")
    elif cookie.max_age is not None:
        parts.append(f"Max-Age={cookie.max_age}")
    return "; ".join(parts)


class CookieMiddleware:
    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The same dict request.state writes into, created before the app runs so we can read it.
        state: dict[str, object] = scope.setdefault("state", {})

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                pending = state.get(_PENDING)
                if isinstance(pending, list) and pending:
                    headers = MutableHeaders(scope=message)
                    for cookie in pending:
                        headers.append("Set-Cookie", _header(cookie, self.secure))
                    # Responses that set a session must never be stored by a shared cache.
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_cookies)
