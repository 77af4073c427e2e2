"""Errors of the passkey (WebAuthn) ceremonies, each with a stable code for the browser script."""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound, PanelError


class PasskeyRejected(PanelError):
    """The browser's response did not verify; ``details["reason"]`` says why (for logs, not users)."""

    status_code = 400
    code = "passkey_rejected"
    default_message = "That passkey could not be verified. Try again."


class PasskeyChallengeInvalid(PasskeyRejected):
    code = "passkey_challenge_invalid"
    default_message = "This passkey prompt has expired or was already used. Start again."


class PasskeyCloneSuspected(PasskeyRejected):
    code = "passkey_clone_suspected"
    default_message = (
        "This passkey's signature counter went backwards, which suggests it was copied. "
        "It was refused; remove it and register a new one."
    )


class PasskeyAlreadyRegistered(Conflict):
    code = "passkey_already_registered"
    default_message = "That passkey is already registered."


class PasskeyNotFound(NotFound):
    code = "passkey_not_found"
    default_message = "That passkey does not exist."
