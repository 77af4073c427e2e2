"""The security page in a real browser under the real CSP: sessions, and a token seen once then revoked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from playwright.async_api import Dialog, Page, expect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.models.users import User
from tests.e2e.conftest import PHONE, NewPage, PageProblems, artifact_path
from tests.factories.users import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser

PAGE = "/account/security"


@pytest.fixture
async def make_user(live_server: str, live_database: URL) -> AsyncIterator[Callable[..., Any]]:
    engine = create_async_engine(live_database)

    async def make(**overrides: Any) -> User:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            user = await create_user(session, name="Ada Lovelace", **overrides)
            await session.commit()
            return user

    yield make
    await engine.dispose()


async def sign_in(page: Page, email: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url("**/dashboard")


async def open_security_page(page: Page) -> None:
    response = await page.goto(PAGE, wait_until="networkidle")
    assert response is not None
    assert response.status == 200
    await page.wait_for_function("() => window.htmx && window.Alpine && window.Corral")


async def screenshot(page: Page, name: str) -> None:
    # From the top: a full-page shot taken while scrolled paints the sticky top bar mid-page.
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.screenshot(path=artifact_path(name), full_page=True)


def accept_confirmations(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def test_create_a_token_see_it_once_and_revoke_it(
    new_page: NewPage, page_problems: PageProblems, make_user: Callable[..., Any], live_server: str
) -> None:
    user = await make_user()
    page = await new_page(permissions=["clipboard-read", "clipboard-write"])
    accept_confirmations(page)
    await sign_in(page, user.email)
    await open_security_page(page)

    await expect(page.get_by_role("heading", level=1)).to_have_text("Security")
    sessions = page.get_by_test_id("sessions-panel")
    await expect(sessions.locator("tbody tr")).to_have_count(1)
    await expect(sessions).to_contain_text("This device")
    await expect(sessions).to_contain_text("Chrome on Linux")

    tokens = page.get_by_test_id("tokens-panel")
    await expect(tokens).to_contain_text("You have no API tokens yet.")
    # An empty form comes back in place with the problems next to the fields.
    await tokens.get_by_role("button", name="Create token").click()
    await expect(tokens.locator("#token-name-error")).to_contain_text("Give the token a name")
    await expect(tokens).to_contain_text("Choose at least one permission")
    await tokens.get_by_label("Name").fill("Nightly backup")
    await tokens.get_by_role("checkbox", name="account:read").check()
    await tokens.get_by_role("checkbox", name="tokens:manage").check()
    await tokens.get_by_label("Expires").select_option("90")
    await tokens.get_by_role("button", name="Create token").click()

    box = page.get_by_test_id("new-token")
    await expect(box).to_be_visible()
    await expect(box).to_contain_text("shown only this once")
    secret = await box.get_by_label("Your new API token").input_value()
    assert secret.startswith("crl_")
    await expect(page.locator("#toasts .toast--success").first).to_contain_text("Token created")

    await box.get_by_role("button", name="Copy").click()
    await expect(box.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("() => navigator.clipboard.readText()") == secret

    row = tokens.locator("tbody tr", has_text="Nightly backup")
    await expect(row).to_contain_text(secret[:12] + "…")
    await expect(row).to_contain_text("account:read")
    await expect(row).to_contain_text("Never")  # not used yet
    page_problems.assert_clean()
    await screenshot(page, "security-token-created.png")
    await page.emulate_media(color_scheme="light")
    await screenshot(page, "security-token-created-light.png")
    await page.emulate_media(color_scheme="dark")

    # The secret was in that one response only.
    await open_security_page(page)
    await expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert secret[12:] not in await page.content()

    # It works as a bearer token until revoked.
    assert await _api_status(page, live_server, secret) == 200
    await tokens.locator("tbody tr", has_text="Nightly backup").get_by_role("button", name="Revoke").click()
    await expect(tokens.locator("tbody tr")).to_have_count(0)
    await expect(tokens).to_contain_text("You have no API tokens yet.")
    await expect(page.locator("#toasts")).to_contain_text("Token revoked")
    page_problems.allow(r"^http: 401 GET .*/api/v1/account/tokens$")
    page_problems.allow(r"^console: Failed to load resource: .* 401")
    assert await _api_status(page, live_server, secret) == 401
    page_problems.assert_clean()


async def _api_status(page: Page, base: str, secret: str) -> int:
    response = await page.request.get(
        f"{base}/api/v1/account/tokens", headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status


async def test_revoke_another_session_and_sign_out_everywhere_else(
    new_page: NewPage, page_problems: PageProblems, make_user: Callable[..., Any]
) -> None:
    user = await make_user()
    laptop = await new_page()
    accept_confirmations(laptop)
    phone = await new_page(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
        ),
    )
    tablet = await new_page()
    for page in (laptop, phone, tablet):
        await sign_in(page, user.email)

    await open_security_page(laptop)
    sessions = laptop.get_by_test_id("sessions-panel")
    await expect(sessions.locator("tbody tr")).to_have_count(3)
    await expect(sessions.locator("tr.is-current")).to_have_count(1)
    await expect(sessions.locator("tbody tr").first).to_contain_text("This device")
    await screenshot(laptop, "security-sessions.png")

    # The phone's own view of the page, laid out for its width.
    await open_security_page(phone)
    overflow = await phone.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await screenshot(phone, "security-phone.png")

    iphone_row = sessions.locator("tbody tr", has_text="Safari on iPhone")
    await iphone_row.get_by_role("button", name="Revoke").click()
    await expect(iphone_row).to_have_count(0)
    await expect(sessions.locator("tbody tr")).to_have_count(2)
    await phone.goto("/dashboard")
    await expect(phone).to_have_url(re.compile(r"/login\?next="))

    await sessions.get_by_role("button", name="Sign out everywhere else").click()
    await expect(sessions.locator("tbody tr")).to_have_count(1)
    await expect(laptop.locator("#toasts")).to_contain_text("Signed out 1 other session")
    await tablet.goto("/dashboard")
    await expect(tablet).to_have_url(re.compile(r"/login\?next="))
    await laptop.goto("/dashboard")
    await expect(laptop).to_have_url(re.compile(r"/dashboard$"))
    page_problems.assert_clean()


async def test_signing_out_this_device_from_the_page(
    new_page: NewPage, page_problems: PageProblems, make_user: Callable[..., Any]
) -> None:
    user = await make_user()
    page = await new_page()
    accept_confirmations(page)
    await sign_in(page, user.email)
    await open_security_page(page)

    await page.get_by_test_id("sessions-panel").get_by_role("button", name="Sign out").click()

    await page.wait_for_url("**/login?signed_out=1")
    await expect(page.get_by_role("status").first).to_contain_text("You are signed out")
    page_problems.assert_clean()
