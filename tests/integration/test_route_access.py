"""Deny by default: every route, for every HTTP method, declares a permission or is explicitly public."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount

from corral.auth.deps import ACCESS_ATTRIBUTE

# Public by design, declared here because they are not our handlers: static assets and the OpenAPI
# document carry no data.
PUBLIC_MOUNTS = {"/static"}
PUBLIC_BUILTINS = {"/api/v1/openapi.json"}


def _access_marks(dependant: Dependant) -> Iterator[tuple[Any, ...]]:
    for dependency in dependant.dependencies:
        mark = getattr(dependency.call, ACCESS_ATTRIBUTE, None)
        if mark is not None:
            yield mark
        yield from _access_marks(dependency)


def route_table(app: FastAPI) -> list[tuple[str, set[str], list[tuple[Any, ...]]]]:
    table = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            table.append((route.path, {"*"}, [("public",)] if route.path in PUBLIC_MOUNTS else []))
        elif isinstance(route, APIRoute | APIWebSocketRoute):
            methods = set(getattr(route, "methods", None) or {"WEBSOCKET"})
            table.append((str(context.path), methods, list(_access_marks(context.dependant))))
        else:
            path = str(getattr(route, "path", route))
            table.append((path, {"?"}, [("public",)] if path in PUBLIC_BUILTINS else []))
    return table


def test_every_route_declares_its_access(app: FastAPI) -> None:
    table = route_table(app)
    assert len(table) > 5, "the walk found too few routes to be walking the real table"
    undeclared = [f"{sorted(methods)} {path}" for path, methods, marks in table if not marks]
    assert undeclared == [], f"routes without require(...) or PUBLIC: {undeclared}"
    ambiguous = [path for path, _, marks in table if len({mark[0] for mark in marks}) > 1]
    assert ambiguous == [], f"routes both public and permission-guarded: {ambiguous}"


def test_the_walk_catches_an_undeclared_route(app: FastAPI) -> None:
    @app.get("/test/undeclared")
    async def undeclared() -> dict[str, str]:
        return {}

    paths = [path for path, _, marks in route_table(app) if not marks]
    assert "/test/undeclared" in paths


GUARDED_PAGES = ["/dashboard"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", GUARDED_PAGES)
async def test_guarded_pages_refuse_anonymous_requests_for_every_method(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers={"Origin": "https://panel.test"})
    # Anonymous GETs are sent to sign in; other methods are refused outright (405 is also a refusal:
    # the route does not accept them at all). Never a 2xx.
    assert response.status_code in (303, 401, 403, 405), (method, response.status_code)
    if response.status_code == 303:
        assert response.headers["location"].startswith("/login?next=")
