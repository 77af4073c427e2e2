"""Why a console closed, in a real browser under the real CSP (issue 10, point 11): the server's node
has no VNC console (libvirt's test driver runs guests without graphics), the panel closes the
WebSocket with 4502 and the driver's reason, and the page says so instead of "Connection lost or
refused". Also the server badges of point 9 as the customer sees them: a server being deleted
reads "Deleting" on the dashboard and the server list, never "Running".

Screenshots at 1280 and 390 px wide go to /tmp/shots/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import libvirt
import pytest
from playwright.async_api import Page, expect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.consoles.errors import CLOSE_MESSAGES, CLOSE_UNREACHABLE
from corral.kit.clock import utcnow
from tests.e2e.conftest import PHONE, NewPage, PageProblems
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.factories.users import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots")  # noqa: S108 (where the team looks at screenshots)
CUSTOMER = "vera@example.com"
# The guest libvirt's test:///default starts with: running, no <graphics>.
TEST_DOMAIN = "test"


@dataclass(frozen=True)
class Seeded:
    console: int  # active, on a node whose guest has no VNC console
    doomed: int  # its immediate cancellation waits for the processor


def _test_domain_uuid() -> str:
    # test:///default is one shared in-memory hypervisor per process, the live server's too.
    connection = libvirt.open("test:///default")
    try:
        return str(connection.lookupByName(TEST_DOMAIN).UUIDString())
    finally:
        connection.close()


@pytest.fixture
async def seeded(live_server: str, live_database: URL) -> AsyncIterator[Seeded]:
    engine = create_async_engine(live_database)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            vera = await create_user(session, email=CUSTOMER, name="Vera Customer")
            location = await create_location(session)
            node = await create_node(session, location=location, name="syd-node-1")
            console = await create_server(
                session,
                user=vera,
                location=location,
                node_id=node.id,
                status="active",
                name="headless-1",
                power_state="running",
                external_id=_test_domain_uuid(),
            )
            doomed = await create_server(
                session,
                user=vera,
                location=location,
                node_id=node.id,
                status="active",
                name="old-box",
                power_state="running",
            )
            doomed.cancel_mode = "immediate"
            doomed.cancel_requested_at = utcnow()
            doomed.cancel_due_at = utcnow() + timedelta(minutes=5)
            await session.commit()
            yield Seeded(console=console.id, doomed=doomed.id)
    finally:
        await engine.dispose()


async def _sign_in(page: Page) -> None:
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill(CUSTOMER)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))


async def _shot(page: Page, name: str) -> None:
    # Playwright makes the folder when it is missing.
    await page.screenshot(path=str(SHOTS / name), full_page=True)


@pytest.mark.parametrize(("viewport", "suffix"), [(None, "1280"), (PHONE, "390")])
async def test_the_console_says_why_it_closed(
    seeded: Seeded,
    new_page: NewPage,
    page_problems: PageProblems,
    viewport: dict[str, int] | None,
    suffix: str,
) -> None:
    # noVNC logs the refused connection as an error of its own; that is the point of the test.
    page_problems.allow(r"console: .*Connection closed \(code: 4502")
    page = await (new_page(viewport=viewport) if viewport else new_page())
    await _sign_in(page)

    await page.goto(f"/servers/{seeded.console}/console")
    closed = page.locator("[data-console-closed]")
    await expect(closed).to_be_visible()
    await expect(closed).to_have_attribute("data-close-code", str(CLOSE_UNREACHABLE))
    await expect(closed.locator("[data-console-closed-message]")).to_have_text(
        CLOSE_MESSAGES[CLOSE_UNREACHABLE]
    )
    await expect(closed.locator("[data-console-closed-reason]")).to_have_text(
        "The node said: the server has no VNC console"
    )
    await expect(page.locator("[data-console-status]")).to_have_text("Not connected")
    await expect(page.get_by_text("Connection lost or refused")).to_have_count(0)
    await expect(page.locator("[data-console-reconnect]")).to_be_visible()
    await _shot(page, f"console-closed-{suffix}.png")


async def test_a_server_being_deleted_reads_deleting_everywhere(
    seeded: Seeded, new_page: NewPage, page_problems: PageProblems
) -> None:
    page = await new_page()
    await _sign_in(page)
    for path in ("/dashboard", "/servers"):
        await page.goto(path)
        row = page.locator(f'[data-testid="server-row"][data-server-id="{seeded.doomed}"]')
        await expect(row.get_by_test_id("server-status")).to_have_text("Deleting")
        await expect(row.locator(".badge__spinner")).to_be_visible()
        await expect(row).not_to_contain_text("Running")
        await _shot(page, f"badges{path.replace('/', '-')}-1280.png")
    await page.goto(f"/servers/{seeded.doomed}")
    await expect(page.get_by_test_id("server-header-status")).to_have_text("Deleting")
    await _shot(page, "badges-deleting-page-1280.png")
