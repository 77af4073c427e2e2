"""Error handling: one error, three shapes.

- ``/api/...`` gets JSON ``{"code", "message", "request_id"}`` (plus ``errors`` for a 422);
- an HTMX request gets the message as a toast (``HX-Trigger``) and ``HX-Reswap: none``, so the
  page it came from stays as it was;
- any other request gets an error page in the panel's look.

An unexpected exception is logged with its traceback and answered with a 500 that shows only the
request id, which is also on the log line, so support can find it. One that is the database
being unreachable (db.outage) is a 503 ``service_unavailable`` with ``Retry-After`` and a "try
again shortly" page instead: nothing is wrong with the request, and the panel recovers by itself.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.db.outage import is_database_unavailable
from corral.kit.context import current_request
from corral.kit.errors import PanelError, ValidationFailed
from corral.kit.logging import get_logger
from corral.kit.text import control_character_message
from corral.web.protocol import (
    BODY_NOT_JSON,
    SEND_JSON,
    allowed_methods,
    body_error_message,
    is_unreadable_body,
)
from corral.web.redirects import local_path, path_of_url
from corral.web.rendering import is_htmx, render, toast

log = get_logger("corral.web.errors")

INTERNAL_ERROR_CODE = "internal_error"
INTERNAL_ERROR_MESSAGE = (
    "Something went wrong on our side and your request was not completed. "
    "Try again in a moment; if it keeps happening, contact support and quote the reference."
)
# Stable codes for the HTTP errors the framework raises by itself (unknown route, wrong method …).
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "service_unavailable",
}
_HTTP_MESSAGES: dict[int, str] = {
    404: "Nothing exists at this address. It may have moved, or the address may be mistyped.",
    405: "That action is not available at this address.",
}
_PAGES: dict[int, str] = {
    403: "errors/403.html",
    404: "errors/404.html",
    500: "errors/500.html",
    503: "errors/503.html",
}
_GENERIC_PAGE = "errors/error.html"
# The code of corral.auth.step_up.StepUpRequired (named here so the web layer needs no auth import).
STEP_UP_REQUIRED = "step_up_required"
# The code of corral.auth.errors.InvalidBearerToken: a page answers it with a 401, never a sign-in
# redirect (signing in cannot fix a bad header, so the browser would loop through /login forever).
INVALID_TOKEN = "invalid_token"  # noqa: S105 (an error code)
DATA_ERROR_CODE = "invalid_value"
DATA_ERROR_MESSAGE = (
    "A value in the request cannot be stored as given (a character that is not allowed, or a "
    "value out of range). Check what was entered and try again."
)
STEP_UP_HEADER = "X-Corral-Step-Up"
UNAVAILABLE_CODE = "service_unavailable"
UNAVAILABLE_MESSAGE = "The panel cannot reach its database; try again shortly."
UNAVAILABLE_RETRY_AFTER = "5"
# Pydantic's first location item says where a field came from; the rest is the field's path.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str
    type: str
    location: str | None = None


@dataclass(frozen=True)
class ErrorInfo:
    status_code: int
    code: str
    message: str
    errors: list[FieldError] = field(default_factory=list)
    details: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


class InputRefused(StarletteHTTPException):
    """Input refused while the request body is being read (web.encoding), answered as ``info``.

    An HTTPException because FastAPI passes those on from body parsing untouched (any other
    exception there becomes a vague 400)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.status_code, info.message)
        self.info = info


def _request_id() -> str | None:
    context = current_request()
    return context.request_id if context else None


def _is_api(request: Request) -> bool:
    path = request.url.path
    if path == "/api" or path.startswith("/api/"):
        return True
    # A page's own script (fetch) that asks for JSON gets errors as JSON too.
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept and not is_htmx(request)


