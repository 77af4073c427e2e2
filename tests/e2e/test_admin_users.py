"""A super admin finds a user and blocks them, in a real browser under the real CSP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from playwright.async_api import Page, expect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.config import Settings
from corral.models.users import UserRole
from tests.e2e.conftest import PHONE, NewPage, PageProblems, artifact_path
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.browser_passkeys import staff_sign_in

pytestmark = pytest.mark.browser

BOSS = "boss@example.com"
TARGET = "mallory@example.com"


@pytest.fixture
async def seeded(live_server: str, live_database: URL) -> AsyncIterator[None]:
    """A super admin, the user to block, and a few others, committed in the served database."""
    engine = create_async_engine(live_database)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            await create_user(session, email=BOSS, name="Bea Boss", role=UserRole.SUPER_ADMIN.value)
            await create_user(session, email=TARGET, name="Mallory Mischief")
            await create_user(session, email="grace@example.com", name="Grace Hopper", role="support")
            await create_user(
                session, email="newbie@example.com", name="Nia Newbie", status="pending_approval"
            )
            await create_user(session, email="ops@example.com", name="Otto Ops", role="operator")
            await session.commit()
        yield
    finally:
        await engine.dispose()


@pytest.fixture
def boss_sign_in(
    settings: Settings, live_database: URL, live_server: str
) -> Callable[[Page], Awaitable[None]]:
    """The super admin signs in with a passkey: a password session would act as a customer."""

    async def sign_in(page: Page) -> None:
        await staff_sign_in(page, settings, live_database, live_server, BOSS)

    return sign_in


async def _sign_in(page: Page, email: str) -> None:
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await page.wait_for_function("() => window.htmx && window.Alpine && window.Corral")


async def test_a_super_admin_finds_a_user_and_blocks_them(
    seeded: None,
    boss_sign_in: Callable[[Page], Awaitable[None]],
    new_page: NewPage,
    page_problems: PageProblems,
) -> None:
    # Mallory is signed in elsewhere when she is blocked.
    mallory = await new_page()
    await _sign_in(mallory, TARGET)

    page = await new_page()
    await boss_sign_in(page)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Users")
    await expect(page.get_by_test_id("user-row")).to_have_count(5)
    await page.screenshot(path=artifact_path("admin-users-list.png"), full_page=True)

    # Typing filters the list in place (htmx), and the address follows the search.
    await page.get_by_label("Search").fill("mallory")
    await expect(page.get_by_test_id("user-row")).to_have_count(1)
    await expect(page).to_have_url(re.compile(r"[?&]q=mallory"))
    await page.get_by_role("link", name="Mallory Mischief").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Mallory Mischief")
    await expect(page.get_by_test_id("user-status")).to_have_text("Active")
    await expect(page.get_by_test_id("active-sessions")).to_have_text("1")

    await page.get_by_role("link", name="Block…").click()
    reason = page.get_by_label("Reason")
    await expect(reason).to_be_visible()
    await expect(page.get_by_text("Block Mallory Mischief?")).to_be_visible()
    await reason.fill("Card testing from many IPs")
    await page.screenshot(path=artifact_path("admin-user-block-confirm.png"), full_page=True)
    await page.get_by_role("button", name="Block user").click()

    await expect(page.get_by_test_id("user-status")).to_have_text("Blocked")
    await expect(page.get_by_test_id("user-status").locator(".badge--blocked")).to_be_visible()
    await expect(page.get_by_test_id("blocked-reason")).to_have_text("Card testing from many IPs")
    await expect(page.get_by_test_id("active-sessions")).to_have_text("0")
    await expect(page.locator("#toasts .toast--success")).to_contain_text(
        "User blocked and signed out everywhere."
    )
    events = page.get_by_test_id("user-events")
    await expect(events).to_contain_text("user.block")
    await expect(events).to_contain_text("Card testing from many IPs")
    await page.screenshot(path=artifact_path("admin-user-blocked.png"), full_page=True)

    # Her open tab is signed out on its next request.
    await mallory.goto("/dashboard", wait_until="networkidle")
    await expect(mallory).to_have_url(re.compile(r"/login\?next="))

    # The list shows the new badge too.
    await page.goto("/admin/users?q=mallory", wait_until="networkidle")
    await expect(page.get_by_test_id("user-row").locator(".badge--blocked")).to_have_text("Blocked")
    page_problems.assert_clean()


async def test_the_user_list_on_a_phone(
    seeded: None,
    boss_sign_in: Callable[[Page], Awaitable[None]],
    new_page: NewPage,
    page_problems: PageProblems,
) -> None:
    page = await new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    await boss_sign_in(page)
    await page.goto("/admin/users", wait_until="networkidle")

    await expect(page.get_by_test_id("user-row")).to_have_count(5)
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page_problems.assert_clean()
    await page.screenshot(path=artifact_path("admin-users-phone.png"), full_page=True)


async def test_approving_from_the_pending_list(
    seeded: None,
    boss_sign_in: Callable[[Page], Awaitable[None]],
    new_page: NewPage,
    page_problems: PageProblems,
) -> None:
    page = await new_page()
    await boss_sign_in(page)
    await page.goto("/admin/users", wait_until="networkidle")
    await page.get_by_test_id("pending-link").click()
    await expect(page.get_by_test_id("user-row")).to_have_count(1)

    row = page.get_by_test_id("user-row")
    await row.get_by_role("button", name="Approve").click()

    await expect(row.locator(".badge")).to_have_text("Active")
    await expect(page.locator("#toasts .toast--success")).to_contain_text("Account approved.")
    page_problems.assert_clean()
    await page.screenshot(path=artifact_path("admin-users-approved.png"), full_page=True)
