"""The OpenAPI document tells the truth, for every operation, whatever router it is on.

- every secured operation declares its 401 and 403, every operation with input its 422, every
  operation with a path id its 404, all with the one error body the panel sends (``ErrorRead``);
- a body that is not JSON (bad syntax, not UTF-8, another content type) is one declared 422;
- a 405 lists in ``Allow`` every method the path takes;
- a boolean in a JSON body is a JSON boolean: ``"true"``, ``1`` or ``"yes"`` is refused;
- the length limits the schema states are the ones the server applies.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.schemas import API_TOKEN_NAME_MAX
from corral.auth.secrets import new_secret, secret_hash
from corral.kit.clock import utcnow
from corral.models.auth import ApiToken
from corral.models.users import UserRole
from corral.rbac.permissions import permissions_for
from corral.servers.naming import MAX_HOSTNAME
from corral.servers.naming import MAX_NAME as SERVER_NAME_MAX
from corral.ssh_keys.parsing import MAX_INPUT_BYTES
from corral.users.schemas import MAX_NAME_LENGTH
from tests.factories.users import create_user

OPENAPI = "/api/v1/openapi.json"
METHODS = ("get", "put", "post", "delete", "patch")
ERROR_REF = "#/components/schemas/ErrorRead"
# The probes are public on purpose: load balancers call them without credentials.
PUBLIC_PATHS = {"/health", "/ready"}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(OPENAPI)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def bearer(db: AsyncSession, role: UserRole) -> dict[str, str]:
    """An API token of a new user of ``role`` holding every scope of the role (staff tokens need
    no step-up: they are made behind one)."""
    user = await create_user(db, role=role.value)
    secret = new_secret()
    db.add(
        ApiToken(
            user_id=user.id,
            name="contract",
            prefix=secret[:8],
            token_hash=secret_hash(secret),
            scopes=sorted(permissions_for(role.value)),
            created_at=utcnow(),
        )
    )
    await db.flush()
    return {"Authorization": f"Bearer {secret}"}


def concrete(path: str) -> str:
    """The path with every parameter filled in (with an id that need not exist)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def _error_content(response: dict[str, Any]) -> str | None:
    schema: dict[str, str] = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref")


def test_every_operation_declares_the_answers_the_app_gives(document: dict[str, Any]) -> None:
    problems = []
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        if path not in PUBLIC_PATHS and {"bearerAuth": []} not in operation.get("security", []):
            problems.append(f"{where}: no security requirement")
        expected = set()
        if operation.get("security"):
            expected |= {"401", "403"}
        parameters = operation.get("parameters", [])
        if parameters or "requestBody" in operation:
            expected.add("422")
        if any(parameter["in"] == "path" for parameter in parameters):
            expected.add("404")
        if missing := expected - set(responses):
            problems.append(f"{where}: {sorted(missing)} not declared")
        for status, response in responses.items():
            # (/ready's 503 is its readiness report, for load balancers.)
            if int(status) >= 400 and path not in PUBLIC_PATHS and _error_content(response) != ERROR_REF:
                problems.append(f"{where}: {status} is not declared as ErrorRead")
    assert problems == []
    # FastAPI's own error shape is never sent, so it is not in the document either.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_users_and_ip_pool_operations_are_secured(document: dict[str, Any]) -> None:
    for path in ("/api/v1/admin/users", "/api/v1/admin/ip-pools", "/api/v1/account"):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{"bearerAuth": []}], path
        assert {"401", "403"} <= set(operation["responses"]), path


@pytest.mark.parametrize(
    ("content", "content_type", "why"),
    [
        (b'{"name": "Ada', "application/json", "a JSON syntax error"),
        (b'{"name": "\xff\xfe"}', "application/json", "bytes that are not UTF-8"),
        (b"name=Ada", "application/x-www-form-urlencoded", "a form instead of JSON"),
        (b'{"name": "Ada"}', "text/plain", "JSON sent as plain text"),
    ],
)
async def test_a_body_that_is_not_json_is_one_declared_422(
    client: httpx.AsyncClient, db: AsyncSession, content: bytes, content_type: str, why: str
) -> None:
    headers = {**await bearer(db, UserRole.CUSTOMER), "Content-Type": content_type}
    response = await client.patch("/api/v1/account", content=content, headers=headers)
    assert response.status_code == 422, why
    body = response.json()
    assert body["code"] == "validation_failed", why
    [error] = body["errors"]
    assert (error["field"], error["type"], error["location"]) == ("body", "json_invalid", "body"), why
    assert "JSON" in error["message"], why


