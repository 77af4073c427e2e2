"""Cancellation and suspension in a real browser under the real CSP: a customer cancels with a
grace period and keeps the server after all, then deletes another at once and lands on the locked
screen; an operator finds a failed cancellation and suspends a server, which its owner then sees."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from playwright.async_api import Page, expect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.config import Settings
from corral.kit.clock import utcnow
from corral.models.users import UserRole
from tests.e2e.conftest import NewPage, PageProblems, artifact_path
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import create_node
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.browser_passkeys import staff_sign_in

pytestmark = pytest.mark.browser

CUSTOMER = "carol@example.com"
OPERATOR = "otto@example.com"


@dataclass(frozen=True)
class Seeded:
    kept: int
    doomed: int
    stuck: int


@pytest.fixture
async def seeded(live_server: str, live_database: URL) -> AsyncIterator[Seeded]:
    engine = create_async_engine(live_database)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            carol = await create_user(session, email=CUSTOMER, name="Carol Customer")
            await create_user(session, email=OPERATOR, name="Otto Ops", role=UserRole.OPERATOR.value)
            location = await create_location(session)
            node = await create_node(session, location=location, name="syd-node-1")
            kept = await create_server(
                session, user=carol, location=location, node_id=node.id, status="active", name="web-1"
            )
            doomed = await create_server(
                session, user=carol, location=location, node_id=node.id, status="active", name="old-box"
            )
            stuck = await create_server(
                session, user=carol, location=location, node_id=node.id, status="deleting", name="stuck-1"
            )
            stuck.cancel_mode = "immediate"
            stuck.cancel_requested_at = utcnow() - timedelta(minutes=20)
            stuck.cancel_due_at = utcnow() + timedelta(minutes=2)
            stuck.cancel_attempts = 2
            stuck.cancel_error = "the node refused: volume is busy"
            await session.commit()
            yield Seeded(kept=kept.id, doomed=doomed.id, stuck=stuck.id)
    finally:
        await engine.dispose()


async def _customer_sign_in(page: Page) -> None:
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill(CUSTOMER)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))


async def test_a_customer_cancels_revokes_and_deletes(
    seeded: Seeded, new_page: NewPage, page_problems: PageProblems
) -> None:
    # The wrong confirmation is answered 422 on purpose (htmx swaps the form back with the error).
    page_problems.allow(r"422")
    page = await new_page()
    await _customer_sign_in(page)

    await page.goto(f"/servers/{seeded.kept}/cancel", wait_until="networkidle")
    await page.screenshot(path=artifact_path("cancel-panel.png"), full_page=True)
    await page.get_by_test_id("cancel-grace").click()
    await expect(page).to_have_url(re.compile(r"/servers/[0-9]+(\?done=cancel_requested)?$"))
    await page.wait_for_load_state("networkidle")
    await page.goto(f"/servers/{seeded.kept}/cancel", wait_until="networkidle")
    # Said twice: by the server's badge at the top and by the cancellation panel.
    await expect(page.get_by_test_id("server-header-status")).to_contain_text("Pending cancellation")
    await expect(
        page.get_by_test_id("cancellation-panel").get_by_text("Pending cancellation")
    ).to_be_visible()
    await expect(page.get_by_test_id("cancel-due")).to_contain_text("Deleted on")
    await page.screenshot(path=artifact_path("cancel-pending.png"), full_page=True)
    await page.get_by_test_id("revoke-cancellation").click()
    await expect(page).to_have_url(re.compile(r"/servers/[0-9]+(\?done=cancel_revoked)?$"))
    await page.wait_for_load_state("networkidle")
    await page.goto(f"/servers/{seeded.kept}/cancel", wait_until="networkidle")
    await expect(page.get_by_test_id("cancel-grace")).to_be_visible()

    await page.goto(f"/servers/{seeded.doomed}/cancel", wait_until="networkidle")
    await page.get_by_label("Type old-box to confirm").fill("old-bo")
    await page.get_by_test_id("cancel-immediate").click()
    # htmx swaps the panel back with the error beside the field.
    await expect(page.locator('[data-field-error="confirm"]')).to_be_visible()
    await page.screenshot(path=artifact_path("cancel-confirm-error.png"), full_page=True)
    await page.get_by_label("Type old-box to confirm").fill("old-box")
    await page.get_by_test_id("cancel-immediate").click()
    await expect(page).to_have_url(re.compile(rf"/servers/{seeded.doomed}(\?done=cancel_requested)?$"))
    await page.wait_for_load_state("networkidle")
    # The server page is now the locked screen (the server page renders servers/deleting.html).
    await expect(page.get_by_test_id("deletion-in-progress")).to_be_visible()
    await expect(page.locator("main form")).to_have_count(0)
    await page.screenshot(path=artifact_path("deleting.png"), full_page=True)
    page_problems.assert_clean()


async def test_an_operator_sees_a_failed_cancellation_and_suspends_a_server(
    seeded: Seeded,
    settings: Settings,
    live_database: URL,
    live_server: str,
    new_page: NewPage,
    page_problems: PageProblems,
) -> None:
    page_problems.allow(r"422")  # the too-short reason, answered with the form and its error
    page = await new_page()
    await staff_sign_in(page, settings, live_database, live_server, OPERATOR)

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="All servers").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Servers")
    first = page.get_by_test_id("fleet-server-row").first
    await expect(first).to_have_attribute("data-cancel-failed", "true")
    await expect(first.get_by_test_id("cancel-error")).to_contain_text("volume is busy (2 attempts")
    await page.screenshot(path=artifact_path("fleet-servers.png"), full_page=True)
    await page.get_by_label("Show").select_option("suspended")
    await expect(page.get_by_test_id("fleet-server-row")).to_have_count(0)
    await expect(page).to_have_url(re.compile(r"status=suspended"))

    await page.goto(f"/admin/servers/{seeded.kept}", wait_until="networkidle")
    await page.get_by_label("Reason").fill("no")
    await page.get_by_test_id("suspend-button").click()
    await expect(page.locator('[data-field-error="reason"]')).to_be_visible()
    await page.get_by_label("Reason").fill("Phishing site reported by CERT")
    await page.get_by_test_id("suspend-button").click()
    await expect(page.get_by_test_id("suspended-reason")).to_have_text("Phishing site reported by CERT")
    await page.screenshot(path=artifact_path("fleet-server-detail.png"), full_page=True)
    page_problems.assert_clean()

    owner = await new_page()
    await _customer_sign_in(owner)
    await owner.goto(f"/servers/{seeded.kept}/cancel", wait_until="networkidle")
    await expect(owner.get_by_test_id("suspended-reason")).to_have_text("Phishing site reported by CERT")
    await owner.screenshot(path=artifact_path("suspended-owner.png"), full_page=True)
