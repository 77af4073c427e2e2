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
    # No server can be moved between nodes, and a deleted server's record keeps its node: once a
    # node has had a server it stays. Say what an operator can do instead.
    default_message = (
        "This node cannot be deleted: servers have been placed on it, and their records (deleted "
        "servers' too) keep it. Put it in maintenance so no new server is placed on it."
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


class ConnectionNotSet(PanelError):
    """A node from before structured connections whose old address could not be converted."""

    status_code = 409
    code = "node_connection_not_set"
    default_message = "The node's connection must be entered again (transport, host, login, key)."
