from __future__ import annotations

from corral.kit.errors import Conflict, NotFound, ValidationFailed


class ServerNotFound(NotFound):
    code = "server_not_found"
    default_message = "That server does not exist, or you cannot see it."


class NoCapacity(Conflict):
    code = "no_capacity"
    default_message = "There is no room for a server of this size in that location."


class NoNodeAvailable(Conflict):
    """No node of the location is online (all down or in maintenance): not "full", and worth
    trying again later, unlike NoCapacity."""

    code = "no_node_available"
    default_message = (
        "No server node is available in that location right now; try again shortly or pick another location."
    )


class ServerBusy(Conflict):
    code = "server_busy"
    default_message = "Another operation on this server is still running; wait for it to finish."


class InvalidServerState(Conflict):
    code = "invalid_server_state"
    default_message = "The server is not in a state that allows this."


class TemplateNotOffered(Conflict):
    code = "template_not_offered"
    default_message = "That operating system is not available where this server runs."


class ServerSuspended(Conflict):
    """Staff suspended the server: the owner may look, not act (power, console, reinstall)."""

    code = "server_suspended"
    default_message = "This server is suspended."

    @classmethod
    def because(cls, reason: str | None) -> ServerSuspended:
        return cls(f"This server is suspended: {reason}" if reason else None)


class AlreadySuspended(Conflict):
    code = "server_already_suspended"
    default_message = "This server is already suspended."


class NotSuspended(Conflict):
    code = "server_not_suspended"
    default_message = "This server is not suspended."


class CancellationExists(Conflict):
    code = "cancellation_exists"
    default_message = "This server is already cancelled."


class CancellationNotRevocable(Conflict):
    code = "cancellation_not_revocable"
    default_message = "This cancellation can no longer be revoked."


class NoCancellation(Conflict):
    code = "no_cancellation"
    default_message = "This server has no pending cancellation."


class CancellationNotGivenUp(Conflict):
    """Only a cancellation the processor stopped retrying can be retried by staff."""

    code = "cancellation_not_given_up"
    default_message = (
        "This server has no cancellation that was given up; only a deletion the processor "
        "stopped retrying can be retried."
    )


class ServerBeingDeleted(Conflict):
    code = "server_being_deleted"
    default_message = "This server is being deleted; nothing more can be done with it."


class CancellationNotConfirmed(ValidationFailed):
    """An immediate cancellation needs the server's name typed back, so it is never a slip."""

    code = "cancellation_not_confirmed"
    default_message = "Type the server's name exactly to confirm an immediate deletion."


class ServerLimitReached(Conflict):
    """A customer already has as many servers as the panel's ``customer_server_limit`` allows."""

    code = "server_limit_reached"
    default_message = "You have reached your limit of servers."


class ReinstallNotConfirmed(ValidationFailed):
    """A reinstall wipes the disk, so the hostname is typed back to confirm it."""

    code = "reinstall_not_confirmed"
    default_message = "Type the server's hostname exactly to confirm the reinstall."


class NoWayToSignIn(ValidationFailed):
    """A setup or reinstall that would leave a server nobody can sign in to: no SSH key (saved or
    pasted) and no root password. One rule for the wizard, the reinstall form and the API; the
    schema (``ServerSetupCreate``) and the service (``ServerService``) both apply it."""

    code = "no_login_method"
    default_message = (
        "Give at least one way to sign in to the server: an SSH key (ssh_key_ids or ssh_keys) "
        "or a root_password."
    )
