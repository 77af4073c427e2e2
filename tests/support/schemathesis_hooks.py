"""Checks of our own for the schemathesis run (tests/integration/test_api_fuzz.py), loaded through
``SCHEMATHESIS_HOOKS``.

Schemathesis's ``positive_data_acceptance`` wants every schema-valid request accepted, but a
request can follow the schema and still be refused by a business rule with its own code (a plan
not offered in that location, a public key that does not parse): those 422s and 409s are the API
working. What must never happen is the request *validation* refusing what the schema allows: that
means the schema states a looser limit than the server applies (a name of 256 characters where the
server takes 64). :func:`schema_valid_data_passes_validation` fails exactly on that, for every
rule a JSON Schema keyword can state.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import schemathesis
from pydantic_core.core_schema import ErrorType
from schemathesis import Case, CheckContext, Response

VALIDATION_FAILED = "validation_failed"
# Pydantic's own error types are the keywords a schema states (lengths, patterns, bounds, types,
# enums, required fields) and must carry. Not these: a validator function's own rule (ISO country
# and currency lists, the hostname and display-name rules, a price's decimals for its currency)
# raises value_error or a custom type, and URL/UUID/IP syntax is a `format`, which JSON Schema
# treats as an annotation that generators need not honour. The schema describes those in words.
PYDANTIC_ERRORS = frozenset(get_args(ErrorType))
SEMANTIC_ERRORS = frozenset({"value_error", "assertion_error"})
FORMAT_ERRORS = ("url_", "uuid_")
# JSON numbers past 2**53 are not exact in a double: a generator may round the schema's maximum
# (2**63 - 1) up and draw a number just past it. The limit itself is stated exactly.
EXACT_NUMBERS = 2**53


def _sent(case: Case, item: dict[str, Any]) -> Any:
    """The value the request sent for an error's field (the error body does not echo it)."""
    sources = {"body": case.body, "query": case.query, "path": case.path_parameters}
    value: Any = sources.get(str(item.get("location")))
    for part in str(item.get("field", "")).split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _stateable(case: Case, item: dict[str, Any]) -> bool:
    kind = str(item.get("type"))
    if kind not in PYDANTIC_ERRORS or kind in SEMANTIC_ERRORS or kind.startswith(FORMAT_ERRORS):
        return False
    value = _sent(case, item)
    return not (isinstance(value, int) and abs(value) > EXACT_NUMBERS)


@schemathesis.check
def schema_valid_data_passes_validation(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("code") != VALIDATION_FAILED:
        return None
    broken = [item for item in body.get("errors") or [] if _stateable(case, item)]
    if broken:
        fields = "; ".join(f"{item['field']} ({item['type']}): {item['message']}" for item in broken)
        raise AssertionError(
            "A request the OpenAPI schema allows was refused by validation, so the schema states a "
            f"looser rule than the server applies ({fields})"
        )
    return None
