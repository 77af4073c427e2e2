"""Encryption at rest for secrets the panel must be able to read back (node credentials).

AES-256-GCM with key ids. ``CORRAL_SECURITY__ENCRYPTION_KEYS`` lists keys as ``id:base64key``
separated by commas; the first encrypts, all decrypt. To rotate: put a new key first, run
``corral admin rotate-keys`` (re-encrypts everything with it), then drop the old key.

A ciphertext is ``v1:<key id>:<nonce>:<ciphertext+tag>`` (base64url). The ``context`` (e.g.
``"node:7:credentials"``) is bound as associated data, so a value copied into another row or
column fails to decrypt instead of being silently accepted.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class KeyringError(ValueError):
    """The key list is malformed; the message names the problem, never a key."""


class DecryptionFailed(ValueError):
    """Wrong key, wrong context, or a tampered value."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key_spec(key_id: str = "k1") -> str:
    """A new ``id:key`` entry for CORRAL_SECURITY__ENCRYPTION_KEYS."""
    return f"{key_id}:{_b64encode(os.urandom(KEY_BYTES))}"


@dataclass(frozen=True)
class Keyring:
    current_id: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for number, entry in enumerate(part.strip() for part in spec.split(",") if part.strip()):
            key_id, separator, encoded = entry.partition(":")
            if not separator or not _KEY_ID.match(key_id):
                raise KeyringError(
                    f"entry {number + 1} must look like id:base64key (id of letters, digits, - or _)"
                )
            if key_id in keys:
                raise KeyringError(f"key id {key_id!r} appears twice")
            try:
                key = _b64decode(encoded)
            except ValueError as error:
                raise KeyringError(f"key {key_id!r} is not base64") from error
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {key_id!r} must be {KEY_BYTES} bytes, not {len(key)}")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise KeyringError("no keys given")
        return cls(current_id=order[0], keys=keys)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current_id]).encrypt(
            nonce, plaintext.encode("utf-8"), context.encode()
        )
        return ":".join((VERSION, self.current_id, _b64encode(nonce), _b64encode(sealed)))

    def decrypt(self, token: str, *, context: str) -> str:
        parts = token.split(":")
        if len(parts) != 4 or parts[0] != VERSION:
            raise DecryptionFailed("not a value this panel encrypted")
        _, key_id, nonce, sealed = parts
        key = self.keys.get(key_id)
        if key is None:
            raise DecryptionFailed(f"encrypted with key {key_id!r}, which is not configured")
        try:
            plaintext = AESGCM(key).decrypt(_b64decode(nonce), _b64decode(sealed), context.encode())
        except (InvalidTag, ValueError) as error:
            raise DecryptionFailed("wrong key or context, or the value was altered") from error
        return plaintext.decode("utf-8")

    def key_id_of(self, token: str) -> str | None:
        parts = token.split(":")
        return parts[1] if len(parts) == 4 and parts[0] == VERSION else None

    def needs_rotation(self, token: str) -> bool:
        return self.key_id_of(token) != self.current_id
