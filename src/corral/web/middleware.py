"""ASGI middleware: request context and access log, metrics, and security headers.

Written as plain ASGI callables (not BaseHTTPMiddleware) so streaming and WebSocket traffic pass
through untouched and each request costs one function call per layer.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.kit.context import RequestContext, reset_request, set_request
from corral.kit.logging import get_logger
from corral.web.client_ip import Network, client_ip

log = get_logger("corral.http")

REQUESTS = Counter("corral_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("corral_http_request_seconds", "HTTP request latency", ["method", "route"])

# A request id from a trusted proxy is kept only if it looks like one; anything else could smuggle
# text into our logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
}
HSTS = "max-age=63072000; includeSubDomains"
NO_STORE = "no-store"
# Static assets keep the long cache web/static_files.py gives them; nothing else is ever stored.
STATIC_PREFIX = "/static/"


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so metrics do not get one label per server id."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContextMiddleware:
    """Gives every request an id and client IP (in a contextvar), logs it, and counts it."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        client = scope.get("client")
        context = RequestContext(
            request_id=request_id,
            ip=client_ip(
                client[0] if client else None, headers.getlist("x-forwarded-for"), self.trusted_proxies
            ),
            user_agent=headers.get("user-agent"),
        )
        token = set_request(context)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if scope["type"] == "http":
                route = _route_template(scope)
                REQUESTS.labels(scope["method"], route, str(status)).inc()
                LATENCY.labels(scope["method"], route).observe(elapsed)
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 1),
                    ip=context.ip,
                )
            reset_request(token)


def _carries_credentials(headers: Headers) -> bool:
    # Any cookie (session, or the anonymous id a sign-in form's CSRF token is bound to) or token.
    return "cookie" in headers or "authorization" in headers


class SecurityHeadersMiddleware:
    """Adds the strict CSP and the other security headers to every HTTP response, and
    ``Cache-Control: no-store`` to everything but static assets.

    Pages and API answers are per-person and may hold secrets, so neither the browser's cache (the
    back button on a shared computer) nor a proxy may keep them. A response for a request with a
    cookie or a token is always ``no-store``; an anonymous one keeps a Cache-Control it set itself.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers: Iterable[tuple[str, str]] = [
            *SECURITY_HEADERS.items(),
            *([("Strict-Transport-Security", HSTS)] if hsts else []),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].startswith(STATIC_PREFIX)
        credentials = _carries_credentials(Headers(scope=scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name not in response_headers:
                        response_headers[name] = value
                if not static and (credentials or "cache-control" not in response_headers):
                    response_headers["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_with_headers)
