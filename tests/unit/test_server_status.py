"""The priority table of a server's badge (corral.servers.status): each row, and that a higher row
wins over every lower one that also applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.models.servers import Server
from corral.servers.schemas import ServerRead
from corral.servers.status import DisplayCode, display_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _server(**fields: Any) -> Server:
    values: dict[str, Any] = {
        "id": 1,
        "user_id": 1,
        "location_id": 1,
        "name": "web-1",
        "vcpus": 1,
        "memory_mib": 1024,
        "disk_gib": 10,
        "status": "active",
        "power_state": "running",
        "created_at": NOW,
        "suspended_at": None,
        "cancel_mode": None,
        "cancel_due_at": None,
    }
    return Server(**{**values, **fields})


SUSPENDED = {"suspended_at": NOW, "suspended_reason": "abuse"}
GRACE = {"cancel_mode": "grace", "cancel_due_at": NOW + timedelta(days=30)}
IMMEDIATE = {"cancel_mode": "immediate", "cancel_due_at": NOW + timedelta(minutes=5)}

# (row fields, power action in flight, payment overdue) -> (code, label, tone, spinner, detail)
TABLE: list[tuple[dict[str, Any], str | None, bool, tuple[str, str, str, bool, str | None]]] = [
    # 1. deleted, whatever else the row still says
    (
        {"status": "deleted", **IMMEDIATE, **SUSPENDED},
        None,
        True,
        ("deleted", "Deleted", "stopped", False, None),
    ),
    # 2. deleting: the deletion started, or an immediate cancellation is waiting for the processor
    ({"status": "deleting"}, None, False, ("deleting", "Deleting", "pending", True, None)),
    ({**IMMEDIATE}, "start", True, ("deleting", "Deleting", "pending", True, None)),
    ({**IMMEDIATE, **SUSPENDED}, None, False, ("deleting", "Deleting", "pending", True, None)),
    ({"status": "deleting", **GRACE}, None, False, ("deleting", "Deleting", "pending", True, None)),
    # 3. suspended outranks payment, a grace cancellation, the lifecycle and the power state
    ({**SUSPENDED, **GRACE}, "stop", True, ("suspended", "Suspended", "suspended", False, None)),
    ({"status": "suspended"}, None, False, ("suspended", "Suspended", "suspended", False, None)),
    (
        {"status": "provisioning", **SUSPENDED},
        None,
        False,
        ("suspended", "Suspended", "suspended", False, None),
    ),
    # 4. payment overdue (billing's hook) outranks a grace cancellation; the power state stays
    ({**GRACE}, None, True, ("payment_overdue", "Payment overdue", "overdue", False, "Running")),
    # 5. pending cancellation, with the power state behind it
    (
        {**GRACE},
        "start",
        False,
        ("pending_cancellation", "Pending cancellation", "pending", False, "Running"),
    ),
    (
        {**GRACE, "power_state": "stopped"},
        None,
        False,
        ("pending_cancellation", "Pending cancellation", "pending", False, "Stopped"),
    ),
    # (an unknown power state is not worth saying behind it)
    (
        {**GRACE, "power_state": "unknown"},
        None,
        False,
        ("pending_cancellation", "Pending cancellation", "pending", False, None),
    ),
    (
        {"status": "awaiting_setup", **GRACE},
        None,
        False,
        ("pending_cancellation", "Pending cancellation", "pending", False, None),
    ),
    # 6-9. the lifecycle
    (
        {"status": "awaiting_setup", "power_state": "unknown"},
        None,
        False,
        ("awaiting_setup", "Awaiting setup", "info", False, None),
    ),
    ({"status": "provisioning"}, None, False, ("building", "Building", "building", True, None)),
    ({"status": "reinstalling"}, "start", False, ("reinstalling", "Reinstalling", "building", True, None)),
    ({"status": "failed"}, None, False, ("failed", "Build failed", "failed", False, None)),
    # 10. a power operation in flight
    ({}, "start", False, ("starting", "Starting", "pending", True, None)),
    ({}, "shutdown", False, ("shutting_down", "Shutting down", "pending", True, None)),
    ({}, "restart", False, ("restarting", "Restarting", "pending", True, None)),
    ({}, "stop", False, ("stopping", "Stopping", "pending", True, None)),
    # 11. the power state
    ({}, None, False, ("running", "Running", "running", False, None)),
    ({"power_state": "stopped"}, None, False, ("stopped", "Stopped", "stopped", False, None)),
    ({"power_state": "crashed"}, None, False, ("crashed", "Crashed", "error", False, None)),
    ({"power_state": "paused"}, None, False, ("paused", "Paused", "stopped", False, None)),
    ({"power_state": "unknown"}, None, False, ("unknown", "Unknown", "info", False, None)),
]


@pytest.mark.parametrize(("fields", "power_action", "overdue", "expected"), TABLE)
def test_the_priority_table(
    fields: dict[str, Any],
    power_action: str | None,
    overdue: bool,
    expected: tuple[str, str, str, bool, str | None],
) -> None:
    shown = display_status(_server(**fields), power_action=power_action, payment_overdue=overdue)
    assert (shown.code.value, shown.label, shown.tone, shown.spinner, shown.detail) == expected


def test_every_code_is_reachable_from_the_table() -> None:
    """No badge exists that no row produces (and so no page could show)."""
    reached = {row[3][0] for row in TABLE}
    assert reached == {code.value for code in DisplayCode}


def test_the_api_says_what_the_badge_says() -> None:
    assert ServerRead.of(_server(**IMMEDIATE)).display_status == DisplayCode.DELETING
    assert ServerRead.of(_server(**GRACE)).display_status == DisplayCode.PENDING_CANCELLATION
    assert ServerRead.of(_server(**SUSPENDED)).display_status == DisplayCode.SUSPENDED
    assert ServerRead.of(_server()).model_dump(mode="json")["display_status"] == "running"


def test_running_counts_a_server_that_runs_behind_a_notice() -> None:
    """The dashboard's "N running": a grace-cancelled server still runs; one being deleted does not."""
    assert display_status(_server()).running
    assert display_status(_server(**GRACE)).running
    assert not display_status(_server(**GRACE, power_state="stopped")).running
    assert not display_status(_server(**IMMEDIATE)).running
    assert not display_status(_server(**SUSPENDED)).running
