"""Locations as JSON, under /api/v1/admin/locations. Same service as the pages.

Errors are ``{"code", "message", "request_id"}``: 404 ``location_not_found``, 409
``location_slug_taken`` / ``location_in_use``, 422 ``validation_failed`` with field ``errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.locations.schemas import MAX_ID, LocationCreate, LocationRead, LocationUpdate
from corral.locations.service import locations
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/admin/locations", tag="locations", operation_prefix="locations")

LocationId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.LOCATIONS_MANAGE)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
_CONFLICT: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR}


@router.get("", response_model=list[LocationRead])
async def list_locations(session: DbSession, principal: Reader) -> list[LocationRead]:
    """Every location with its node count, active ones first."""
    return [row.read() for row in await locations.list(session, principal)]


@router.post("", response_model=LocationRead, status_code=201, responses={409: _ERROR})
async def create_location(session: DbSession, principal: Manager, data: LocationCreate) -> LocationRead:
    return LocationRead.model_validate(await locations.create(session, principal, data))


@router.get("/{location_id}", response_model=LocationRead, responses=_NOT_FOUND)
async def get_location(session: DbSession, principal: Reader, location_id: LocationId) -> LocationRead:
    return LocationRead.model_validate(await locations.get(session, principal, location_id))


@router.patch("/{location_id}", response_model=LocationRead, responses=_NOT_FOUND)
async def update_location(
    session: DbSession, principal: Manager, location_id: LocationId, data: LocationUpdate
) -> LocationRead:
    """Change the name, country or `active`; the slug never changes."""
    return LocationRead.model_validate(await locations.update(session, principal, location_id, data))


@router.delete("/{location_id}", status_code=204, responses=_CONFLICT)
async def delete_location(session: DbSession, principal: Manager, location_id: LocationId) -> Response:
    """Delete an unused location; one that nodes, servers or IP pools use is a 409 (deactivate it)."""
    await locations.delete(session, principal, location_id)
    return Response(status_code=204)
