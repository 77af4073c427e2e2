"""Choosing a node for a new server.

The candidates are the online nodes of the location (none online is "unavailable", not "full");
a node has room when what its servers
already use, plus the new server, fits its capacity times its oversell ratio, for CPU, memory and
disk alike. Among those, the least loaded (by its most used resource) wins.

Placement runs in the ordering transaction and locks every candidate node row (in id order, so two
placements never deadlock). A second order for the same location waits for the first to commit and
then sees its server, so two orders can never both take the last room on a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.nodes import Node
from corral.servers import repository
from corral.servers.errors import NoCapacity, NoNodeAvailable


@dataclass(frozen=True)
class Demand:
    vcpus: int
    memory_mib: int
    disk_gib: int


@dataclass(frozen=True)
class NodeLoad:
    node: Node
    vcpus: int
    memory_mib: int
    disk_gib: int

    def fits(self, demand: Demand) -> bool:
        node = self.node
        return (
            self.vcpus + demand.vcpus <= node.cpu_total * node.cpu_oversell
            and self.memory_mib + demand.memory_mib <= node.memory_total_mib * node.memory_oversell
            and self.disk_gib + demand.disk_gib <= node.disk_total_gib * node.disk_oversell
        )

    def load_after(self, demand: Demand) -> float:
        """The fullest resource's share of its oversold capacity once ``demand`` is added."""
        node = self.node
        return max(
            (self.vcpus + demand.vcpus) / (node.cpu_total * node.cpu_oversell),
            (self.memory_mib + demand.memory_mib) / (node.memory_total_mib * node.memory_oversell),
            (self.disk_gib + demand.disk_gib) / (node.disk_total_gib * node.disk_oversell),
        )


async def node_loads(session: AsyncSession, location_id: int) -> list[NodeLoad]:
    """Every online node of the location with what its servers use, the node rows locked."""
    nodes = await repository.online_nodes_locked(session, location_id)
    used = await repository.usage_by_node(session, [node.id for node in nodes])
    return [NodeLoad(node, *used.get(node.id, (0, 0, 0))) for node in nodes]


async def choose_node(session: AsyncSession, location_id: int, demand: Demand) -> Node:
    """The node the new server goes on. Raises NoNodeAvailable when no node of the location is
    online (an outage: try later) and NoCapacity when the online ones are all full."""
    online = await node_loads(session, location_id)
    if not online:
        raise NoNodeAvailable()
    loads = [load for load in online if load.fits(demand)]
    if not loads:
        raise NoCapacity()
    return min(loads, key=lambda load: (load.load_after(demand), load.node.id)).node
