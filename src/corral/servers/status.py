"""How a server's state reads wherever it appears: the dashboard, the customer's list, the top of
its page, the staff list and page, and the JSON API (``display_status``).

One derivation from the server row, so no page can say "Running" about a server that is being
deleted. The first row of this table that applies wins:

====  ===================================================  ======================  =========  =======
 #    when                                                  code                    tone       spinner
====  ===================================================  ======================  =========  =======
 1    the server is deleted                                 deleted                 stopped    no
 2    its deletion started, or an immediate cancellation    deleting                pending    yes
      was asked for (it is locked from that moment)
 3    staff suspended it                                    suspended               suspended  no
 4    its account is behind on payment (billing's hook;     payment_overdue         overdue    no
      nothing passes it yet)
 5    a grace cancellation is pending                       pending_cancellation    pending    no
 6    it waits for its setup                                awaiting_setup          info       no
 7    it is being built                                     building                building   yes
 8    it is being reinstalled                               reinstalling            building   yes
 9    its build or reinstall failed (and no job retries     failed                  failed     no
      it): "Build failed" / "Reinstall failed", with why
      in ``status_detail`` and the setup / reinstall
      offered again
 10   active, with a power operation queued or running      starting/stopping/...   pending    yes
 11   active: what the hypervisor last reported             running/stopped/...     by state   no
====  ===================================================  ======================  =========  =======

Why this order: what ends the server's life outranks what pauses it (a suspended server that is
being deleted reads "Deleting"); what stops the customer using it (suspension) outranks what they
must act on (payment) and what is merely scheduled (a grace cancellation); lifecycle states outrank
the power state, which only means something once the server is built. Rows 4 and 5 keep the power
state as a ``detail`` ("Pending cancellation · Running"), since the server still runs meanwhile.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from corral.models.servers import CancelMode, Server, ServerStatus

_GONE = (ServerStatus.DELETING.value, ServerStatus.DELETED.value)


class DisplayCode(enum.StrEnum):
    """What a server is, as its badge says it (a stable key for tests, scripts and the API)."""

    DELETED = "deleted"
    DELETING = "deleting"
    SUSPENDED = "suspended"
    PAYMENT_OVERDUE = "payment_overdue"
    PENDING_CANCELLATION = "pending_cancellation"
    AWAITING_SETUP = "awaiting_setup"
    BUILDING = "building"
    REINSTALLING = "reinstalling"
    FAILED = "failed"
    STARTING = "starting"
    STOPPING = "stopping"
    SHUTTING_DOWN = "shutting_down"
    RESTARTING = "restarting"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    CRASHED = "crashed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DisplayStatus:
    """A server's badge: its ``label``, the badge colour (``tone``, a ``badge--<tone>`` class),
    whether something is under way (``spinner``), and a secondary ``detail`` (the power state
    behind a badge that hides it), rendered by ``servers/_status.html``."""

    code: DisplayCode
    label: str
    tone: str
    spinner: bool = False
    detail: str | None = None
    # The power state behind the badge, when the badge hides one (rows 4 and 5).
    behind: DisplayCode | None = None

    @property
    def running(self) -> bool:
        """Up and usable: "Running", or running behind a notice ("Pending cancellation")."""
        return DisplayCode.RUNNING in (self.code, self.behind)


def locked_for_deletion(server: Server) -> bool:
    """True once nothing may be done with the server any more: an immediate cancellation was asked
    for, or the deletion has started (or finished). Its page is then the "Deletion in progress"
    screen, and power, reinstall and console are refused."""
    return server.cancel_mode == CancelMode.IMMEDIATE.value or server.status in _GONE


def pending_cancellation(server: Server) -> bool:
    """A grace cancellation that has not started: the PENDING CANCELLATION badge."""
    return (
        server.cancel_mode == CancelMode.GRACE.value
        and server.cancel_due_at is not None
        and server.status not in _GONE
    )


# Power actions in flight (the ``action`` argument of a queued or running ``server.power`` job).
_POWER_ACTIONS: dict[str, tuple[DisplayCode, str]] = {
    "start": (DisplayCode.STARTING, "Starting"),
    "shutdown": (DisplayCode.SHUTTING_DOWN, "Shutting down"),
    "restart": (DisplayCode.RESTARTING, "Restarting"),
    "stop": (DisplayCode.STOPPING, "Stopping"),
}
_POWER_STATES: dict[str, tuple[DisplayCode, str]] = {
    "running": (DisplayCode.RUNNING, "running"),
    "stopped": (DisplayCode.STOPPED, "stopped"),
    "paused": (DisplayCode.PAUSED, "stopped"),
    "crashed": (DisplayCode.CRASHED, "error"),
    "starting": (DisplayCode.STARTING, "pending"),
}
_LIFECYCLE: dict[str, DisplayStatus] = {
    ServerStatus.AWAITING_SETUP.value: DisplayStatus(DisplayCode.AWAITING_SETUP, "Awaiting setup", "info"),
    ServerStatus.PROVISIONING.value: DisplayStatus(DisplayCode.BUILDING, "Building", "building", True),
    ServerStatus.REINSTALLING.value: DisplayStatus(
        DisplayCode.REINSTALLING, "Reinstalling", "building", True
    ),
    ServerStatus.FAILED.value: DisplayStatus(DisplayCode.FAILED, "Build failed", "failed"),
}


def _power(server: Server) -> DisplayStatus:
    code, tone = _POWER_STATES.get(server.power_state, (DisplayCode.UNKNOWN, "info"))
    return DisplayStatus(code, server.power_state.replace("_", " ").capitalize(), tone)


def display_status(
    server: Server, *, power_action: str | None = None, payment_overdue: bool = False
) -> DisplayStatus:
    """The badge of ``server`` (see the module's table). ``power_action`` is the action of a power
    job queued or running for it, if the caller loaded its jobs; ``payment_overdue`` is for billing
    to pass once it exists (nothing decides it yet, so nothing claims it)."""
    if server.status == ServerStatus.DELETED.value:
        return DisplayStatus(DisplayCode.DELETED, "Deleted", "stopped")
    if locked_for_deletion(server):
        return DisplayStatus(DisplayCode.DELETING, "Deleting", "pending", spinner=True)
    if server.suspended_at is not None or server.status == ServerStatus.SUSPENDED.value:
        return DisplayStatus(DisplayCode.SUSPENDED, "Suspended", "suspended")
    built = server.status == ServerStatus.ACTIVE.value
    power = _power(server) if built else None
    # The power state behind a notice, when there is one worth saying ("Unknown" is not).
    known = power is not None and power.code != DisplayCode.UNKNOWN
    detail, behind = (power.label, power.code) if power is not None and known else (None, None)
    if payment_overdue:
        return DisplayStatus(
            DisplayCode.PAYMENT_OVERDUE, "Payment overdue", "overdue", detail=detail, behind=behind
        )
    if pending_cancellation(server):
        return DisplayStatus(
            DisplayCode.PENDING_CANCELLATION, "Pending cancellation", "pending", detail=detail, behind=behind
        )
    if server.status == ServerStatus.FAILED.value and server.external_id is not None:
        # It has an instance, so what failed was a reinstall (a failed build never made one).
        return DisplayStatus(DisplayCode.FAILED, "Reinstall failed", "failed")
    lifecycle = _LIFECYCLE.get(server.status)
    if lifecycle is not None:
        return lifecycle
    if not built:  # a status this table does not know yet: say it plainly rather than guess
        return DisplayStatus(DisplayCode.UNKNOWN, server.status.replace("_", " ").capitalize(), "info")
    if power_action is not None:
        code, label = _POWER_ACTIONS.get(power_action, (DisplayCode.STOPPING, "Stopping"))
        return DisplayStatus(code, label, "pending", spinner=True)
    return _power(server)
