"""The software authenticator's output verifies with py_webauthn itself, without the panel."""

from __future__ import annotations

import secrets

import pytest
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers.exceptions import InvalidAuthenticationResponse

from tests.support.authenticator import SoftwareAuthenticator, b64url

ORIGIN = "https://panel.test"


def _registration_options(challenge: bytes) -> dict[str, object]:
    return {
        "rp": {"id": "panel.test", "name": "Corral"},
        "user": {"id": b64url(b"handle"), "name": "a@example.com", "displayName": "A"},
        "challenge": b64url(challenge),
    }


def test_registration_and_assertion_verify() -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    challenge = secrets.token_bytes(32)
    registered = verify_registration_response(
        credential=authenticator.create(_registration_options(challenge)),
        expected_challenge=challenge,
        expected_rp_id="panel.test",
        expected_origin=ORIGIN,
        require_user_verification=True,
    )
    assert registered.fmt == "none"
    assert registered.user_verified

    challenge = secrets.token_bytes(32)
    assertion = authenticator.get({"rpId": "panel.test", "challenge": b64url(challenge)}, sign_count=7)
    verified = verify_authentication_response(
        credential=assertion,
        expected_challenge=challenge,
        expected_rp_id="panel.test",
        expected_origin=ORIGIN,
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=0,
        require_user_verification=True,
    )
    assert verified.new_sign_count == 7
    assert assertion["response"]["userHandle"] == b64url(b"handle")
    assert authenticator.replay() == assertion


def test_a_tampered_assertion_does_not_verify() -> None:
    authenticator = SoftwareAuthenticator(origin=ORIGIN)
    challenge = secrets.token_bytes(32)
    registered = verify_registration_response(
        credential=authenticator.create(_registration_options(challenge)),
        expected_challenge=challenge,
        expected_rp_id="panel.test",
        expected_origin=ORIGIN,
    )
    challenge = secrets.token_bytes(32)
    assertion = authenticator.get({"rpId": "panel.test", "challenge": b64url(challenge)})
    # Claim a higher counter than the authenticator signed.
    other = authenticator.get({"rpId": "panel.test", "challenge": b64url(challenge)}, sign_count=99)
    assertion["response"]["authenticatorData"] = other["response"]["authenticatorData"]

    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication_response(
            credential=assertion,
            expected_challenge=challenge,
            expected_rp_id="panel.test",
            expected_origin=ORIGIN,
            credential_public_key=registered.credential_public_key,
            credential_current_sign_count=0,
        )