def error_response(request: Request, error: ErrorInfo) -> Response:
    """The response for ``error`` in the shape this request expects."""
    request_id = _request_id()
    headers = dict(error.headers)
    if _is_api(request):
        body: dict[str, Any] = {"code": error.code, "message": error.message, "request_id": request_id}
        if error.errors:
            body["errors"] = [asdict(item) for item in error.errors]
        if error.details:
            body["details"] = dict(error.details)
        return JSONResponse(body, status_code=error.status_code, headers=headers)
    if is_htmx(request):
        message = error.message
        if error.status_code >= 500 and request_id:
            message = f"{message} Reference: {request_id}"
        elif error.errors:
            message = f"{message} " + "; ".join(f"{item.field}: {item.message}" for item in error.errors)
        headers["HX-Reswap"] = "none"
        return toast(Response(status_code=error.status_code, headers=headers), message, "error")
    context = {
        "status_code": error.status_code,
        "code": error.code,
        "message": error.message,
        "errors": error.errors,
        "request_id": request_id,
    }
    template = _PAGES.get(error.status_code, _GENERIC_PAGE)
    return render(request, template, context, status_code=error.status_code, headers=headers)


def _sign_in_first(request: Request, error: PanelError) -> Response:
    """A page that needs a signed-in user sends a person to sign in and back; the API says 401.

    A request with a bad bearer token gets the 401 everywhere: signing in would not remove the
    header, so a redirect to the sign-in page would only lead back here."""
    if _is_api(request) or error.code == INVALID_TOKEN:
        info = _panel_error(error)
        challenge = 'Bearer error="invalid_token"' if error.code == INVALID_TOKEN else "Bearer"
        return error_response(request, replace(info, headers={"WWW-Authenticate": challenge}))
    target = local_path(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    location = f"/login?{urlencode({'next': target})}" if target else "/login"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def _step_up_prompt(request: Request, error: PanelError) -> Response:
    """A sensitive action refused for want of a fresh step-up: show the prompt where it belongs.

    htmx swaps it into the page's dialog (the script lets this 403 swap and replays the action
    once the prompt is completed); a plain request gets a page that returns to ``next``; scripts
    and the API get JSON. Every shape carries the ``X-Corral-Step-Up`` header.
    """
    headers = {STEP_UP_HEADER: "required"}
    if _is_api(request):
        return error_response(request, replace(_panel_error(error), headers=headers))
    context: dict[str, Any] = {
        "methods": list(error.details.get("methods", ["passkey"])),
        "has_passkey": bool(error.details.get("has_passkey")),
        "staff_action": bool(error.details.get("staff_action")),
        "error": None,
    }
    referer = path_of_url(request.headers.get("referer")) or "/dashboard"
    if is_htmx(request):
        headers.update({"HX-Retarget": "#step-up-body", "HX-Reswap": "innerHTML"})
        context.update(inline=True, next=referer)
        return render(request, "auth/_step_up.html", context, status_code=403, headers=headers)
    here = path_of_url(str(request.url)) if request.method == "GET" else None
    context.update(inline=False, next=here or referer)
    return render(request, "auth/step_up.html", context, status_code=403, headers=headers)


def _panel_error(error: PanelError) -> ErrorInfo:
    return ErrorInfo(
        error.status_code, error.code, error.message, details=error.details, headers=error.headers
    )


def _http_error(error: StarletteHTTPException) -> ErrorInfo:
    status = error.status_code
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    detail = error.detail if isinstance(error.detail, str) else ""
    # Starlette fills detail with the status phrase when the raiser gave none; ours reads better.
    message = detail if detail and detail != phrase else _HTTP_MESSAGES.get(status, phrase or "Error")
    return ErrorInfo(
        status,
        _HTTP_CODES.get(status, f"http_{status}"),
        message,
        headers=dict(error.headers or {}),
    )


def _field_errors(error: RequestValidationError) -> list[FieldError]:
    fields = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        location = loc[0] if loc and loc[0] in _LOCATIONS else None
        path = loc[1:] if location else loc
        unreadable = body_error_message(item)
        if unreadable is not None:
            # The body as a whole is at fault (not JSON, or not sent as JSON): one error on it.
            fields.append(FieldError("body", unreadable, BODY_NOT_JSON, "body"))
            continue
        control = control_character_message(item)
        fields.append(
            FieldError(
                field=".".join(path) or (location or "request"),
                message=control or str(item.get("msg", "Invalid value")),
                type="control_characters" if control else str(item.get("type", "value_error")),
                location=location,
            )
        )
    return fields


def _validation_error(error: RequestValidationError) -> ErrorInfo:
    return ErrorInfo(
        ValidationFailed.status_code,
        ValidationFailed.code,
        ValidationFailed.default_message,
        errors=_field_errors(error),
    )


def _unreadable_body() -> ErrorInfo:
    """A body FastAPI could not decode: the same 422 as any other body that is not JSON."""
    unreadable = FieldError("body", SEND_JSON, BODY_NOT_JSON, "body")
    return ErrorInfo(422, ValidationFailed.code, ValidationFailed.default_message, errors=[unreadable])


def _sqlstate(error: BaseException | None) -> str | None:
    # Only the code: the message and the statement can hold the values sent, which stay out of logs.
    return getattr(getattr(error, "diag", None), "sqlstate", None)


def _internal_error() -> ErrorInfo:
    return ErrorInfo(500, INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE)


def _unavailable() -> ErrorInfo:
    return ErrorInfo(
        503, UNAVAILABLE_CODE, UNAVAILABLE_MESSAGE, headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}
    )


