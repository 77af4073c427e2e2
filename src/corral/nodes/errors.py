"""Expected refusals of the node operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound, PanelError, ValidationFailed


class NodeNotFound(NotFound):
    code = "node_not_found"
    default_message = "That node does not exist."


class NodeNameTaken(Conflict):
    code = "node_name_taken"
    default_message = "Another node already has that name."


class NodeInUse(Conflict):
    code = "node_in_use"
    default_message = (
        "Servers still belong to this node: move or delete them first, or put it in maintenance."
    )


class UnknownLocation(ValidationFailed):
    code = "unknown_location"
    default_message = "That location does not exist."


class NodeUnreachable(ValidationFailed):
    """The connection test before saving failed; ``details["error"]`` is the driver's message.

    Saving anyway is allowed with ``allow_unreachable``: the node is then stored offline with the
    error recorded, and the health check brings it online once it answers.
    """

    code = "node_unreachable"
    default_message = "The node did not answer the connection test."


class CapacityUnknown(ValidationFailed):
    code = "capacity_unknown"
    default_message = "Give the node's CPU, memory and disk capacity: the node could not be asked for them."


class EncryptionNotConfigured(PanelError):
    """No usable CORRAL_SECURITY__ENCRYPTION_KEYS: credentials can be neither stored nor read."""

    status_code = 503
    code = "encryption_not_configured"
    default_message = (
        "Node credentials cannot be stored or read: CORRAL_SECURITY__ENCRYPTION_KEYS is not set "
        "or not valid. Run `corral doctor`."
    )