async def test_a_405_lists_every_method_the_path_takes(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    problems = []
    for path, item in document["paths"].items():
        documented = {method.upper() for method in item if method in METHODS}
        for method in {*(m.upper() for m in METHODS), "OPTIONS"} - documented:
            response = await client.request(method, concrete(path))
            allow = {part.strip() for part in response.headers.get("allow", "").split(",") if part.strip()}
            if response.status_code != 405 or allow != documented:
                problems.append(f"{method} {path}: {response.status_code}, Allow {sorted(allow)}")
    assert problems == []


def _boolean_fields(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    fields = []
    for name, field in schema.get("properties", {}).items():
        kinds = [field, *field.get("anyOf", [])]
        if any(kind.get("type") == "boolean" for kind in kinds):
            fields.append(name)
    return fields


async def test_a_boolean_in_a_json_body_must_be_a_json_boolean(
    client: httpx.AsyncClient, db: AsyncSession, document: dict[str, Any]
) -> None:
    headers = await bearer(db, UserRole.SUPER_ADMIN)
    checked, coerced = [], []
    for path, method, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        for field in _boolean_fields(document, body["schema"]):
            for value in ("true", 1, "yes", "on"):
                response = await client.request(method, concrete(path), json={field: value}, headers=headers)
                refused = response.status_code == 422 and any(
                    error["field"] == field and error["type"] == "bool_type"
                    for error in response.json().get("errors", [])
                )
                checked.append(field)
                if not refused:
                    coerced.append(f"{method.upper()} {path} {field}={value!r}: {response.status_code}")
    assert {"active", "cloud_init", "require_customer_2fa"} <= set(checked)
    assert coerced == []


def _max_length(document: dict[str, Any], schema_name: str, field: str) -> int:
    prop = document["components"]["schemas"][schema_name]["properties"][field]
    kinds = [prop, *prop.get("anyOf", [])]
    [limit] = [kind["maxLength"] for kind in kinds if "maxLength" in kind]
    return int(limit)


def _hostname(length: int) -> str:
    """A valid hostname of exactly ``length`` characters (for the lengths used here)."""
    name = ""
    while len(name) < length:
        room = length - len(name) - (1 if name else 0)
        name += ("." if name else "") + "a" * min(63, room)
    return name


# (schema, field, the limit the server applies, from where the server keeps it)
LIMITS = [
    ("ServerRename", "name", SERVER_NAME_MAX),
    ("ServerOrderCreate", "name", SERVER_NAME_MAX),
    ("ServerSetupCreate", "hostname", MAX_HOSTNAME),
    ("ServerReinstall", "hostname", MAX_HOSTNAME),
    ("AccountUpdate", "name", MAX_NAME_LENGTH),
    ("ApiTokenCreate", "name", API_TOKEN_NAME_MAX),
    ("SshKeyCreate", "public_key", MAX_INPUT_BYTES),
]


def test_the_schema_states_the_servers_own_limits(document: dict[str, Any]) -> None:
    for schema_name, field, limit in LIMITS:
        assert _max_length(document, schema_name, field) == limit, (schema_name, field)


@pytest.mark.parametrize(
    ("method", "path", "field", "limit", "make"),
    [
        ("patch", "/api/v1/servers/1", "name", SERVER_NAME_MAX, lambda n: {"name": "n" * n}),
        ("patch", "/api/v1/account", "name", MAX_NAME_LENGTH, lambda n: {"name": "n" * n}),
        (
            "post",
            "/api/v1/servers/1/setup",
            "hostname",
            MAX_HOSTNAME,
            lambda n: {"template_id": 1, "hostname": _hostname(n), "root_password": "Correct-horse-9"},
        ),
    ],
)
async def test_the_limit_is_inclusive_and_one_more_is_a_422(
    client: httpx.AsyncClient,
    db: AsyncSession,
    method: str,
    path: str,
    field: str,
    limit: int,
    make: Any,
) -> None:
    headers = await bearer(db, UserRole.CUSTOMER)
    at_limit = await client.request(method, path, json=make(limit), headers=headers)
    errors = at_limit.json().get("errors", []) if at_limit.status_code == 422 else []
    # Accepted by validation: it goes on to the service (which may not find server 1: 404).
    assert [error for error in errors if error["field"] == field] == [], at_limit.text
    assert at_limit.status_code in (200, 404), at_limit.text

    over = await client.request(method, path, json=make(limit + 1), headers=headers)
    assert over.status_code == 422
    assert [(e["field"], e["type"]) for e in over.json()["errors"]] == [(field, "string_too_long")]
