"""The OpenAPI document, completed with what every operation answers whatever its router says.

Some answers come from the app, not from a handler, so no router should have to remember them:

- an operation with a security requirement (every route behind ``require()``) can answer 401 (no
  valid session or token) and 403 (the permission is missing, or a step-up is needed), and 503
  while the database cannot be reached (the session or token is looked up in it);
- an operation that takes parameters or a body can answer 422 (a field breaks a rule, or the body
  is not JSON), and one with a path parameter 404 (no such object);
- every error under /api has one shape, :class:`ErrorRead` (rendered by corral.web.errors), so
  every 4xx/5xx is declared with it, instead of FastAPI's own ``HTTPValidationError``, which this
  panel never sends.

``install_openapi(app)`` makes ``app.openapi()`` (served at /api/v1/openapi.json) return the
completed document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

_REF_TEMPLATE = "#/components/schemas/{model}"
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
# FastAPI's own validation-error schemas: declared by default, never what this panel answers.
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")
SECURED_RESPONSES: dict[str, str] = {
    "401": "No valid session or token: none was sent, or the token is unknown, expired or revoked.",
    "403": "The account or token lacks the permission, or the action needs a fresh step-up.",
}
UNAVAILABLE_RESPONSE = "The panel cannot reach its database right now; retry after `Retry-After` seconds."
VALIDATION_RESPONSE = "A parameter or a body field breaks a rule, or the body is not a JSON object."
NOT_FOUND_RESPONSE = "Nothing with that id, or nothing you may see (an id that is not a number, too)."


class FieldErrorRead(BaseModel):
    field: str = Field(description="The field's dotted path (`ssh_keys.0`), or `body` for the whole body.")
    message: str
    type: str = Field(description="A stable kind of problem, e.g. `string_too_long`, `json_invalid`.")
    location: str | None = Field(default=None, description="body, query, path, header or cookie.")


class ErrorRead(BaseModel):
    """The body of every error under /api (rendered by corral.web.errors)."""

    code: str = Field(description="Stable machine-readable code, e.g. `api_token_not_found`.")
    message: str = Field(description="A sentence for a person.")
    request_id: str | None = Field(default=None, description="Quote it to support; it is in the logs.")
    errors: list[FieldErrorRead] | None = Field(default=None, description="Per-field problems (422 only).")
    details: dict[str, Any] | None = None


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model="ErrorRead")}}}


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in _METHODS:
                yield operation


def _refers_to_fastapi_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return any(schema.get("$ref", "").endswith(f"/{name}") for name in _FASTAPI_ERROR_SCHEMAS)


def _add_error_schemas(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    generated = ErrorRead.model_json_schema(ref_template=_REF_TEMPLATE)
    for name, definition in generated.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault("ErrorRead", generated)


def _declare(operation: dict[str, Any], status: str, description: str) -> None:
    responses = operation.setdefault("responses", {})
    responses.setdefault(status, {"description": description})


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Declare the app's own answers on every operation (in place; returns ``document``)."""
    _add_error_schemas(document)
    for operation in _operations(document):
        if operation.get("security"):
            for status, description in SECURED_RESPONSES.items():
                _declare(operation, status, description)
            _declare(operation, "503", UNAVAILABLE_RESPONSE)
        parameters = operation.get("parameters", [])
        if parameters or operation.get("requestBody"):
            _declare(operation, "422", VALIDATION_RESPONSE)
        if any(parameter.get("in") == "path" for parameter in parameters):
            _declare(operation, "404", NOT_FOUND_RESPONSE)
        for status, response in operation.get("responses", {}).items():
            is_error = status.isdigit() and int(status) >= 400
            if is_error and ("content" not in response or _refers_to_fastapi_error(response)):
                response["content"] = _error_content()
    still_used = repr(document.get("paths", {}))
    schemas = document["components"]["schemas"]
    for name in _FASTAPI_ERROR_SCHEMAS:
        if name in schemas and f"/{name}'" not in still_used:
            del schemas[name]
    return document


def api_router(
    prefix: str,
    *,
    tag: str,
    operation_prefix: str,
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> APIRouter:
    """A JSON API router: its tag, and stable operation ids for generated clients
    (``<operation_prefix>_<function name>``). The Bearer requirement comes with require(), and
    the answers every operation shares are declared by :func:`complete`, for every router."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        generate_unique_id_function=lambda route: f"{operation_prefix}_{route.name}",
        responses=responses or {},
    )


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the completed document (built once, on first use)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
