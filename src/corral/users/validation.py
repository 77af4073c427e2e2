"""Checks on what people type into the account forms, each returning a message for its field.

Services collect the messages of every field and raise ``InvalidAccountInput`` once, before they
write anything, so a form comes back with all of its problems at the same time.
"""

from __future__ import annotations

import re
import unicodedata

from corral.notifications import smtp
from corral.notifications.errors import InvalidEmailAddress
from corral.users.passwords import password_problem
from corral.users.schemas import EMAIL_PATTERN, MAX_EMAIL_LENGTH, MAX_NAME_LENGTH

_EMAIL = re.compile(EMAIL_PATTERN)


def clean_email(value: str) -> tuple[str, str | None]:
    """The address without surrounding spaces, and what is wrong with it (None when nothing is)."""
    email = value.strip()
    if not email:
        return email, "Enter your email address."
    if len(email) > MAX_EMAIL_LENGTH:
        return email, f"Use an address of at most {MAX_EMAIL_LENGTH} characters."
    try:
        # The address must be one we can send to: the mailer refuses what this refuses.
        smtp.validate_address(email)
    except InvalidEmailAddress:
        return email, "Enter an email address such as name@example.com."
    if not _EMAIL.match(email):
        return email, "Enter an email address such as name@example.com."
    return email, None


def clean_name(value: str) -> tuple[str, str | None]:
    name = " ".join(value.split())  # trims, and runs of spaces become one
    # Checked on what was typed: split() would quietly turn a tab, a line break or U+0085 into a
    # space, and control characters are refused everywhere (corral.kit.text), not rewritten.
    if any(unicodedata.category(character) in ("Cc", "Cf", "Cs") for character in value):
        return name, "Use letters, digits, spaces and punctuation only."
    if not name:
        return name, "Enter your name."
    if len(name) > MAX_NAME_LENGTH:
        return name, f"Use at most {MAX_NAME_LENGTH} characters."
    return name, None


def new_password_problems(password: str, confirm: str, *, email: str | None) -> dict[str, str]:
    """Messages for the ``password`` and ``password_confirm`` fields of a new password."""
    problems: dict[str, str] = {}
    problem = password_problem(password, email=email)
    if problem is not None:
        problems["password"] = problem
    elif password != confirm:
        problems["password_confirm"] = "The two passwords do not match."  # noqa: S105 (a message)
    return problems
