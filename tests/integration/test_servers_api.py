"""The /api/v1/servers endpoints: the two-phase order, actions, ownership, token scopes; and power
actions on one server serialised (row lock + queueing lock + the job lock ``server:<id>``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.auth.principal import Principal
from corral.auth.schemas import ApiTokenCreate
from corral.auth.tokens import api_tokens
from corral.config import Settings
from corral.db.session import create_session_factory, transaction
from corral.jobs.runtime import JobRuntime
from corral.jobs.service import job_service
from corral.kit.actors import Actor
from corral.models.users import User
from corral.rbac.permissions import Permission, permissions_for
from corral.servers.errors import ServerBusy
from corral.servers.service import servers
from tests.factories.users import create_user
from tests.integration.test_servers_pages import make_offer, make_server, server_jobs
from tests.support.admin import People, people_for
from tests.support.jobs import wait_for_job

API = "/api/v1/servers"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc/2WJ1M3rOcF8cPeL4QP7zHlA41xFh1ZzZ7ZGFZ3e5 me@laptop"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def bearer(db: AsyncSession, user: User, scopes: list[Permission]) -> dict[str, str]:
    principal = Principal.of(user, permissions_for(user.role))
    made = await api_tokens.create(
        db, principal, ApiTokenCreate(name=f"ci-{len(scopes)}", scopes=scopes, expires_in_days=30)
    )
    return {"Authorization": f"Bearer {made.secret}"}


async def test_order_and_setup_through_the_api(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    body = {
        "plan_id": offer.plan.id,
        "location_id": offer.location.id,
        "name": "api-1",
        "order_key": "k" * 20,
    }

    ordered = await customer.post_json(API, body)
    assert ordered.status_code == 201, ordered.text
    server = ordered.json()
    assert (server["status"], server["plan_id"], server["vcpus"], server["name"]) == (
        "awaiting_setup",
        offer.plan.id,
        2,
        "api-1",
    )
    assert len(server["addresses"]) == 1
    again = await customer.post_json(API, body)  # a retried request with the same key
    assert again.status_code == 201
    assert again.json()["id"] == server["id"]
    assert [item["id"] for item in (await customer.client.get(API)).json()] == [server["id"]]

    bad = await customer.post_json(
        f"{API}/{server['id']}/setup", {"template_id": offer.template.id, "hostname": "a..b"}
    )
    assert bad.status_code == 422
    assert [error["field"] for error in bad.json()["errors"]] == ["hostname"]
    bad_key = await customer.post_json(
        f"{API}/{server['id']}/setup",
        {"template_id": offer.template.id, "hostname": "api-1", "ssh_keys": ["not a key"]},
    )
    assert bad_key.status_code == 422
    assert bad_key.json()["code"] == "invalid_ssh_key"
    not_mine = await customer.post_json(
        f"{API}/{server['id']}/setup",
        {"template_id": offer.template.id, "hostname": "api-1", "ssh_key_ids": [999999]},
    )
    assert not_mine.status_code == 404

    built = await customer.post_json(
        f"{API}/{server['id']}/setup",
        {"template_id": offer.template.id, "hostname": "API-1.example.com", "ssh_keys": [KEY]},
    )
    assert built.status_code == 202, built.text
    assert built.json()["server"]["status"] == "provisioning"
    assert built.json()["server"]["hostname"] == "api-1.example.com"
    jobs = (await customer.client.get(f"{API}/{server['id']}/jobs")).json()
    assert [(job["id"], job["task_name"], job["status"]) for job in jobs] == [
        (built.json()["job_id"], "server.provision", "todo")
    ]
    assert "args" not in jobs[0]  # may hold a password hash
    twice = await customer.post_json(
        f"{API}/{server['id']}/setup",
        {"template_id": offer.template.id, "hostname": "api-1", "ssh_keys": [KEY]},
    )
    assert twice.status_code == 409
    assert twice.json()["code"] == "invalid_server_state"


async def test_power_rename_reinstall_and_retry_through_the_api(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)
    url = f"{API}/{server.id}"

    powered = await customer.post_json(f"{url}/power", {"action": "shutdown"})
    assert powered.status_code == 202
    busy = await customer.post_json(f"{url}/power", {"action": "shutdown"})
    assert busy.status_code == 409
    assert busy.json()["code"] == "server_busy"
    assert (await customer.post_json(f"{url}/power", {"action": "nap"})).status_code == 422

    renamed = await customer.client.patch(url, json={"name": "Renamed"}, headers=customer.headers())
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Renamed"
    refused = await customer.client.patch(url, json={"name": "x" * 65}, headers=customer.headers())
    assert refused.status_code == 422

    wrong = await customer.post_json(
        f"{url}/reinstall",
        {
            "template_id": offer.template.id,
            "hostname": "web-1.example.com",
            "confirm": "nope",
            "ssh_keys": [KEY],
        },
    )
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "reinstall_not_confirmed"

    job_id = powered.json()["job_id"]
    not_failed = await customer.post_json(f"{url}/jobs/{job_id}/retry")
    assert not_failed.status_code == 409
    assert not_failed.json()["code"] == "job_not_retryable"
    await db.execute(text("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = :id"), {"id": job_id})
    retried = await customer.post_json(f"{url}/jobs/{job_id}/retry")
    assert retried.status_code == 202
    assert retried.json()["status"] == "todo"


async def test_another_customers_server_is_not_found_in_the_api(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    owner = await people.sign_in()
    stranger = await people.sign_in()
    server = await make_server(db, offer, owner.user)
    url = f"{API}/{server.id}"

    assert (await stranger.client.get(url)).status_code == 404
    assert (await stranger.client.get(f"{url}/jobs")).status_code == 404
    assert (await stranger.post_json(f"{url}/power", {"action": "stop"})).status_code == 404
    assert (
        await stranger.client.patch(url, json={"name": "x"}, headers=stranger.headers())
    ).status_code == 404
    assert (await stranger.post_json(f"{url}/jobs/1/retry")).status_code == 404
    reinstall = {
        "template_id": offer.template.id,
        "hostname": "web-1.example.com",
        "confirm": "web-1.example.com",
        "ssh_keys": [KEY],
    }
    assert (await stranger.post_json(f"{url}/reinstall", reinstall)).status_code == 404
    setup = {"template_id": offer.template.id, "hostname": "x", "ssh_keys": [KEY]}
    assert (await stranger.post_json(f"{url}/setup", setup)).status_code == 404
    assert (await stranger.client.get(API)).json() == []
    assert await server_jobs(db, server.id) == []
    assert (await stranger.client.get(f"{API}/999999999")).json()["code"] == "server_not_found"


async def test_token_scopes_limit_what_a_script_may_do(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)
    reader = await bearer(db, customer.user, [Permission.SERVERS_READ])
    manager = await bearer(db, customer.user, [Permission.SERVERS_READ, Permission.SERVERS_MANAGE])
    client = await people.client()

    assert (await client.get(f"{API}/{server.id}", headers=reader)).status_code == 200
    assert (
        await client.post(f"{API}/{server.id}/power", json={"action": "stop"}, headers=reader)
    ).status_code == 403
    managed = await client.post(f"{API}/{server.id}/power", json={"action": "stop"}, headers=manager)
    assert managed.status_code == 202
    assert (await client.get(API)).status_code == 401


async def test_concurrent_power_actions_on_one_server_are_serialised(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    url = fresh_database()
    engine = create_async_engine(url)
    factory = create_session_factory(engine, settings)
    try:
        async with transaction(factory) as session:
            owner = await create_user(session)
            offer = await make_offer(session)
            # No instance behind it: the power jobs find nothing to do and finish at once; what is
            # checked is that they hold the server's lock and ran one after another.
            server = await make_server(session, offer, owner, external_id=None)
            server_id, owner_id = server.id, owner.id
        actor = Actor.user(owner_id, "owner@example.com", "customer")

        async def press(action: str) -> int | str:
            try:
                async with transaction(factory) as session:
                    return await servers.power(session, actor, server_id, action, owner_id=owner_id)  # type: ignore[arg-type]
            except ServerBusy:
                return "busy"

        # Two requests at once: the row lock makes them take turns, and the second finds the first
        # one's job still queued (queueing lock): one job, one "busy".
        results = await asyncio.gather(press("stop"), press("stop"))
        assert sorted(map(str, results))[-1] == "busy"
        assert sum(isinstance(r, int) for r in results) == 1

        # Different operations may queue behind each other; they share the lock server:<id>, so the
        # worker never runs two at once even with several workers free.
        async with transaction(factory) as session:
            await job_service.defer(
                session, "server.power", server_id=server_id, action="start", queueing_lock="other-1"
            )
            await job_service.defer(
                session, "server.power", server_id=server_id, action="restart", queueing_lock="other-2"
            )
        async with factory() as session:
            jobs = await job_service.list(session, lock=f"server:{server_id}")
        assert len(jobs) == 3
        assert {job.lock for job in jobs} == {f"server:{server_id}"}

        runtime = JobRuntime(url, settings, poll_interval=0.1)
        await runtime.open()
        await runtime.start_worker()
        try:
            finished = [await wait_for_job(factory, job.id) for job in jobs]
        finally:
            await runtime.close()
        assert all(job.status == "succeeded" for job in finished)
        # Event ids come from a sequence, so they order the events as they really happened (their
        # timestamps are each transaction's start and cannot). A job is fetched ("started") only
        # once the one before it has finished, if the lock works.
        async with factory() as session:
            rows = await session.execute(
                text(
                    "SELECT job_id, type::text, id FROM procrastinate_events"
                    " WHERE job_id = ANY(:ids) AND type IN ('started', 'succeeded', 'failed')"
                ),
                {"ids": [job.id for job in jobs]},
            )
            events: dict[int, dict[str, int]] = {}
            for job_id, kind, event_id in rows:
                events.setdefault(job_id, {})["start" if kind == "started" else "end"] = event_id
        spans = sorted((span["start"], span["end"]) for span in events.values())
        assert len(spans) == 3
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end < start, "two jobs of one server ran at the same time"
    finally:
        await engine.dispose()
