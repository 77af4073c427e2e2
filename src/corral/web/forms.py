"""Helpers shared by the HTML form views: field errors from validation, and "done" toasts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Query
from pydantic import ValidationError

from corral.web.rendering import Toast

# `?done=<key>` after a redirect names the success message to show (never free text from the URL).
Done = Annotated[str | None, Query(max_length=32)]


def field_errors(error: ValidationError, *, hints: Mapping[str, str] | None = None) -> dict[str, str]:
    """{field: first message} for re-rendering a form; a hint for a field replaces pydantic's
    wording, and a list item's error is reported against the list's own field."""
    found: dict[str, str] = {}
    for item in error.errors():
        location = item.get("loc") or ("form",)
        field = str(location[0])
        if hints and field in hints:
            message = hints[field]
        elif item["type"] == "missing":
            message = "This field is required."
        else:
            message = str(item.get("msg", "Invalid value")).removeprefix("Value error, ")
        found.setdefault(field, message)
    return found


def done_toasts(done: str | None, messages: Mapping[str, str]) -> list[Toast]:
    return [Toast(messages[done])] if done is not None and done in messages else []
