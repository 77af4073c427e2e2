"""SQL for IP address management. Every value reaches PostgreSQL as a bound parameter.

Locking, in the order a transaction takes the locks (never the other way round, so the pieces
cannot deadlock each other):

- allocation takes ``FOR KEY SHARE SKIP LOCKED`` on its candidate pools, then one free address row
  ``FOR UPDATE SKIP LOCKED`` (IPv4), or a try-only advisory lock per candidate address (IPv6): it
  never waits for another allocation, so N concurrent callers get N different addresses at once;
- an edit takes ``FOR NO KEY UPDATE NOWAIT`` on the pool (allocations carry on, except while a
  rename holds the row FOR UPDATE), a delete ``FOR UPDATE NOWAIT`` (allocations skip the pool and
  say ``PoolBusy`` if no other pool had room); a second editor gets ``PoolBusy`` at once instead
  of a queue that could end in a deadlock with the audit log's append lock;
- creating a pool takes one advisory lock, so two overlapping networks cannot both be checked
  free of overlap and then both inserted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.ipam.errors import PoolBusy, PoolNameTaken
from corral.ipam.schemas import Address, AddressFilter, AddressState, Network
from corral.kit.errors import Busy
from corral.models.ipam import IpAddress, IpPool
from corral.models.locations import Location
from corral.models.servers import Server

# Two-key advisory locks (int4, int4) live apart from the one-key (bigint) locks the audit log and
# the job queue use. The first key names what is locked.
_POOL_CREATE_LOCK = 0x49504D31  # "IPM1": creating pools (overlap check), second key 0
_V6_CLAIM_LOCK = 0x49504D36  # "IPM6": one IPv6 address being allocated, second key a hash of it
_NAME_CONSTRAINT = "uq_ip_pools_name"


# ---------- Locations ----------


async def locations(session: AsyncSession) -> list[Location]:
    statement = select(Location).order_by(Location.name, Location.id)
    return list((await session.scalars(statement)).all())


async def get_location(session: AsyncSession, location_id: int) -> Location | None:
    return await session.get(Location, location_id)


# ---------- Pools ----------


async def lock_pool_creation(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:lock, 0)"), {"lock": _POOL_CREATE_LOCK})


async def overlapping_pool(session: AsyncSession, network: Network) -> IpPool | None:
    """A pool whose network shares any address with ``network`` (the ``&&`` operator)."""
    statement = select(IpPool).where(IpPool.network.op("&&")(network)).order_by(IpPool.id).limit(1)
    return (await session.scalars(statement)).first()


async def _flush_named(session: AsyncSession) -> None:
    """Flush in a savepoint, turning a duplicate pool name into PoolNameTaken (the unique
    constraint decides when two requests race for one name)."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if _NAME_CONSTRAINT in str(error.orig):
            raise PoolNameTaken() from error
        raise


async def name_taken(session: AsyncSession, name: str, *, other_than: int | None = None) -> bool:
    statement = select(IpPool.id).where(IpPool.name == name)
    if other_than is not None:
        statement = statement.where(IpPool.id != other_than)
    return (await session.scalars(statement.limit(1))).first() is not None


async def insert_pool(session: AsyncSession, pool: IpPool) -> None:
    session.add(pool)
    await _flush_named(session)


async def save_pool(session: AsyncSession) -> None:
    await _flush_named(session)


async def materialise_v4(
    session: AsyncSession, pool_id: int, first: Address, count: int, reserved: Sequence[Address]
) -> int:
    """One row per usable address, in a single statement; ``reserved`` ones marked so."""
    result = await session.execute(
        text(
            "INSERT INTO ip_addresses (pool_id, address, reserved)"
            " SELECT :pool_id, CAST(:first AS inet) + g,"
            "        (CAST(:first AS inet) + g) = ANY(CAST(:reserved AS inet[]))"
            " FROM generate_series(0, CAST(:count AS bigint) - 1) AS g"
        ),
        {"pool_id": pool_id, "first": first, "count": count, "reserved": list(reserved)},
    )
    return int(cast(Any, result).rowcount)


