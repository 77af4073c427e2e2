"""Expected refusals of the location operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound


class LocationNotFound(NotFound):
    code = "location_not_found"
    default_message = "That location does not exist."


class LocationSlugTaken(Conflict):
    code = "location_slug_taken"
    default_message = "Another location already uses that slug."


class LocationInUse(Conflict):
    code = "location_in_use"
    default_message = (
        "Nodes, servers or IP pools still belong to this location: deactivate it instead of deleting it."
    )
