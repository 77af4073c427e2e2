"""Moving a server from one lifecycle status to another, and which statuses are transitional.

Every status change goes through :func:`move`, so ``status_changed_at`` always says since when a
server has been in its status: the reconciler reports one stuck building, reinstalling or deleting
past a deadline (``servers.stuck_after_minutes``).
"""

from __future__ import annotations

from datetime import datetime

from corral.kit.clock import utcnow
from corral.models.servers import Server, ServerStatus

# Statuses a job is working through: each should end within minutes.
TRANSITIONAL = (ServerStatus.PROVISIONING.value, ServerStatus.REINSTALLING.value, ServerStatus.DELETING.value)


def move(
    server: Server, status: ServerStatus, *, detail: str | None = None, now: datetime | None = None
) -> None:
    """Put ``server`` in ``status``; ``detail`` says why when there is something to say (a
    failure), and is cleared otherwise."""
    if server.status != status.value:
        server.status_changed_at = now or utcnow()
    server.status = status.value
    server.status_detail = detail
