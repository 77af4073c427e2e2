"""The server's task timeline pages (issue 10): the page shows the newest jobs with "Show older",
older pages come by keyset on the job id, polling keeps every job shown, and the API pages too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from corral.jobs.service import job_service
from corral.models.servers import Server
from corral.servers.service import TIMELINE_PAGE
from tests.factories.fleet import create_server
from tests.support.admin import People, Person, people_for

JOB_ID = re.compile(r'data-job-id="(\d+)"')
MORE = re.compile(r'hx-get="/servers/\d+/jobs\?before=(\d+)"')


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def _jobs(db: AsyncSession, server: Server, count: int) -> list[int]:
    """``count`` jobs held by the server's lock, oldest first."""
    return [
        await job_service.defer(db, "server.power", server_id=server.id, action="start") for _ in range(count)
    ]


def _shown(html: str) -> list[int]:
    return [int(found) for found in JOB_ID.findall(html)]


def _more(html: str) -> int | None:
    found = MORE.findall(html)
    assert len(found) <= 1
    return int(found[0]) if found else None


async def _owner_with_jobs(people: People, db: AsyncSession, count: int) -> tuple[Person, Server, list[int]]:
    customer = await people.sign_in()
    server = await create_server(db, user=customer.user, status="active")
    neighbour = await create_server(db, user=customer.user, status="active")
    await _jobs(db, neighbour, 3)  # another server's jobs never show in this timeline
    return customer, server, await _jobs(db, server, count)


async def test_the_page_shows_the_newest_jobs_and_older_ones_a_page_at_a_time(
    people: People, db: AsyncSession
) -> None:
    customer, server, ids = await _owner_with_jobs(people, db, 2 * TIMELINE_PAGE + 5)
    newest_first = ids[::-1]

    page = await customer.client.get(f"/servers/{server.id}")
    assert page.status_code == 200
    assert _shown(page.text) == newest_first[:TIMELINE_PAGE]
    cursor = _more(page.text)
    assert cursor == newest_first[TIMELINE_PAGE - 1]
    assert 'hx-preserve="true"' in page.text

    seen = _shown(page.text)
    while cursor is not None:
        older = await customer.client.get(
            f"/servers/{server.id}/jobs", params={"before": cursor}, headers={"HX-Request": "true"}
        )
        assert older.status_code == 200
        assert "<html" not in older.text  # the fragment only
        seen += _shown(older.text)
        cursor = _more(older.text)
    assert seen == newest_first

    # Without script the link is a page of its own.
    plain = await customer.client.get(f"/servers/{server.id}/jobs", params={"before": newest_first[9]})
    assert "<html" in plain.text
    assert _shown(plain.text) == newest_first[10:20]


async def test_polling_keeps_every_job_first_shown_while_new_ones_arrive(
    people: People, db: AsyncSession
) -> None:
    customer, server, ids = await _owner_with_jobs(people, db, TIMELINE_PAGE + 3)
    page = await customer.client.get(f"/servers/{server.id}")
    since = _shown(page.text)[-1]
    assert f'hx-vals=\'{{"since": {since}, "version": ' in page.text  # what the live block's polls send

    new = await _jobs(db, server, 2)
    polled = await customer.client.get(
        f"/servers/{server.id}/live", params={"form": 0, "since": since}, headers={"HX-Request": "true"}
    )

    # The two new jobs on top, and none of the ten first shown pushed out (no gap before "older").
    assert _shown(polled.text) == [*new[::-1], *ids[::-1][:TIMELINE_PAGE]]


async def test_older_pages_are_the_owners_only_and_refuse_a_bad_cursor(
    people: People, db: AsyncSession
) -> None:
    owner, server, ids = await _owner_with_jobs(people, db, 3)
    stranger = await people.sign_in()

    assert (
        await stranger.client.get(f"/servers/{server.id}/jobs", params={"before": ids[-1]})
    ).status_code == 404
    for bad in ("0", "-1", "x", str(2**63)):
        response = await owner.client.get(f"/servers/{server.id}/jobs", params={"before": bad})
        assert response.status_code == 422, bad
    assert (await owner.client.get(f"/servers/{server.id}/jobs")).status_code == 422  # no cursor


async def test_the_api_pages_by_cursor_and_link_header(people: People, db: AsyncSession) -> None:
    customer, server, ids = await _owner_with_jobs(people, db, 12)
    url = f"/api/v1/servers/{server.id}/jobs"

    first = await customer.client.get(url, params={"limit": 5})
    assert first.status_code == 200
    assert [job["id"] for job in first.json()] == ids[::-1][:5]
    seen: list[int] = []
    response = first
    while True:
        seen += [job["id"] for job in response.json()]
        link = response.headers.get("link")
        if link is None:
            break
        match = re.fullmatch(r'<(/api/v1/servers/\d+/jobs\?before=\d+&limit=5)>; rel="next"', link)
        assert match is not None, link
        response = await customer.client.get(match.group(1))
    assert seen == ids[::-1]

    by_cursor = await customer.client.get(url, params={"before": ids[3], "limit": 2})
    assert [job["id"] for job in by_cursor.json()] == [ids[2], ids[1]]
    assert (await customer.client.get(url)).headers.get("link") is None  # 12 fit the default page
    for bad in ({"limit": 0}, {"limit": 101}, {"before": 0}):
        assert (await customer.client.get(url, params=bad)).status_code == 422, bad
