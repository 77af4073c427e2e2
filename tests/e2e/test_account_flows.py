"""Account flows in a real browser, with real email: register and verify, then forgot password.

The panel runs a job worker that sends its email over SMTP to a sink; the tests read the links
out of the messages that arrive there, as a person would out of their inbox.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from playwright.async_api import Page, ViewportSize, expect
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.e2e.conftest import DESKTOP, PHONE, MailServer, NewPage, PageProblems, artifact_path
from tests.factories.users import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser

PASSWORD = "violet anchor drifts north"
NEW_PASSWORD = "granite lantern orbit seven"


@pytest.fixture
def live_server(mail_server: MailServer) -> str:
    return mail_server.url


@pytest.fixture(autouse=True)
def _favicon_fetch_may_be_cut_short(page_problems: PageProblems) -> None:
    # Chromium fetches the favicon after the load event; these flows leave pages quickly (a form
    # filled and sent at once), which aborts that fetch. Nothing on the page failed.
    page_problems.allow(r"^requestfailed: GET .*/static/img/corral\.svg\?v=\w+ \(net::ERR_ABORTED\)$")


def link_in(message: EmailMessage, base_url: str, path: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    match = re.search(rf"{re.escape(base_url + path)}\?token=[A-Za-z0-9_\-]+", text)
    assert match is not None, f"no {path} link in:\n{text}"
    return match.group(0)


async def shot(page: Page, name: str) -> None:
    # Back to the top first: the sticky top bar would otherwise be drawn over the page.
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.screenshot(path=artifact_path(name), full_page=True)


async def sign_in(page: Page, email: str, password: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_register_verify_sign_in_and_out(
    new_page: NewPage, mail_server: MailServer, page_problems: PageProblems
) -> None:
    page = await new_page()
    await page.goto("/")
    await page.get_by_role("link", name="Create account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Create your Corral account")
    await page.get_by_label("Name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill("ada@example.com")
    # A common password first: the form comes back with the message next to the field.
    page_problems.allow(r"^http: 422 POST .*/register$")
    page_problems.allow(r"^console: Failed to load resource: .* 422")
    await page.get_by_label("Password", exact=True).fill("1qaz2wsx3edc")
    await page.get_by_label("Repeat the password").fill("1qaz2wsx3edc")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator('[data-field-error="password"]')).to_contain_text("commonly used passwords")
    await expect(page.get_by_label("Email")).to_have_value("ada@example.com")
    await shot(page, "account-register-error.png")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await shot(page, "account-register.png")
    await page.get_by_role("button", name="Create account").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    await expect(page.get_by_test_id("check-email")).to_contain_text("ada@example.com")
    await shot(page, "account-check-email.png")

    [message] = await mail_server.sink.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Confirm your email address for Corral"
    link = link_in(message, mail_server.url, "/verify")

    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your email is confirmed")
    await shot(page, "account-verified.png")
    await page.get_by_role("link", name="Sign in").last.click()

    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(f"{mail_server.url}/dashboard")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada Lovelace")
    await shot(page, "account-dashboard.png")

    # The account page, its htmx forms, and an inline error that htmx swaps in.
    await page.get_by_role("link", name="Account", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    await page.wait_for_function("() => window.htmx && window.Corral")
    await page.get_by_label("Name", exact=True).fill("Augusta Ada King")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.locator("#toasts .toast--success")).to_contain_text("Your name is saved.")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Augusta Ada King")

    page_problems.allow(r"^http: 422 POST .*/account/password$")
    page_problems.allow(r"^console: Failed to load resource: .* 422")
    password_panel = page.locator("#password-panel")
    await password_panel.get_by_label("Current password").fill("not my password at all")
    await password_panel.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await password_panel.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await password_panel.get_by_role("button", name="Change password").click()
    await expect(page.locator('[data-field-error="current_password"]')).to_have_text(
        "That is not your current password."
    )
    await shot(page, "account-profile.png")
    await page.set_viewport_size(ViewportSize(width=PHONE["width"], height=PHONE["height"]))
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await shot(page, "account-profile-phone.png")
    await page.set_viewport_size(ViewportSize(width=DESKTOP["width"], height=DESKTOP["height"]))

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert (await page.goto("/dashboard")) is not None
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard$"))
    page_problems.assert_clean()


async def test_forgot_password_then_sign_in_with_the_new_one(
    new_page: NewPage, mail_server: MailServer, page_problems: PageProblems
) -> None:
    engine = create_async_engine(mail_server.database_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            await create_user(session, email="grace@example.com", name="Grace Hopper")
            await session.commit()
    finally:
        await engine.dispose()

    page = await new_page()
    await page.goto("/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Forgot your password?")
    await page.get_by_label("Email").fill("grace@example.com")
    await shot(page, "account-forgot.png")
    await page.get_by_role("button", name="Send the reset link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    [message] = await mail_server.sink.wait_for(1)
    assert message["To"] == "grace@example.com"
    link = link_in(message, mail_server.url, "/password/reset")

    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    await shot(page, "account-reset.png")
    await page.get_by_role("button", name="Save the new password").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your password is changed")
    await shot(page, "account-reset-done.png")

    # The notice that the password changed arrives too.
    notices = await mail_server.sink.wait_for(2)
    assert notices[1]["Subject"] == "Your Corral password was changed"

    # The old password no longer works; the new one does.
    page_problems.allow(r"^http: 401 POST .*/login$")
    page_problems.allow(r"^console: Failed to load resource: .* 401")
    await sign_in(page, "grace@example.com", DEFAULT_PASSWORD)
    await expect(page.get_by_test_id("login-error")).to_have_text(
        "That email and password do not match an account."
    )
    await sign_in(page, "grace@example.com", NEW_PASSWORD)
    await expect(page).to_have_url(f"{mail_server.url}/dashboard")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Grace Hopper")

    # The link worked once.
    await page.goto(link)
    page_problems.allow(r"^http: 400 GET .*/password/reset\?token=")
    page_problems.allow(r"^console: Failed to load resource: .* 400")
    await expect(page.get_by_role("heading", level=1)).to_have_text("This link no longer works")
    await shot(page, "account-link-invalid.png")
    page_problems.assert_clean()
