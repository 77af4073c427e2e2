"""Locations: list, create, change, deactivate, delete.

Routes already refuse callers without the permission; the service checks again because the JSON
API, the pages and later the CLI all reach it. Every change is audited in its own transaction.
A location that anything refers to is never deleted (409): deactivating it hides it from new
orders and keeps history intact.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.locations import repository
from corral.locations.errors import LocationInUse, LocationNotFound, LocationSlugTaken
from corral.locations.schemas import LocationCreate, LocationRow, LocationUpdate
from corral.models.locations import Location
from corral.rbac.permissions import Permission

# Reading the fleet's places is part of reading the fleet (support answers "where is my server").
READ = Permission.NODES_READ
MANAGE = Permission.LOCATIONS_MANAGE


def _need(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise MissingPermission()


def _target(location: Location) -> Target:
    return Target(type="location", id=location.id)


class LocationService:
    async def list(self, session: AsyncSession, principal: Principal) -> Sequence[LocationRow]:
        _need(principal, READ)
        rows = await repository.list_with_counts(session)
        return [LocationRow(location=location, node_count=count) for location, count in rows]

    async def choices(self, session: AsyncSession, principal: Principal) -> Sequence[Location]:
        """Locations to offer in other forms (a node's location): every one, active first."""
        _need(principal, READ)
        return await repository.list_all(session)

    async def get(self, session: AsyncSession, principal: Principal, location_id: int) -> Location:
        _need(principal, READ)
        location = await repository.get(session, location_id)
        if location is None:
            raise LocationNotFound()
        return location

    async def create(self, session: AsyncSession, principal: Principal, data: LocationCreate) -> Location:
        _need(principal, MANAGE)
        if await repository.get_by_slug(session, data.slug) is not None:
            raise LocationSlugTaken()
        location = Location(**data.model_dump())
        try:
            # A savepoint: a concurrent insert of the same slug fails only this statement.
            async with session.begin_nested():
                await repository.add(session, location)
        except IntegrityError as error:
            raise LocationSlugTaken() from error
        await audit.record(
            session, principal.actor, "location.create", target=_target(location), payload=data.model_dump()
        )
        return location

    async def update(
        self, session: AsyncSession, principal: Principal, location_id: int, data: LocationUpdate
    ) -> Location:
        _need(principal, MANAGE)
        location = await repository.get(session, location_id, for_update=True)
        if location is None:
            raise LocationNotFound()
        changes = {key: value for key, value in data.changes().items() if getattr(location, key) != value}
        if not changes:
            return location
        before = {key: getattr(location, key) for key in changes}
        for key, value in changes.items():
            setattr(location, key, value)
        await session.flush()
        action = "location.update"
        if set(changes) == {"active"}:
            action = "location.activate" if location.active else "location.deactivate"
        await audit.record(
            session,
            principal.actor,
            action,
            target=_target(location),
            payload={"before": before, "after": changes},
        )
        return location

    async def delete(self, session: AsyncSession, principal: Principal, location_id: int) -> None:
        _need(principal, MANAGE)
        location = await repository.get(session, location_id, for_update=True)
        if location is None:
            raise LocationNotFound()
        if await repository.is_used(session, location_id):
            raise LocationInUse()
        try:
            async with session.begin_nested():
                await repository.delete(session, location)
        except IntegrityError as error:
            # Something started using it between the check and the delete.
            raise LocationInUse() from error
        await audit.record(
            session,
            principal.actor,
            "location.delete",
            target=Target(type="location", id=location_id),
            payload={"slug": location.slug, "name": location.name},
        )


locations = LocationService()
