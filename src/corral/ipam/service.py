"""IP address management: pools, their addresses, allocation to servers and release.

    from corral.ipam import ipam

    address = await ipam.allocate(session, server_id=server.id, location_id=server.location_id, version=4)
    ...
    await ipam.release_for_server(session, server.id)

Pools: an IPv4 pool stores one row per usable address, made when the pool is created; an IPv6
pool stores a row only for a reserved or allocated address (a /64 is never materialised).

Allocation order is deterministic: the location's pools oldest first; in a pool, the lowest free
address. For IPv6 that is the lowest address without a row (a released IPv6 address loses its row,
so it is found again). Two allocations never get one address: IPv4 takes the row with
``FOR UPDATE SKIP LOCKED``; IPv6 claims the address with a try-only advisory lock and inserts it,
and the unique (pool, address) constraint refuses a duplicate whatever happens above it.

Routes check ``ipam:read`` / ``ipam:manage``; jobs and the CLI are trusted callers. Every change is
audited in the caller's transaction; services flush, the request or job commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.ipam import repository
from corral.ipam.errors import (
    AddressInUse,
    AllocationContended,
    InvalidPool,
    NoPoolInLocation,
    PoolBusy,
    PoolExhausted,
    PoolInUse,
    PoolNameTaken,
    PoolNotFound,
    PoolOverlaps,
)
from corral.ipam.schemas import (
    Address,
    AddressConfig,
    AddressFilter,
    AddressPage,
    AddressRow,
    IpPoolCreate,
    IpPoolUpdate,
    PoolView,
    ServerNetwork,
    Utilisation,
    normalise_reserved,
    reserved_problem,
    usable_bounds,
    usable_count,
)
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.ipam import IpAddress, IpPool
from corral.models.locations import Location

# How many IPv6 candidates one allocation may find claimed by concurrent allocations before it
# gives up; each skip means another transaction is taking that very address at the same moment.
MAX_V6_CLAIM_ATTEMPTS = 256


def _target(pool_id: int) -> Target:
    return Target(type="ip_pool", id=pool_id)


def _texts(addresses: Sequence[Address]) -> list[str]:
    return [str(address) for address in addresses]


class IpamService:
    # ---------- Reading ----------

    async def locations(self, session: AsyncSession) -> list[Location]:
        """Locations a pool can be created in (for the form's choices)."""
        return await repository.locations(session)

    async def pools(self, session: AsyncSession) -> list[PoolView]:
        """Every pool with its utilisation: three queries, whatever the number of pools."""
        found = await repository.pools(session)
        ids = [pool.id for pool, _ in found]
        usage = await repository.usage(session, ids)
        reserved = await repository.extra_reserved(session, ids)
        return [
            PoolView(
                pool=pool,
                location=location,
                reserved=reserved.get(pool.id, []),
                utilisation=Utilisation.of(pool.network, *usage.get(pool.id, (0, 0))),
            )
            for pool, location in found
        ]

    async def pool(self, session: AsyncSession, pool_id: int) -> PoolView:
        found = await repository.get_pool(session, pool_id)
        if found is None:
            raise PoolNotFound()
        pool, location = found
        usage = await repository.usage(session, [pool.id])
        reserved = await repository.extra_reserved(session, [pool.id])
        return PoolView(
            pool=pool,
            location=location,
            reserved=reserved[pool.id],
            utilisation=Utilisation.of(pool.network, *usage.get(pool.id, (0, 0))),
        )

    async def addresses(self, session: AsyncSession, pool_id: int, filters: AddressFilter) -> AddressPage:
        """One page of a pool's stored addresses (for IPv6: the reserved and allocated ones)."""
        if await repository.get_pool(session, pool_id) is None:
            raise PoolNotFound()
        rows, total = await repository.address_page(session, pool_id, filters)
        return AddressPage(rows=[AddressRow(row, name) for row, name in rows], total=total, filters=filters)

    # ---------- Changing pools ----------

    # A change runs in a savepoint: when it is refused half-way (a reserved address turns out to be
    # allocated, a name is taken by a concurrent request), nothing it wrote survives, even when the
    # caller catches the error to show the form again and then commits.

    async def create_pool(self, session: AsyncSession, actor: Actor, data: IpPoolCreate) -> PoolView:
        async with session.begin_nested():
            pool_id = await self._create_pool(session, actor, data)
        return await self.pool(session, pool_id)

    async def update_pool(
        self, session: AsyncSession, actor: Actor, pool_id: int, data: IpPoolUpdate
    ) -> PoolView:
        async with session.begin_nested():
            await self._update_pool(session, actor, pool_id, data)
        return await self.pool(session, pool_id)

    async def _create_pool(self, session: AsyncSession, actor: Actor, data: IpPoolCreate) -> int:
        location = await repository.get_location(session, data.location_id)
        if location is None:
            raise InvalidPool({"location_id": "Choose one of the locations."})
        # Held to the end of the transaction: the overlap check and the insert are one step.
        await repository.lock_pool_creation(session)
        if await repository.name_taken(session, data.name):
            raise PoolNameTaken()
        overlap = await repository.overlapping_pool(session, data.network)
        if overlap is not None:
            raise PoolOverlaps(
                f"{data.network} overlaps the pool {overlap.name} ({overlap.network}); one address"
                " must belong to one pool."
            )
        pool = IpPool(
            name=data.name,
            version=data.network.version,
            network=data.network,
            gateway=data.gateway,
            dns_servers=list(data.dns_servers),
            location_id=location.id,
        )
        await repository.insert_pool(session, pool)
        reserved = normalise_reserved(data.gateway, data.reserved)
        kept = [data.gateway, *reserved]
        if pool.version == 4:
            first, _ = usable_bounds(data.network)
            await repository.materialise_v4(session, pool.id, first, usable_count(data.network), kept)
        else:
            await repository.insert_reserved(session, pool.id, kept)
        await audit.record(
            session,
            actor,
            "ipam.pool.create",
            target=_target(pool.id),
            payload={
                "name": pool.name,
                "network": str(data.network),
                "gateway": str(data.gateway),
                "dns_servers": _texts(data.dns_servers),
                "reserved": _texts(reserved),
                "location_id": location.id,
            },
        )
        return pool.id

    async def _update_pool(
        self, session: AsyncSession, actor: Actor, pool_id: int, data: IpPoolUpdate
    ) -> None:
        pool = await repository.lock_pool(session, pool_id, for_delete=False)
        if pool is None:
            raise PoolNotFound()
        changes: dict[str, object] = {}
        if data.name is not None and data.name != pool.name:
            if await repository.name_taken(session, data.name, other_than=pool.id):
                raise PoolNameTaken()
            changes["name"] = {"from": pool.name, "to": data.name}
            pool.name = data.name
        if data.dns_servers is not None and list(data.dns_servers) != list(pool.dns_servers):
            changes["dns_servers"] = {"from": _texts(pool.dns_servers), "to": _texts(data.dns_servers)}
            pool.dns_servers = list(data.dns_servers)
        if data.reserved is not None:
            changed = await self._replace_reserved(session, pool, data.reserved)
            if changed is not None:
                changes["reserved"] = changed
        if changes:
            await repository.save_pool(session)
            await audit.record(
                session, actor, "ipam.pool.update", target=_target(pool.id), payload={"changes": changes}
            )

    async def _replace_reserved(
        self, session: AsyncSession, pool: IpPool, wanted: Sequence[Address]
    ) -> dict[str, list[str]] | None:
        """Make the pool's extra reserved addresses exactly ``wanted``; None when nothing changed."""
        problem = reserved_problem(pool.network, wanted)
        if problem:
            raise InvalidPool({"reserved": problem})
        wanted = normalise_reserved(pool.gateway, wanted)
        current = (await repository.extra_reserved(session, [pool.id]))[pool.id]
        added = sorted(set(wanted) - set(current), key=int)
        removed = sorted(set(current) - set(wanted), key=int)
        if not added and not removed:
            return None
        if pool.version == 6:
            # Wait for any allocation inserting one of these addresses, then see what it did.
            for address in added:
                await repository.claim_v6(session, pool.id, address, wait=True)
        holders = await repository.holders(session, pool.id, added)
        if pool.version == 4:
            changed = await repository.set_reserved_v4(session, pool.id, added, reserved=True)
            # A row not changed was taken by an allocation that committed while we waited for it.
            holders.update(
                await repository.holders(session, pool.id, sorted(set(added) - set(changed), key=int))
            )
        if holders:
            address, server_id = min(holders.items(), key=lambda item: int(item[0]))
            raise AddressInUse(
                f"{address} is allocated to server #{server_id}; release it before reserving it."
            )
        if pool.version == 4:
            await repository.set_reserved_v4(session, pool.id, removed, reserved=False)
        else:
            await repository.insert_reserved(session, pool.id, added)
            await repository.delete_reserved_v6(session, pool.id, removed)
        return {"added": _texts(added), "removed": _texts(removed)}

    async def delete_pool(self, session: AsyncSession, actor: Actor, pool_id: int) -> None:
        """Delete a pool none of whose addresses is allocated (409 ``ip_pool_in_use`` otherwise)."""
        pool = await repository.lock_pool(session, pool_id, for_delete=True)
        if pool is None:
            raise PoolNotFound()
        allocated = await repository.allocated_count(session, pool.id)
        if allocated:
            raise PoolInUse(
                f"{allocated} address{'es' if allocated != 1 else ''} of {pool.name} "
                f"{'are' if allocated != 1 else 'is'} allocated to servers; release them before deleting it."
            )
        payload = {"name": pool.name, "network": str(pool.network), "location_id": pool.location_id}
        await repository.delete_pool(session, pool.id)
        await audit.record(session, actor, "ipam.pool.delete", target=_target(pool_id), payload=payload)

    # ---------- Allocation (provisioning and destroying servers) ----------

    async def allocate(
        self,
        session: AsyncSession,
        *,
        server_id: int,
        location_id: int,
        version: int,
        actor: Actor | None = None,
    ) -> IpAddress:
        """Give the server one address of ``version`` from the location's pools.

        Idempotent per server and version: when the server already holds such an address in the
        location, that one is returned (a provisioning job that runs again does not take a second).
        Raises NoPoolInLocation when the location has no pool of that version, PoolExhausted when
        every pool is full, PoolBusy (retry) when the only pools with room are being renamed or
        deleted at this moment. Safe to call from any number of transactions at once (for different
        servers; jobs on one server hold its lock). Audited as ``ipam.address.allocate`` (by
        ``actor``, else the system): the audit log is where "who had this address at that time"
        is answered once the address has moved on.
        """
        for row, pool in await repository.addresses_of(session, server_id):
            if pool.version == version and pool.location_id == location_id:
                return row
        now = utcnow()
        every_pool = await repository.pool_ids(session, location_id, version)
        if not every_pool:
            raise NoPoolInLocation(f"Location #{location_id} has no IPv{version} pool.")
        pools = await repository.pools_for_allocation(session, location_id, version)
        taken: IpAddress | None = None
        for pool in pools:
            # A stored free row first: every IPv4 address, or an IPv6 row whose server row was
            # deleted outright (ON DELETE SET NULL) rather than released.
            taken = await repository.take_free(session, pool.id, server_id, now)
            if taken is None and pool.version == 6:
                taken = await self._allocate_v6(session, pool, server_id)
            if taken is not None:
                break
        if taken is None:
            if len(pools) < len(every_pool):
                # A pool was skipped because it is being renamed or deleted: "full" may be untrue.
                raise PoolBusy("An IP pool of this location is being changed right now; try again.")
            raise PoolExhausted(f"Every IPv{version} pool of location #{location_id} is full.")
        await audit.record(
            session,
            actor or Actor.system("ipam.allocate"),
            "ipam.address.allocate",
            target=_target(taken.pool_id),
            payload={"address": str(taken.address), "server_id": server_id},
        )
        return taken

    async def _allocate_v6(self, session: AsyncSession, pool: IpPool, server_id: int) -> IpAddress | None:
        """The lowest address of the pool without a row. A candidate that a concurrent allocation
        has claimed (advisory lock) or already stored (unique constraint) is passed over."""
        start, last = usable_bounds(pool.network)
        for _ in range(MAX_V6_CLAIM_ATTEMPTS):
            candidate = await repository.lowest_unused_v6(session, pool.id, start, last)
            if candidate is None:
                return None
            if await repository.claim_v6(session, pool.id, candidate, wait=False):
                row = await repository.insert_v6_allocation(session, pool.id, candidate, server_id, utcnow())
                if row is not None:
                    return row
            if candidate == last:
                return None
            start = ip_address(int(candidate) + 1)
        raise AllocationContended()

    async def release_for_server(
        self, session: AsyncSession, server_id: int, *, actor: Actor | None = None
    ) -> list[Address]:
        """Return every address of the server to its pool (on destroy). Idempotent: a second call
        releases nothing and records nothing."""
        released = await repository.release(session, server_id)
        for pool_id, address in released:
            await audit.record(
                session,
                actor or Actor.system("ipam.release"),
                "ipam.address.release",
                target=_target(pool_id),
                payload={"address": str(address), "server_id": server_id},
            )
        return [address for _, address in released]

    async def addresses_of(self, session: AsyncSession, server_id: int) -> list[IpAddress]:
        """The server's addresses, IPv4 first, each family in address order."""
        return [row for row, _ in await repository.addresses_of(session, server_id)]

    async def network_config(self, session: AsyncSession, server_id: int) -> ServerNetwork:
        """What the guest needs to configure its addresses (cloud-init): for each address its
        on-link prefix length, the pool's gateway and DNS servers."""
        configs = tuple(
            AddressConfig(
                version=pool.version,
                address=row.address,
                prefix_length=pool.network.prefixlen,
                gateway=pool.gateway,
                dns_servers=tuple(pool.dns_servers),
            )
            for row, pool in await repository.addresses_of(session, server_id)
        )
        return ServerNetwork(addresses=configs)


ipam = IpamService()
