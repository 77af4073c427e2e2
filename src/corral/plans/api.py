"""Plans as JSON. ``GET /api/v1/plans`` is the catalogue a signed-in customer orders from; staff
manage plans under ``/api/v1/admin/plans``. Same service as the pages.

Errors are ``{"code", "message", "request_id"}``: 404 ``plan_not_found``, 409 ``plan_slug_taken`` /
``plan_in_use``, 422 ``validation_failed`` with field ``errors`` (or ``unknown_location``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.locations.schemas import MAX_ID
from corral.plans.schemas import PlanCreate, PlanOfferRead, PlanRead, PlanUpdate
from corral.plans.service import plans
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/plans", tag="plans", operation_prefix="plans")
admin_router = api_router("/api/v1/admin/plans", tag="plans", operation_prefix="plans_admin")

PlanId = Annotated[int, Path(ge=1, le=MAX_ID)]
Customer = Annotated[Principal, require(Permission.SERVERS_READ)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.PLANS_MANAGE)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _ERROR}
_CONFLICT: dict[int | str, dict[str, Any]] = {404: _ERROR, 409: _ERROR}


@router.get("", response_model=list[PlanOfferRead])
async def list_offers(session: DbSession, principal: Customer) -> list[PlanOfferRead]:
    """Plans that can be ordered now, cheapest first, each with the active locations offering it."""
    return [offer.read() for offer in await plans.list_orderable(session)]


@admin_router.get("", response_model=list[PlanRead])
async def list_plans(session: DbSession, principal: Reader) -> list[PlanRead]:
    """Every plan, inactive ones included, active first then by price."""
    return [row.read() for row in await plans.list(session, principal)]


@admin_router.post("", response_model=PlanRead, status_code=201, responses={409: _ERROR})
async def create_plan(session: DbSession, principal: Manager, data: PlanCreate) -> PlanRead:
    return (await plans.create(session, principal, data)).read()


@admin_router.get("/{plan_id}", response_model=PlanRead, responses=_NOT_FOUND)
async def get_plan(session: DbSession, principal: Reader, plan_id: PlanId) -> PlanRead:
    return (await plans.get(session, principal, plan_id)).read()


@admin_router.patch("/{plan_id}", response_model=PlanRead, responses=_CONFLICT)
async def update_plan(session: DbSession, principal: Manager, plan_id: PlanId, data: PlanUpdate) -> PlanRead:
    """Change any field; `price` and `currency` go together; `location_ids` replaces the set."""
    return (await plans.update(session, principal, plan_id, data)).read()


@admin_router.delete("/{plan_id}", status_code=204, responses=_CONFLICT)
async def delete_plan(session: DbSession, principal: Manager, plan_id: PlanId) -> Response:
    """Delete a plan no server was ordered on; a used plan is a 409 (deactivate it instead)."""
    await plans.delete(session, principal, plan_id)
    return Response(status_code=204)
