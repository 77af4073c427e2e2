"""Suspension by staff: the owner keeps read-only access with the reason; power, reinstall and the
console are refused; operators suspend and unsuspend with an audited reason; the guest is stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import libvirt
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.config import Settings
from corral.db.session import transaction
from corral.jobs.service import job_service
from corral.models.users import UserRole
from corral.rbac.permissions import permissions_for
from corral.servers.errors import ServerSuspended
from corral.servers.service import ServerSetup, servers
from corral.servers.suspension import SuspensionChange, suspensions
from tests.factories.fleet import create_server
from tests.factories.users import create_user
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for
from tests.support.jobs import wait_for_job
from tests.support.server_fleet import ACTOR, worker_fleet

API = "/api/v1/admin/servers"
REASON = "Abuse report #4411: outgoing spam"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def test_a_suspended_server_refuses_power_actions(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    owner = await people.sign_in()
    server = await create_server(db, user=owner.user, status="active", name="mail-1")

    suspended = await operator.post_json(f"{API}/{server.id}/suspend", {"reason": REASON})
    assert suspended.status_code == 200, suspended.text

    for action in ("start", "stop", "restart", "shutdown"):
        with pytest.raises(ServerSuspended, match="Abuse report #4411"):
            await servers.power(db, ACTOR, server.id, action)
    setup = ServerSetup(template_id=1, hostname="mail-1.example.com", ssh_keys=["ssh-ed25519 AAAAC3Nz test"])
    with pytest.raises(ServerSuspended):
        await servers.reinstall(db, ACTOR, server.id, setup)
    # The owner still sees the server, read-only, with the reason.
    page = await owner.client.get(f"/servers/{server.id}/cancel")
    assert page.status_code == 200
    assert 'data-testid="suspended-notice"' in page.text
    assert REASON in page.text


async def test_operators_suspend_and_unsuspend_with_an_audited_reason(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    owner = await people.user()
    server = await create_server(db, user=owner, status="active")
    url = f"{API}/{server.id}"

    too_short = await operator.post_json(f"{url}/suspend", {"reason": " x "})
    assert (too_short.status_code, error_code(too_short.json())) == (422, "validation_failed")
    assert (await operator.post_json(f"{url}/suspend", {})).status_code == 422
    assert (await operator.post_json(f"{url}/suspend", {"reason": "y" * 501})).status_code == 422
    await db.refresh(server)
    assert server.suspended_at is None

    done = await operator.post_json(f"{url}/suspend", {"reason": f"  {REASON}  "})

    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["suspended"], body["suspended_reason"], body["owner_email"]) == (True, REASON, owner.email)
    stops = await job_service.list(db, lock=f"server:{server.id}", task_name="server.power")
    assert [job.args["action"] for job in stops] == ["stop"]  # the guest is powered off
    again = await operator.post_json(f"{url}/suspend", {"reason": REASON})
    assert (again.status_code, error_code(again.json())) == (409, "server_already_suspended")

    lifted = await operator.post_json(f"{url}/unsuspend", {"reason": "Customer cleaned up the mailer"})

    assert lifted.status_code == 200, lifted.text
    assert (lifted.json()["suspended"], lifted.json()["suspended_reason"]) == (False, None)
    twice = await operator.post_json(f"{url}/unsuspend", {"reason": "Again"})
    assert (twice.status_code, error_code(twice.json())) == (409, "server_not_suspended")
    events = await audit_events(db, "server.")
    trail = [(e.action, e.reason, e.actor_label) for e in events if e.action.endswith("suspend")]
    assert trail == [
        ("server.suspend", REASON, operator.user.email),
        ("server.unsuspend", "Customer cleaned up the mailer", operator.user.email),
    ]
    assert events[-1].payload["suspended_reason"] == REASON
    # Unsuspended, the owner may act again.
    assert await servers.power(db, ACTOR, server.id, "start") > 0


async def test_only_staff_with_the_permission_suspend(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in()
    support = await people.sign_in(UserRole.SUPPORT)
    server = await create_server(db, user=customer.user, status="active")
    body = {"reason": REASON}

    assert (await customer.client.get(API)).status_code == 403
    assert (await customer.post_json(f"{API}/{server.id}/suspend", body)).status_code == 403
    assert (await support.client.get(f"{API}/{server.id}")).status_code == 200  # support may look
    assert (await support.post_json(f"{API}/{server.id}/suspend", body)).status_code == 403
    operator = await people.sign_in(UserRole.OPERATOR)
    missing = await operator.post_json(f"{API}/999999999/suspend", body)
    assert (missing.status_code, error_code(missing.json())) == (404, "server_not_found")
    deleted = await create_server(db, user=customer.user, status="deleted")
    gone = await operator.post_json(f"{API}/{deleted.id}/suspend", body)
    assert (gone.status_code, error_code(gone.json())) == (409, "server_being_deleted")
    await db.refresh(server)
    assert server.suspended_at is None


async def test_suspending_stops_the_guest(fresh_database: Callable[[], URL], settings: Settings) -> None:
    async with worker_fleet(fresh_database, settings) as fleet:
        server_id = await fleet.build_server("noisy")
        external_id = (await fleet.server(server_id)).external_id
        assert external_id is not None
        assert fleet.domain_state(external_id) == libvirt.VIR_DOMAIN_RUNNING

        async with transaction(fleet.factory) as session:
            staff = await create_user(session, role=UserRole.OPERATOR.value)
            principal = Principal.of(staff, permissions_for(staff.role))
            await suspensions.suspend(session, principal, server_id, SuspensionChange(reason=REASON))
        async with fleet.factory() as session:
            (stop,) = await job_service.list(session, lock=f"server:{server_id}", task_name="server.power")
        assert (await wait_for_job(fleet.factory, stop.id)).status == "succeeded"

        assert fleet.domain_state(external_id) == libvirt.VIR_DOMAIN_SHUTOFF
        stopped = await fleet.server(server_id)
        assert (stopped.power_state, stopped.status, stopped.suspended_reason) == (
            "stopped",
            "active",
            REASON,
        )
        async with transaction(fleet.factory) as session:
            with pytest.raises(ServerSuspended):
                await servers.power(session, ACTOR, server_id, "start")
