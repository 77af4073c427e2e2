from __future__ import annotations

from corral.kit.errors import Conflict, NotFound


class ServerNotFound(NotFound):
    code = "server_not_found"
    default_message = "That server does not exist, or you cannot see it."


class NoCapacity(Conflict):
    code = "no_capacity"
    default_message = "There is no room for a server of this size in that location right now."


class ServerBusy(Conflict):
    code = "server_busy"
    default_message = "Another operation on this server is still running; wait for it to finish."


class InvalidServerState(Conflict):
    code = "invalid_server_state"
    default_message = "The server is not in a state that allows this."


class TemplateNotOffered(Conflict):
    code = "template_not_offered"
    default_message = "That operating system is not available where this server runs."
