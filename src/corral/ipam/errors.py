"""Expected refusals of IP address management, each with a stable ``code``.

Errors about one field of a pool form carry ``details["fields"]`` ({field: message}), so the HTML
form shows them next to the field and the JSON API says which field to fix.
"""

from __future__ import annotations

from collections.abc import Mapping

from corral.kit.errors import Conflict, NotFound, ValidationFailed


class PoolNotFound(NotFound):
    code = "ip_pool_not_found"
    default_message = "That IP pool does not exist."


class InvalidPool(ValidationFailed):
    """A pool's fields broke a rule that needs the stored pool or other rows to check."""

    code = "ip_pool_invalid"

    def __init__(self, fields: Mapping[str, str], message: str | None = None) -> None:
        self.fields = dict(fields)
        super().__init__(message or "; ".join(self.fields.values()), details={"fields": self.fields})


class _FieldConflict(Conflict):
    """A 409 caused by one form field's value (a taken name, an overlapping network …)."""

    field: str = ""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.details = {"fields": {self.field: self.message}}


class PoolNameTaken(_FieldConflict):
    code = "ip_pool_name_taken"
    field = "name"
    default_message = "Another IP pool already has that name."


class PoolOverlaps(_FieldConflict):
    code = "ip_pool_overlaps"
    field = "network"
    default_message = "That network overlaps an existing IP pool."


class AddressInUse(_FieldConflict):
    code = "ip_address_in_use"
    field = "reserved"
    default_message = "That address is allocated to a server; release it before reserving it."


class PoolInUse(Conflict):
    code = "ip_pool_in_use"
    default_message = "Addresses of this pool are allocated to servers; release them before deleting it."


class PoolBusy(Conflict):
    code = "ip_pool_busy"
    default_message = "This IP pool is being changed by another request right now; try again."


class PoolExhausted(Conflict):
    code = "ip_pool_exhausted"
    default_message = "No free address is left in the IP pools of this location."


class NoPoolInLocation(Conflict):
    code = "no_ip_pool_in_location"
    default_message = "This location has no IP pool of that version."


class AllocationContended(Conflict):
    code = "ip_allocation_contended"
    default_message = "Too many servers are taking IPv6 addresses at once; try again."
