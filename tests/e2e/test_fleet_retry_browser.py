"""An operator retries cancellations the processor gave up on, in a real browser under the real
CSP: from the failed row of /admin/servers and from a server's page, each after confirming."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from playwright.async_api import Dialog, Page, expect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.config import Settings
from corral.kit.clock import utcnow
from corral.models.users import UserRole
from tests.e2e.conftest import NewPage, PageProblems, artifact_path
from tests.factories.fleet import create_location, create_server
from tests.factories.users import create_user
from tests.support.browser_passkeys import staff_sign_in

pytestmark = pytest.mark.browser

OPERATOR = "otto@example.com"


@pytest.fixture
async def stuck(live_server: str, live_database: URL) -> AsyncIterator[tuple[int, int]]:
    """Two servers whose cancellation was given up: one never started deleting, one did."""
    engine = create_async_engine(live_database)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            owner = await create_user(session, email="carol@example.com")
            await create_user(session, email=OPERATOR, role=UserRole.OPERATOR.value)
            location = await create_location(session)
            made = []
            for name, status in (("stuck-a", "active"), ("stuck-b", "deleting")):
                server = await create_server(session, user=owner, location=location, status=status, name=name)
                server.cancel_mode = "immediate"
                server.cancel_requested_at = utcnow() - timedelta(hours=2)
                server.cancel_due_at = None
                server.cancel_attempts = 6
                server.cancel_error = "the node refused: volume is busy"
                made.append(server)
            await session.commit()
            yield made[0].id, made[1].id
    finally:
        await engine.dispose()


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=artifact_path(name), full_page=True)


async def test_an_operator_retries_given_up_cancellations(
    stuck: tuple[int, int],
    settings: Settings,
    live_database: URL,
    live_server: str,
    new_page: NewPage,
    page_problems: PageProblems,
) -> None:
    from_list, from_page = stuck
    page = await new_page()
    confirmations: list[str] = []

    async def accept(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await staff_sign_in(page, settings, live_database, live_server, OPERATOR)

    await page.goto("/admin/servers", wait_until="networkidle")
    row = page.locator(f'[data-testid="fleet-server-row"][data-server-id="{from_list}"]')
    await expect(row.get_by_test_id("cancel-error")).to_contain_text("given up")
    await _shot(page, "fleet-servers-retry.png")
    await row.get_by_test_id("retry-cancellation").click()

    await expect(page).to_have_url(re.compile(r"/admin/servers(\?done=cancel_retried)?$"))
    await expect(page.get_by_text("Cancellation retried")).to_be_visible()
    assert confirmations
    assert "stuck-a" in confirmations[-1]

    await page.goto(f"/admin/servers/{from_page}", wait_until="networkidle")
    await _shot(page, "fleet-server-retry-detail.png")
    await page.get_by_test_id("retry-cancellation").click()

    await expect(page).to_have_url(re.compile(rf"/admin/servers/{from_page}(\?done=cancel_retried)?$"))
    await expect(page.get_by_text("Cancellation retried")).to_be_visible()
    await expect(page.get_by_test_id("retry-cancellation")).to_have_count(0)
    await _shot(page, "fleet-server-retried.png")
    page_problems.assert_clean()
