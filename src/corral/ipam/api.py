"""IP pools as JSON, under /api/v1/admin/ip-pools. Same service as the pages.

Errors are ``{"code", "message", "request_id"}`` (plus ``details.fields`` naming the field to fix):
404 ``ip_pool_not_found``; 409 ``ip_pool_name_taken``, ``ip_pool_overlaps``, ``ip_pool_in_use``,
``ip_address_in_use``, ``ip_pool_busy``; 422 ``validation_failed`` (with ``errors``) or
``ip_pool_invalid``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Response

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.ipam.schemas import (
    MAX_ID,
    AddressFilter,
    IpAddressPage,
    IpPoolCreate,
    IpPoolRead,
    IpPoolUpdate,
)
from corral.ipam.service import ipam
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.openapi import api_router

router = api_router("/api/v1/admin/ip-pools", tag="ipam", operation_prefix="ipam")

PoolId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.IPAM_READ)]
Manager = Annotated[Principal, require(Permission.IPAM_READ, Permission.IPAM_MANAGE)]

_ERROR = {"description": "`{code, message, request_id, details?}`"}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
_CHANGE: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR, 422: _ERROR}


@router.get("", response_model=list[IpPoolRead])
async def list_pools(session: DbSession, principal: Reader) -> list[IpPoolRead]:
    """Every pool, by location, with its utilisation."""
    return [view.read() for view in await ipam.pools(session)]


@router.post("", response_model=IpPoolRead, status_code=201, responses=_CHANGE)
async def create_pool(session: DbSession, principal: Manager, data: IpPoolCreate) -> IpPoolRead:
    """Create a pool. IPv4 addresses are stored at once (up to a /16); IPv6 ones on allocation."""
    view = await ipam.create_pool(session, principal.actor, data)
    return view.read()


@router.get("/{pool_id}", response_model=IpPoolRead, responses=_NOT_FOUND)
async def get_pool(session: DbSession, principal: Reader, pool_id: PoolId) -> IpPoolRead:
    view = await ipam.pool(session, pool_id)
    return view.read()


@router.patch("/{pool_id}", response_model=IpPoolRead, responses=_CHANGE)
async def update_pool(
    session: DbSession, principal: Manager, pool_id: PoolId, data: IpPoolUpdate
) -> IpPoolRead:
    """Rename, change DNS servers, or replace the list of extra reserved addresses."""
    view = await ipam.update_pool(session, principal.actor, pool_id, data)
    return view.read()


@router.delete("/{pool_id}", status_code=204, responses=_CHANGE)
async def delete_pool(session: DbSession, principal: Manager, pool_id: PoolId) -> Response:
    """Delete a pool none of whose addresses is allocated."""
    await ipam.delete_pool(session, principal.actor, pool_id)
    return Response(status_code=204)


@router.get("/{pool_id}/addresses", response_model=IpAddressPage, responses=_NOT_FOUND)
async def list_addresses(
    session: DbSession, principal: Reader, pool_id: PoolId, filters: Annotated[AddressFilter, Query()]
) -> IpAddressPage:
    """Stored addresses in address order (`state`: allocated, free or reserved). An IPv6 pool
    stores only reserved and allocated addresses."""
    page = await ipam.addresses(session, pool_id, filters)
    return page.read()
