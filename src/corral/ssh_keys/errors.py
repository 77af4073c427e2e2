"""Expected refusals of the SSH key operations, each with a stable ``code``."""

from __future__ import annotations

from typing import Any

from corral.kit.errors import Conflict, NotFound, ValidationFailed

# A ceiling per account: far more than anyone pastes by hand, low enough that a script or a leaked
# token cannot fill the table (every key is offered in the server wizard).
MAX_KEYS_PER_ACCOUNT = 50


class InvalidSshKey(ValidationFailed):
    """The pasted text is not one acceptable OpenSSH public key; the message says what to fix."""

    code = "invalid_ssh_key"
    default_message = "That is not an OpenSSH public key."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={"field": "public_key", **(details or {})})


class InvalidSshKeyName(ValidationFailed):
    code = "invalid_ssh_key_name"
    default_message = "Give the key a name of 1-100 characters."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={"field": "name", **(details or {})})


class SshKeyNotFound(NotFound):
    code = "ssh_key_not_found"
    default_message = "That SSH key does not exist on your account."


class SshKeyDuplicate(Conflict):
    code = "ssh_key_duplicate"
    default_message = "This key is already on your account."


class TooManySshKeys(Conflict):
    code = "too_many_ssh_keys"
    default_message = f"You already have {MAX_KEYS_PER_ACCOUNT} SSH keys; delete one you no longer use."
