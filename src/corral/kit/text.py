"""Free text as the panel accepts it: no control characters, ever.

A NUL byte cannot be stored in PostgreSQL text (the insert fails), and other control characters
break logs, emails, headers and terminals. Every request field that takes free text is typed with
one of these, so the refusal is a 422 that names the field, decided before any service runs:

- ``SingleLine``: no control character at all (tab and line breaks included);
- ``MultiLine``: line breaks (CR, LF) allowed, no other control character. Add
  ``NORMALISED_NEWLINES`` as the *last* item of the field's ``Annotated`` to store ``\\n`` only.

The rule is a regular-expression ``pattern`` on purpose: pydantic applies it inside the string
validator, so it composes with ``StringConstraints``/``Field``/``Form``/``Query`` in any order (a
validator function would stop later ``strip_whitespace`` and length limits from applying in
order), and the OpenAPI schema states it. A field that needs its own, stricter pattern (a slug,
say) keeps that one instead. :func:`control_character_message` turns pydantic's "should match
pattern" into words for the error responses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

# Unicode category Cc: the C0 controls, DEL and the C1 controls.
SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
MULTI_LINE_PATTERN = r"^[^\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
_MESSAGES = {
    SINGLE_LINE_PATTERN: "Must not contain control characters (such as NUL, tab or a line break).",
    MULTI_LINE_PATTERN: "Must not contain control characters other than line breaks (such as NUL or tab).",
}
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control_characters(value: str, *, multiline: bool = False) -> bool:
    """Whether ``value`` holds a control character (CR and LF excepted when ``multiline``)."""
    pattern = _CONTROL_BUT_LINE_BREAKS if multiline else CONTROL_CHARACTERS
    return pattern.search(value) is not None


def normalise_newlines(value: str) -> str:
    """Browsers send a textarea's line breaks as CRLF; the panel stores LF."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def control_character_message(error: Mapping[str, Any]) -> str | None:
    """Words for a pydantic error raised by one of these types, None for any other error."""
    if error.get("type") != "string_pattern_mismatch":
        return None
    context = error.get("ctx") or {}
    return _MESSAGES.get(str(context.get("pattern", "")))


SingleLine = Annotated[str, StringConstraints(pattern=SINGLE_LINE_PATTERN)]
MultiLine = Annotated[str, StringConstraints(pattern=MULTI_LINE_PATTERN)]
NORMALISED_NEWLINES = AfterValidator(normalise_newlines)
