"""Expected refusals of the node SSH key operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound, ValidationFailed


class NodeKeyNotFound(NotFound):
    code = "node_key_not_found"
    default_message = "That node SSH key does not exist."


class NodeKeyNameTaken(Conflict):
    code = "node_key_name_taken"
    default_message = "Another node SSH key already has that name."


class NodeKeyInUse(Conflict):
    code = "node_key_in_use"
    default_message = "Nodes still log in with this key: choose another key for them first."


class NodeKeyUnreadable(ValidationFailed):
    code = "node_key_unreadable"
    default_message = (
        "The key's private half cannot be decrypted (its encryption key was removed or the value was"
        " altered): make a new key and choose it for the node."
    )