def _database_unavailable_response(request: Request, error: BaseException) -> Response:
    """The 503 for an exception nothing handled that is the database being unreachable (see
    db.outage): logged as a warning without a traceback, since an outage is not a bug."""
    log.warning("database_unavailable", path=request.url.path, error=type(error).__name__)
    try:
        return error_response(request, _unavailable())
    except Exception:
        log.exception("error_page_failed", path=request.url.path)
        return PlainTextResponse(UNAVAILABLE_MESSAGE, status_code=503, headers=dict(_unavailable().headers))


def _internal_error_response(request: Request) -> Response:
    try:
        return error_response(request, _internal_error())
    except Exception:
        # The error page itself failed (a broken template, say): still answer, still say which
        # request it was.
        log.exception("error_page_failed", path=request.url.path)
        return PlainTextResponse(
            f"Internal server error. Reference: {_request_id() or 'unknown'}", status_code=500
        )


class UnhandledErrorMiddleware:
    """Turns an unexpected exception into the 500 page inside the request context.

    Starlette sends exceptions without a handler to ServerErrorMiddleware, which sits outside
    every user middleware: by then the request id is gone and the security headers are not
    added. This middleware sits innermost among the user middlewares instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as error:
            if started:
                # Too late for an error page; let the server close the connection (and log it).
                raise
            request = Request(scope)
            if is_database_unavailable(error):
                response = _database_unavailable_response(request, error)
            else:
                log.exception("unhandled_error", method=request.method, path=request.url.path)
                response = _internal_error_response(request)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers and the unhandled-error middleware.

    Call before adding the other middleware: Starlette wraps later middleware around earlier
    ones, and the request context must be outside this one.
    """

    async def panel_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, PanelError)
        if error.status_code == 401:
            return _sign_in_first(request, error)
        if error.code == STEP_UP_REQUIRED:
            return _step_up_prompt(request, error)
        return error_response(request, _panel_error(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if isinstance(error, InputRefused):
            return error_response(request, error.info)
        if error.status_code in (204, 304):
            # These statuses have no body by definition.
            return Response(status_code=error.status_code, headers=error.headers)
        if is_unreadable_body(error):
            return error_response(request, _unreadable_body())
        if error.status_code == 405:
            allow = ", ".join(allowed_methods(request.app.routes, request.scope))
            error.headers = {**(error.headers or {}), "Allow": allow}
        return error_response(request, _http_error(error))

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return error_response(request, _validation_error(error))

    async def data_error(request: Request, error: Exception) -> Response:
        # PostgreSQL refused a value (a NUL byte in text, a number out of range, text that is not
        # an address): the input was bad, not the panel. The schemas refuse most of these first;
        # this keeps any that slip through a 422. The request's transaction was rolled back.
        assert isinstance(error, DataError)
        orig = error.orig
        log.warning("data_error", path=request.url.path, error=type(orig).__name__, sqlstate=_sqlstate(orig))
        return error_response(request, ErrorInfo(422, DATA_ERROR_CODE, DATA_ERROR_MESSAGE))

    async def last_resort(request: Request, error: Exception) -> Response:
        # Reached only for an exception raised outside UnhandledErrorMiddleware (in an outer
        # middleware), or after a response had started.
        if is_database_unavailable(error):
            return _database_unavailable_response(request, error)
        log.error("unhandled_error", path=request.url.path, exc_info=error)
        return _internal_error_response(request)

    app.add_exception_handler(PanelError, panel_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DataError, data_error)
    app.add_exception_handler(Exception, last_resort)
    app.add_middleware(UnhandledErrorMiddleware)
