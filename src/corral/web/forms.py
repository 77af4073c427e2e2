"""Helpers shared by the HTML form views: field errors from validation, "done" toasts, and
:class:`FormPage`, how a form page is shown (as opened, or again after a refusal)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from corral.kit.errors import PanelError
from corral.kit.text import control_character_message
from corral.web.rendering import Toast, render

# `?done=<key>` after a redirect names the success message to show (never free text from the URL).
# It is shown once: static/js/corral.js takes it out of the address, so a reload does not repeat it.
Done = Annotated[str | None, Query(max_length=32)]


def field_errors(error: ValidationError, *, hints: Mapping[str, str] | None = None) -> dict[str, str]:
    """{field: first message} for re-rendering a form; a hint for a field replaces pydantic's
    wording, and a list item's error is reported against the list's own field."""
    found: dict[str, str] = {}
    for item in error.errors():
        location = item.get("loc") or ("form",)
        name = str(location[0])
        if hints and name in hints:
            message = hints[name]
        elif item["type"] == "missing":
            message = "This field is required."
        elif (control := control_character_message(item)) is not None:
            message = control
        else:
            message = str(item.get("msg", "Invalid value")).removeprefix("Value error, ")
        found.setdefault(name, message)
    return found


def done_toasts(done: str | None, messages: Mapping[str, str]) -> list[Toast]:
    return [Toast(messages[done])] if done is not None and done in messages else []


def refusal_field(error: PanelError, fields: Mapping[type[PanelError], str] | None = None) -> str:
    """The form field a service refusal is about: the one it names in its details, else the one
    ``fields`` gives for its kind, else the form as a whole."""
    named = error.details.get("field")
    if isinstance(named, str):
        return named
    for kind, name in (fields or {}).items():
        if isinstance(error, kind):
            return name
    return "form"


@dataclass(frozen=True)
class FormPage:
    """How a form page is shown: as first opened (maybe with a "done" toast), or again after a
    refusal with what was typed, the problem beside each field or above the form, and the status."""

    form: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    toasts: list[Toast] = field(default_factory=list)
    refusal: str | None = None  # a message about the whole request, shown above the form
    status_code: int = 200

    @classmethod
    def opened(cls, done: str | None, messages: Mapping[str, str]) -> FormPage:
        return cls(toasts=done_toasts(done, messages))

    @classmethod
    def refused(
        cls,
        form: dict[str, Any],
        error: ValidationError | PanelError,
        *,
        hints: Mapping[str, str] | None = None,
        fields: Mapping[type[PanelError], str] | None = None,
    ) -> FormPage:
        """Invalid input beside its fields (422), or a service refusal beside the field it is about
        (see :func:`refusal_field`) with the refusal's own status."""
        if isinstance(error, ValidationError):
            return cls(form, field_errors(error, hints=hints), status_code=422)
        return cls(form, {refusal_field(error, fields): error.message}, status_code=error.status_code)

    def values(self, initial: dict[str, Any]) -> dict[str, Any]:
        """What the form shows: what was typed, else ``initial`` (blank, or the current values)."""
        return self.form or initial

    def render(self, request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
        """``context`` holds the page's own data, with ``form`` already from :meth:`values`."""
        shown = {"errors": self.errors, "toasts": self.toasts, "refusal": self.refusal, **context}
        return render(request, template, shown, status_code=self.status_code)