async def insert_reserved(session: AsyncSession, pool_id: int, addresses: Sequence[Address]) -> None:
    """Reserved rows of an IPv6 pool (its free addresses have no rows)."""
    if addresses:
        await session.execute(
            insert(IpAddress).on_conflict_do_nothing(constraint="uq_ip_addresses_pool_address"),
            [{"pool_id": pool_id, "address": address, "reserved": True} for address in addresses],
        )


async def pools(session: AsyncSession) -> list[tuple[IpPool, Location]]:
    statement = (
        select(IpPool, Location)
        .join(Location, Location.id == IpPool.location_id)
        .order_by(Location.name, IpPool.version, IpPool.name)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


async def get_pool(session: AsyncSession, pool_id: int) -> tuple[IpPool, Location] | None:
    statement = (
        select(IpPool, Location).join(Location, Location.id == IpPool.location_id).where(IpPool.id == pool_id)
    )
    row = (await session.execute(statement)).first()
    return (row[0], row[1]) if row is not None else None


async def lock_pool(session: AsyncSession, pool_id: int, *, for_delete: bool) -> IpPool | None:
    """The pool row locked for an edit (allocations continue) or a delete (allocations skip it).

    NOWAIT: if another edit or an allocation (for a delete) holds it, raise PoolBusy at once.
    """
    statement = (
        select(IpPool)
        .where(IpPool.id == pool_id)
        .with_for_update(nowait=True, key_share=not for_delete)
        .execution_options(populate_existing=True)
    )
    try:
        async with session.begin_nested():
            return (await session.scalars(statement)).first()
    except Busy as error:  # the engine's name for LockNotAvailable (corral.db.session)
        raise PoolBusy() from error


async def delete_pool(session: AsyncSession, pool_id: int) -> None:
    # The addresses go with it (ON DELETE CASCADE); the caller checked none is allocated.
    await session.execute(delete(IpPool).where(IpPool.id == pool_id))


async def usage(session: AsyncSession, pool_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """{pool id: (allocated, reserved)} in one grouped query."""
    if not pool_ids:
        return {}
    statement = (
        select(
            IpAddress.pool_id,
            func.count().filter(IpAddress.server_id.is_not(None)),
            func.count().filter(IpAddress.reserved),
        )
        .where(IpAddress.pool_id.in_(pool_ids))
        .group_by(IpAddress.pool_id)
    )
    return {
        int(pool): (int(used), int(kept)) for pool, used, kept in (await session.execute(statement)).all()
    }


async def extra_reserved(session: AsyncSession, pool_ids: Sequence[int]) -> dict[int, list[Address]]:
    """{pool id: its reserved addresses other than the gateway, in address order}."""
    if not pool_ids:
        return {}
    statement = (
        select(IpAddress.pool_id, IpAddress.address)
        .join(IpPool, IpPool.id == IpAddress.pool_id)
        .where(IpAddress.pool_id.in_(pool_ids), IpAddress.reserved, IpAddress.address != IpPool.gateway)
        .order_by(IpAddress.pool_id, IpAddress.address)
    )
    found: dict[int, list[Address]] = {pool_id: [] for pool_id in pool_ids}
    for pool_id, address in (await session.execute(statement)).all():
        found[int(pool_id)].append(address)
    return found


async def allocated_count(session: AsyncSession, pool_id: int) -> int:
    statement = (
        select(func.count())
        .select_from(IpAddress)
        .where(IpAddress.pool_id == pool_id, IpAddress.server_id.is_not(None))
    )
    return int((await session.execute(statement)).scalar_one())


async def holders(session: AsyncSession, pool_id: int, addresses: Sequence[Address]) -> dict[Address, int]:
    """Which of ``addresses`` servers hold: {address: server id}."""
    if not addresses:
        return {}
    statement = select(IpAddress.address, IpAddress.server_id).where(
        IpAddress.pool_id == pool_id,
        IpAddress.address.in_(addresses),
        IpAddress.server_id.is_not(None),
    )
    return {address: int(server or 0) for address, server in (await session.execute(statement)).all()}


async def set_reserved_v4(
    session: AsyncSession, pool_id: int, addresses: Sequence[Address], *, reserved: bool
) -> list[Address]:
    """Mark free rows reserved (or reserved rows free); returns the addresses changed. An UPDATE
    waits for an allocation holding one of the rows, then re-checks that it is still free."""
    if not addresses:
        return []
    condition = IpAddress.server_id.is_(None) if reserved else IpAddress.reserved.is_(True)
    statement = (
        update(IpAddress)
        .where(IpAddress.pool_id == pool_id, IpAddress.address.in_(addresses), condition)
        .values(reserved=reserved)
        .returning(IpAddress.address)
        .execution_options(synchronize_session=False)
    )
    return list((await session.scalars(statement)).all())


async def delete_reserved_v6(session: AsyncSession, pool_id: int, addresses: Sequence[Address]) -> None:
    if addresses:
        await session.execute(
            delete(IpAddress)
            .where(
                IpAddress.pool_id == pool_id,
                IpAddress.address.in_(addresses),
                IpAddress.reserved,
                IpAddress.server_id.is_(None),
            )
            .execution_options(synchronize_session=False)
        )


_WAIT_CLAIM = text("SELECT pg_advisory_xact_lock(:lock, hashtext(:key))")
_TRY_CLAIM = text("SELECT pg_try_advisory_xact_lock(:lock, hashtext(:key))")


async def claim_v6(session: AsyncSession, pool_id: int, address: Address, *, wait: bool) -> bool:
    """The advisory lock every writer of an IPv6 row takes first. Allocations only try it (a
    taken lock means another allocation is inserting that address: move on); edits wait for it."""
    values = {"lock": _V6_CLAIM_LOCK, "key": f"{pool_id}/{address}"}
    if wait:
        await session.execute(_WAIT_CLAIM, values)
        return True
    return bool((await session.execute(_TRY_CLAIM, values)).scalar_one())


# ---------- Allocation ----------


async def pools_for_allocation(session: AsyncSession, location_id: int, version: int) -> list[IpPool]:
    """The location's pools, oldest first, each locked FOR KEY SHARE so it cannot be deleted under
    the allocation. A pool locked FOR UPDATE right now (being deleted, or renamed: ``name`` has a
    unique index, so PostgreSQL treats it as a key) is skipped rather than waited for."""
    statement = (
        select(IpPool)
        .where(IpPool.location_id == location_id, IpPool.version == version)
        .order_by(IpPool.id)
        .with_for_update(read=True, key_share=True, skip_locked=True)
    )
    return list((await session.scalars(statement)).all())


async def pool_ids(session: AsyncSession, location_id: int, version: int) -> list[int]:
    """The location's pools of that version, locked or not."""
    statement = select(IpPool.id).where(IpPool.location_id == location_id, IpPool.version == version)
    return list((await session.scalars(statement)).all())


async def take_free(session: AsyncSession, pool_id: int, server_id: int, now: datetime) -> IpAddress | None:
    """Give the lowest free address of the pool to the server, or None when none is free.

    SKIP LOCKED passes over rows other transactions are taking right now; the repeated
    ``server_id IS NULL`` makes the UPDATE itself refuse a row that is no longer free.
    """
    free = (
        select(IpAddress.id)
        .where(IpAddress.pool_id == pool_id, IpAddress.server_id.is_(None), ~IpAddress.reserved)
        .order_by(IpAddress.address)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(IpAddress)
        .where(IpAddress.id == free, IpAddress.server_id.is_(None))
        .values(server_id=server_id, allocated_at=now)
        .returning(IpAddress)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).first()


_NEXT_V6 = text(
    "SELECT candidate FROM ("
    "  SELECT CAST(:start AS inet) AS candidate"
    "  UNION ALL"
    "  SELECT address + 1 FROM ip_addresses"
    "  WHERE pool_id = :pool_id AND address >= CAST(:start AS inet) AND address < CAST(:last AS inet)"
    ") AS candidates"
    " WHERE NOT EXISTS ("
    "  SELECT 1 FROM ip_addresses AS taken"
    "  WHERE taken.pool_id = :pool_id AND taken.address = candidates.candidate"
    ") ORDER BY candidate LIMIT 1"
)


async def lowest_unused_v6(
    session: AsyncSession, pool_id: int, start: Address, last: Address
) -> Address | None:
    """The lowest address from ``start`` to ``last`` that has no row: ``start`` itself, or the
    address just after a row. IPv6 rows exist only while allocated or reserved, so a released
    address is found again here."""
    result = await session.execute(_NEXT_V6, {"pool_id": pool_id, "start": start, "last": last})
    found = result.scalar_one_or_none()
    return cast(Address | None, found)


async def insert_v6_allocation(
    session: AsyncSession, pool_id: int, address: Address, server_id: int, now: datetime
) -> IpAddress | None:
    """Insert the allocated row; None when the address exists already (the unique constraint is the
    last word, whatever the locks above it decided)."""
    statement = (
        insert(IpAddress)
        .values(pool_id=pool_id, address=address, server_id=server_id, allocated_at=now)
        .on_conflict_do_nothing(constraint="uq_ip_addresses_pool_address")
        .returning(IpAddress)
    )
    return (await session.scalars(statement)).first()


async def release(session: AsyncSession, server_id: int) -> list[tuple[int, Address]]:
    """Free every address of the server: IPv4 rows go back to the free set, IPv6 rows are removed
    (an IPv6 address is only stored while in use). Returns (pool id, address) of each."""
    v4 = (
        update(IpAddress)
        .where(
            IpAddress.server_id == server_id,
            IpAddress.pool_id.in_(select(IpPool.id).where(IpPool.version == 4)),
        )
        .values(server_id=None, allocated_at=None)
        .returning(IpAddress.pool_id, IpAddress.address)
        .execution_options(synchronize_session=False)
    )
    v6 = (
        delete(IpAddress)
        .where(
            IpAddress.server_id == server_id,
            IpAddress.pool_id.in_(select(IpPool.id).where(IpPool.version == 6)),
        )
        .returning(IpAddress.pool_id, IpAddress.address)
        .execution_options(synchronize_session=False)
    )
    released = [(int(pool), address) for pool, address in (await session.execute(v4)).all()]
    released += [(int(pool), address) for pool, address in (await session.execute(v6)).all()]
    return sorted(released, key=lambda item: (item[1].version, int(item[1])))


async def addresses_of(session: AsyncSession, server_id: int) -> list[tuple[IpAddress, IpPool]]:
    statement = (
        select(IpAddress, IpPool)
        .join(IpPool, IpPool.id == IpAddress.pool_id)
        .where(IpAddress.server_id == server_id)
        .order_by(IpPool.version, IpAddress.address)
    )
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


# ---------- Listing a pool's addresses ----------


def _state_condition(state: AddressState | None) -> list[ColumnElement[bool]]:
    if state is AddressState.ALLOCATED:
        return [IpAddress.server_id.is_not(None)]
    if state is AddressState.RESERVED:
        return [IpAddress.reserved.is_(True)]
    if state is AddressState.FREE:
        return [IpAddress.server_id.is_(None), ~IpAddress.reserved]
    return []


async def address_page(
    session: AsyncSession, pool_id: int, filters: AddressFilter
) -> tuple[list[tuple[IpAddress, str | None]], int]:
    """One page of the pool's address rows in address order, with the holding server's name."""
    conditions = [IpAddress.pool_id == pool_id, *_state_condition(filters.state)]
    statement = (
        select(IpAddress, Server.name)
        .outerjoin(Server, Server.id == IpAddress.server_id)
        .where(*conditions)
        .order_by(IpAddress.address)
        .offset(filters.offset)
        .limit(filters.limit)
    )
    rows: list[tuple[IpAddress, str | None]] = [
        (row[0], row[1]) for row in (await session.execute(statement)).all()
    ]
    total = (
        await session.execute(select(func.count()).select_from(IpAddress).where(*conditions))
    ).scalar_one()
    return rows, int(total)
