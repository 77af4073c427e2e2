"""HTTP answers the framework leaves wrong or vague, made right in one place for every route.

- **405 and ``Allow``.** Starlette answers a known path with an unknown method from the first
  route whose path matched, so ``Allow`` named only that route's methods when several routes share
  a path (``GET``, ``POST`` and ``DELETE`` of one resource are three routes). :func:`allowed_methods`
  collects every route's.
- **Integer ids match digits only.** ``/sessions/{session_id}`` also matched
  ``/sessions/revoke-all``, so a ``DELETE`` there was a 422 about ``session_id`` instead of a 405.
  :func:`digits_only_ids` makes every ``int`` path parameter match digits only, so a literal
  sibling path is never taken for an id, and a path with a non-numeric id is a plain 404.
- **A body that cannot be read.** FastAPI answers a JSON syntax error with a 422 but a body that
  is not UTF-8 with a bare 400, and a JSON route sent a form or plain text with a pydantic message
  about "dictionaries". Every one of these is the same mistake for a client, so each is a 422
  ``validation_failed`` with one field error on ``body`` of type ``json_invalid``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, compile_path
from starlette.types import Scope

BODY_NOT_JSON = "json_invalid"
SEND_JSON = "Send the body as a JSON object, in UTF-8, with Content-Type: application/json."


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route accepts at this request's path, sorted (for an ``Allow`` header).

    ``routes`` is the app's (``app.routes``); included routers are walked route by route.
    """
    methods: set[str] = set()
    for context in iter_route_contexts(routes):
        accepted = context.methods
        if not accepted:
            continue
        match, _ = context.matches(scope)
        if match is not Match.NONE:
            methods.update(accepted)
    return sorted(methods)


def digits_only_ids(routes: Sequence[BaseRoute]) -> None:
    """Make the ``int`` path parameters of ``routes`` match digits only (``{id}`` → ``{id:int}``).

    Called on each router's own routes before the app includes it (it is idempotent: the routers
    are module-level and tests build many apps). The documented path (``path_format``, what
    OpenAPI shows) stays as written; FastAPI still validates the value's range afterwards.
    """
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        path = route.path
        for param in route.dependant.path_params:
            if param.field_info.annotation is int:
                path = path.replace(f"{{{param.name}}}", f"{{{param.name}:int}}")
        if path != route.path:
            route.path = path
            route.path_regex, route.path_format, route.param_convertors = compile_path(path)


def is_unreadable_body(error: HTTPException) -> bool:
    """Whether FastAPI raised ``error`` because the request body could not be decoded.

    FastAPI turns any exception while reading the body (other than a JSON syntax error) into a
    400 raised *from* that exception; no other 400 of this panel has such a cause.
    """
    cause = error.__cause__
    return error.status_code == 400 and cause is not None and not isinstance(cause, HTTPException)


def body_error_message(item: dict[str, Any]) -> str | None:
    """A clear message for a pydantic error about a body that is not JSON, else None.

    ``item`` is one of RequestValidationError.errors(): a JSON syntax error (``json_invalid``),
    or the raw bytes FastAPI hands on when the content type is not JSON.
    """
    location = tuple(item.get("loc", ()))
    if item.get("type") == BODY_NOT_JSON:
        reason = (item.get("ctx") or {}).get("error") or "not valid JSON"
        where = f" (at character {location[1]})" if len(location) > 1 else ""
        return f"The body is not valid JSON: {reason}{where}. {SEND_JSON}"
    if location == ("body",) and isinstance(item.get("input"), bytes | bytearray):
        return SEND_JSON
    return None
