"""Passwords: hashing with argon2id, and the rules a new password must meet.

Hashing uses OWASP's recommended minimum for argon2id (19 MiB, 2 passes, 1 lane). The rules follow
NIST SP 800-63B: a length range, no composition rules, and a refusal of passwords that are known to
be common or that contain the account's own email name.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
# Local parts shorter than this ("al@…") would refuse too many good passwords for no gain.
MIN_LOCAL_PART = 3
COMMON_PASSWORDS_FILE = "common_passwords.txt"
# "dragon2024!" is as guessable as "dragon": attackers append digits and symbols first.
_TRAILING_DECORATION = re.compile(r"[\d\W_]+$")
# A base shorter than this after removing the decoration says nothing ("ab" + "1234567890").
_MIN_DECORATED_BASE = 4

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list (see the header of common_passwords.txt for its origin), lower-cased."""
    text = files("corral.users").joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def is_common(password: str) -> bool:
    folded = password.strip().lower()
    known = common_passwords()
    if folded in known:
        return True
    base = _TRAILING_DECORATION.sub("", folded)
    return base != folded and len(base) >= _MIN_DECORATED_BASE and base in known


def _local_part(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    local = email.strip().rpartition("@")[0].lower()
    return local if len(local) >= MIN_LOCAL_PART else None


def password_problem(password: str, *, email: str | None) -> str | None:
    """Why ``password`` may not be used by the account with ``email``, or None when it may."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    if is_common(password):
        return "This password is on a list of commonly used passwords. Choose another."
    local = _local_part(email)
    if local is not None and local in password.lower():
        return "The password must not contain the name part of your email address."
    return None
