"""The OpenAPI document: the account API is described, says how to authenticate, and holds no pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

OPENAPI = "/api/v1/openapi.json"
ACCOUNT_OPERATIONS = {
    ("/api/v1/account/sessions", "get"),
    ("/api/v1/account/sessions/{session_id}", "delete"),
    ("/api/v1/account/sessions/revoke-all", "post"),
    ("/api/v1/account/tokens", "get"),
    ("/api/v1/account/tokens", "post"),
    ("/api/v1/account/tokens/{token_id}", "delete"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
async def schema(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(OPENAPI)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_the_account_endpoints_are_documented(schema: dict[str, Any]) -> None:
    found = operations(schema)
    assert set(found) >= ACCOUNT_OPERATIONS
    for key in ACCOUNT_OPERATIONS:
        assert found[key]["tags"] == ["account"], key
        assert found[key]["operationId"].startswith("account_"), key
    created = found[("/api/v1/account/tokens", "post")]
    assert set(created["responses"]) >= {"201", "401", "403", "409", "422"}
    assert created["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApiTokenCreate")
    assert found[("/api/v1/account/tokens/{token_id}", "delete")]["responses"].keys() >= {"204", "404"}


def test_the_schemas_are_named_for_their_use(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert {"ApiTokenCreate", "ApiTokenRead", "ApiTokenCreated", "AccountSessionRead", "ErrorRead"} <= set(
        components
    )
    # The secret is only in the creation answer, never in what a list returns.
    assert "token" in components["ApiTokenCreated"]["properties"]
    assert "token" not in components["ApiTokenRead"]["properties"]
    assert "token_hash" not in components["ApiTokenRead"]["properties"]
    assert {"code", "message"} <= set(components["ErrorRead"]["required"])
    # Scopes are the permission names, listed, so clients know every valid value.
    assert "tokens:manage" in components["Permission"]["enum"]
    session_fields = components["AccountSessionRead"]["properties"]
    assert {"current", "device", "ip", "last_seen_at"} <= set(session_fields)


def test_the_document_says_how_to_authenticate(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert "Authorization: Bearer" in schemes["bearerAuth"]["description"]
    found = operations(schema)
    for key in ACCOUNT_OPERATIONS:
        assert {"bearerAuth": []} in found[key]["security"], key


def test_no_html_route_is_in_the_document(app: FastAPI, schema: dict[str, Any]) -> None:
    documented = set(schema["paths"])
    # Every HTML page of the app (the probes are JSON, and documented on purpose).
    pages = {
        str(context.path)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and not str(context.path).startswith("/api/")
        and str(context.path) not in {"/health", "/ready"}
    }
    assert "/account/security" in pages
    assert documented.isdisjoint(pages), documented & pages
    for (path, method), operation in operations(schema).items():
        for response in operation["responses"].values():
            assert "text/html" not in response.get("content", {}), (path, method)
    assert all(path.startswith("/api/") or path in {"/health", "/ready"} for path in documented), documented
