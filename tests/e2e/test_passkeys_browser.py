"""Passkeys in a real browser: Chromium's virtual authenticator plays the laptop's fingerprint reader.

A customer adds a passkey on the passkeys page, signs out, signs in with the passkey alone, and
later, with a stale step-up, creates an API token: the step-up prompt opens in a dialog, the passkey
confirms it, and the token is created without the form being sent again by hand.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import Dialog, Page, expect
from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.config import Settings
from corral.kit.clock import utcnow
from corral.models.auth import UserSession
from corral.models.mfa import Passkey
from corral.models.users import User
from tests.e2e.conftest import NewPage, PageProblems, artifact_path
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.browser_passkeys import (
    add_authenticator,
    enrol_through_link,
    issue_enrolment_link,
    sign_in_with_passkey,
)

pytestmark = pytest.mark.browser

EMAIL = "pat@example.com"


async def seed_customer(database: URL) -> None:
    engine = create_async_engine(database)
    try:
        async with AsyncSession(engine) as session:
            await create_user(session, email=EMAIL, name="Pat Passkey")
            await session.commit()
    finally:
        await engine.dispose()


async def age_step_ups(database: URL, by: timedelta) -> None:
    """Make every session's last step-up older, as if the customer had been away."""
    engine = create_async_engine(database)
    try:
        async with AsyncSession(engine) as session:
            await session.execute(
                update(UserSession)
                .where(UserSession.step_up_at.is_not(None))
                .values(step_up_at=utcnow() - by)
            )
            await session.commit()
    finally:
        await engine.dispose()


async def stored_passkeys(database: URL) -> list[tuple[str, str]]:
    engine = create_async_engine(database)
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(
                select(Passkey.name, User.email).join(User, User.id == Passkey.user_id)
            )
            return [(name, email) for name, email in rows]
    finally:
        await engine.dispose()


async def password_sign_in(page: Page) -> None:
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))


def accept_confirmations(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def test_register_sign_in_with_a_passkey_alone_and_step_up(
    new_page: NewPage, page_problems: PageProblems, live_database: URL
) -> None:
    await seed_customer(live_database)
    page = await new_page()
    accept_confirmations(page)
    authenticator = await add_authenticator(page)

    # 1. Register a passkey (the password sign-in is this account's fresh proof: no prompt yet).
    await password_sign_in(page)
    await page.goto("/account/security/passkeys", wait_until="networkidle")
    await expect(page.get_by_test_id("no-passkeys")).to_be_visible()
    await page.get_by_test_id("passkey-name").fill("Work laptop")
    await page.get_by_test_id("passkey-add").click()
    await expect(page).to_have_url(re.compile(r"/account/security/passkeys(\?done=added)?$"))
    await expect(page.get_by_test_id("passkey-item-name")).to_have_text(["Work laptop"])
    await expect(page.locator("#toasts")).to_contain_text("Passkey added")
    assert len(await authenticator.credentials()) == 1
    assert await stored_passkeys(live_database) == [("Work laptop", EMAIL)]
    await page.screenshot(path=artifact_path("passkeys-added.png"), full_page=True)

    # 2. Sign out, then sign in with the passkey alone: no email, no password.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    await sign_in_with_passkey(page)
    await expect(page.get_by_test_id("signed-in-as")).to_have_text("Pat Passkey")

    # 3. Six minutes later, creating an API token asks for the passkey again, inline.
    await age_step_ups(live_database, timedelta(minutes=6))
    await page.goto("/account/security", wait_until="networkidle")
    tokens = page.get_by_test_id("tokens-panel")
    await tokens.get_by_label("Name").fill("Deploy bot")
    await tokens.get_by_role("checkbox", name="account:read").check()
    await tokens.get_by_role("button", name="Create token").click()

    dialog = page.get_by_test_id("step-up-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("heading")).to_have_text("Confirm it is you")
    await page.screenshot(path=artifact_path("step-up-dialog.png"))
    await dialog.get_by_test_id("step-up-passkey").click()

    # The refused request is sent again once the passkey confirmed it.
    await expect(dialog).to_be_hidden()
    box = page.get_by_test_id("new-token")
    await expect(box).to_be_visible()
    secret = await box.get_by_label("Your new API token").input_value()
    assert secret.startswith("crl_")
    await expect(tokens.locator("tbody tr", has_text="Deploy bot")).to_have_count(1)
    await page.screenshot(path=artifact_path("step-up-done.png"), full_page=True)
    # The step-up was refused once (403), which the browser logs; nothing else went wrong.
    page_problems.allow(r"^http: 403 POST .*/account/security/tokens$")
    page_problems.allow(r"^console: Failed to load resource: .* 403")
    page_problems.assert_clean()


async def test_an_operator_adds_the_first_passkey_only_through_the_enrolment_link(
    new_page: NewPage, page_problems: PageProblems, live_database: URL, live_server: str, settings: Settings
) -> None:
    engine = create_async_engine(live_database)
    try:
        async with AsyncSession(engine) as session:
            await create_user(session, email="otto@example.com", name="Otto Ops", role="operator")
            await session.commit()
    finally:
        await engine.dispose()
    page = await new_page()
    authenticator = await add_authenticator(page)

    # With the password alone the passkeys page offers no way to add one, only the explanation.
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill("otto@example.com")
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_test_id("elevation-withheld")).to_contain_text("enrolment link")
    await page.goto("/account/security/passkeys", wait_until="networkidle")
    await expect(page.get_by_test_id("passkey-enrolment-needed")).to_be_visible()
    await expect(page.get_by_test_id("passkey-add")).to_have_count(0)
    await page.screenshot(path=artifact_path("passkey-enrolment-needed.png"), full_page=True)
    await page.get_by_role("button", name="Sign out").click()
    # Wait for the sign-out to land: navigating on at once would abort it (a flaky "requestfailed").
    await expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))

    # The link (as the CLI or an email hands it over), opened in a password session, adds it.
    link = await issue_enrolment_link(settings, live_database, live_server, "otto@example.com")
    await enrol_through_link(page, "otto@example.com", link)
    assert len(await authenticator.credentials()) == 1
    assert await stored_passkeys(live_database) == [("Test laptop", "otto@example.com")]
    await sign_in_with_passkey(page)
    await page.goto("/admin/nodes", wait_until="networkidle")
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
    await expect(page.get_by_test_id("elevation-withheld")).to_have_count(0)

    # Used once: opening it again says so.
    await page.goto(link, wait_until="networkidle")
    await expect(page.get_by_test_id("enrolment-refused")).to_contain_text("already used")
    page_problems.allow(r"^http: 400 GET .*/account/security/passkeys/enrol\?token=")
    page_problems.allow(r"^console: Failed to load resource: .* 400")
    page_problems.assert_clean()
