"""The server page's live block is polled every few seconds by every open page (issue 11, point 6):
a poll that sends back the version its block was drawn from is answered 204 with no body when
nothing changed, and with the new block as soon as anything it shows changes (a job queued, a log
line written, the server's own state). Another customer's server never answers 204."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.jobs import JobLog
from tests.integration.test_servers_pages import make_offer, make_server
from tests.support.admin import People, Person, people_for

VERSION = re.compile(r'"version": "([0-9a-f]+)"')


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


def version_in(html: str) -> str:
    found = VERSION.search(html)
    assert found is not None, "the live block carries the version it was drawn from"
    return found.group(1)


async def poll(person: Person, server_id: int, version: str) -> tuple[int, str]:
    response = await person.client.get(
        f"/servers/{server_id}/live", params={"form": "0", "version": version}, headers={"HX-Request": "true"}
    )
    return response.status_code, response.text


async def test_an_unchanged_server_answers_204_and_any_change_redraws(
    people: People, db: AsyncSession
) -> None:
    offer = await make_offer(db)
    customer = await people.sign_in()
    server = await make_server(db, offer, customer.user)
    page = await customer.client.get(f"/servers/{server.id}")
    drawn = version_in(page.text)

    assert await poll(customer, server.id, drawn) == (204, "")
    assert (await poll(customer, server.id, ""))[0] == 200  # no version: always the block

    # A job is queued (the page's own power button): the next poll brings the new block.
    queued = await customer.post_htmx(f"/servers/{server.id}/power", {"action": "restart"})
    assert queued.status_code == 200
    status, body = await poll(customer, server.id, drawn)
    assert status == 200
    assert "Restarting" in body
    after_job = version_in(body)
    assert after_job != drawn
    assert (await poll(customer, server.id, after_job))[0] == 204

    # The job writes a log line: redrawn again.
    job_id = await db.scalar(
        text("SELECT id FROM procrastinate_jobs WHERE lock = :lock"), {"lock": f"server:{server.id}"}
    )
    db.add(JobLog(job_id=job_id, attempt=1, level="info", message="asking the node"))
    await db.flush()
    status, body = await poll(customer, server.id, after_job)
    assert status == 200
    after_log = version_in(body)
    assert after_log != after_job

    # The server's own state changes (the reconciler saw it stop): redrawn.
    server.power_state = "stopped"
    await db.flush()
    status, body = await poll(customer, server.id, after_log)
    assert status == 200
    assert version_in(body) != after_log


async def test_another_customers_server_is_never_204(people: People, db: AsyncSession) -> None:
    offer = await make_offer(db)
    owner = await people.sign_in()
    stranger = await people.sign_in()
    server = await make_server(db, offer, owner.user)
    drawn = version_in((await owner.client.get(f"/servers/{server.id}")).text)

    assert (await poll(stranger, server.id, drawn))[0] == 404
    assert (await poll(stranger, server.id, "not-hex"))[0] == 422
