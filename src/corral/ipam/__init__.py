"""IP address management: IPv4 and IPv6 pools per location, allocation to servers, release.

    from corral.ipam import ipam

    address = await ipam.allocate(session, server_id=server.id, location_id=server.location_id, version=4)
    network = await ipam.network_config(session, server.id)  # for the driver's cloud-init
    await ipam.release_for_server(session, server.id)  # on destroy

Pages live under /admin/ip-pools (``corral.ipam.views.router``), JSON under
/api/v1/admin/ip-pools (``corral.ipam.api.router``).
"""

from corral.ipam.errors import NoPoolInLocation, PoolExhausted
from corral.ipam.schemas import AddressConfig, ServerNetwork
from corral.ipam.service import IpamService, ipam

__all__ = ["AddressConfig", "IpamService", "NoPoolInLocation", "PoolExhausted", "ServerNetwork", "ipam"]
