"""A software WebAuthn authenticator (ES256 / P-256) that answers like a browser would.

    authenticator = SoftwareAuthenticator(origin="https://panel.test")
    response = authenticator.create(options)        # navigator.credentials.create(...) .toJSON()
    assertion = authenticator.get(options)          # navigator.credentials.get(...) .toJSON()

Responses are the JSON a browser's ``PublicKeyCredential.toJSON()`` gives: base64url strings for
id, rawId, clientDataJSON, attestationObject / authenticatorData, signature and userHandle.
Registration uses attestation "none". Knobs let a test lie the way a hostile or broken client might:
another ``origin``, ``user_verified=False``, a chosen ``sign_count``; ``replay()`` hands back the
last response unchanged.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40

# The all-zero AAGUID is what authenticators send when they do not identify their model.
ZERO_AAGUID = bytes(16)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass
class StoredCredential:
    """One discoverable credential kept on the authenticator, as a platform authenticator would."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int


def cose_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    return cbor2.dumps(
        {
            1: 2,  # kty: EC2
            3: -7,  # alg: ES256
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


class SoftwareAuthenticator:
    def __init__(self, *, origin: str = "https://panel.test", backup_eligible: bool = False) -> None:
        self.origin = origin
        self.backup_eligible = backup_eligible
        self.credentials: dict[bytes, StoredCredential] = {}
        self.last_response: dict[str, Any] | None = None

    # -- helpers ------------------------------------------------------------------------------

    def _flags(self, *, user_verified: bool, attested: bool) -> int:
        flags = FLAG_UP
        if user_verified:
            flags |= FLAG_UV
        if self.backup_eligible:
            flags |= FLAG_BE | FLAG_BS
        if attested:
            flags |= FLAG_AT
        return flags

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        # Key order and compact separators as browsers emit them; the server must not care.
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            },
            separators=(",", ":"),
        ).encode()

    def _remember(self, response: dict[str, Any]) -> dict[str, Any]:
        self.last_response = copy.deepcopy(response)
        return response

    def replay(self) -> dict[str, Any]:
        """The last response, byte for byte, as an attacker who captured it would send it again."""
        assert self.last_response is not None, "nothing to replay yet"
        return copy.deepcopy(self.last_response)

    # -- navigator.credentials.create -----------------------------------------------------------

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        user_verified: bool = True,
        sign_count: int = 0,
    ) -> dict[str, Any]:
        rp_id: str = options["rp"]["id"]
        excluded = {b64url_decode(c["id"]) for c in options.get("excludeCredentials", [])}
        if excluded & set(self.credentials):
            raise ValueError("InvalidStateError: this authenticator is already registered")
        key = ec.generate_private_key(ec.SECP256R1())
        credential_id = secrets.token_bytes(32)
        self.credentials[credential_id] = StoredCredential(
            credential_id=credential_id,
            private_key=key,
            rp_id=rp_id,
            user_handle=b64url_decode(options["user"]["id"]),
            sign_count=sign_count,
        )
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags(user_verified=user_verified, attested=True)])
            + struct.pack(">I", sign_count)
            + ZERO_AAGUID
            + struct.pack(">H", len(credential_id))
            + credential_id
            + cose_public_key(key)
        )
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return self._remember(
            {
                "id": b64url(credential_id),
                "rawId": b64url(credential_id),
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation_object),
                    "transports": ["internal", "hybrid"],
                },
            }
        )

    # -- navigator.credentials.get --------------------------------------------------------------

    def _pick(self, options: dict[str, Any], credential_id: bytes | None) -> StoredCredential:
        if credential_id is not None:
            return self.credentials[credential_id]
        allowed = {b64url_decode(c["id"]) for c in options.get("allowCredentials", [])}
        for stored in self.credentials.values():
            if stored.rp_id == options["rpId"] and (not allowed or stored.credential_id in allowed):
                return stored
        raise LookupError("NotAllowedError: no credential for this site")

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        user_verified: bool = True,
        sign_count: int | None = None,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """An assertion; the counter goes up by one unless ``sign_count`` says what to report."""
        stored = self._pick(options, credential_id)
        stored.sign_count = stored.sign_count + 1 if sign_count is None else sign_count
        auth_data = (
            hashlib.sha256(stored.rp_id.encode()).digest()
            + bytes([self._flags(user_verified=user_verified, attested=False)])
            + struct.pack(">I", stored.sign_count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = stored.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return self._remember(
            {
                "id": b64url(stored.credential_id),
                "rawId": b64url(stored.credential_id),
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(stored.user_handle),
                },
            }
        )
