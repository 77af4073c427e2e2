"""Random bearer secrets and how they are stored.

A secret handed to a browser or a person (session id, email link token, API token) carries 256
bits of randomness and is stored only as its SHA-256. A fast hash is right here: the input is
random, so there is nothing to brute-force, and lookups stay one indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_BYTES = 32


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def keyed_digest(key: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` for one ``purpose``, so a digest made for one use is useless for another."""
    message = f"{purpose}\x00{value}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
