"""Passkeys in Chromium: its virtual authenticator (CDP ``WebAuthn.*``) holds the credentials.

``add_authenticator`` gives a page a platform authenticator with user verification, so the
panel's own script registers and uses passkeys exactly as on a laptop with a fingerprint reader.
``staff_sign_in`` gives a seeded operator or super-admin its first passkey the way the panel
allows (an enrolment link opened in a password session), for browser tests that need a staff
passkey sign-in before they start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from playwright.async_api import CDPSession, Page, expect
from sqlalchemy.engine import URL

from corral.auth.enrolment import passkey_enrolment
from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.kit.actors import Actor
from corral.models.mfa import EnrolmentDelivery
from tests.factories.users import DEFAULT_PASSWORD


@dataclass(frozen=True)
class VirtualAuthenticator:
    cdp: CDPSession
    authenticator_id: str

    async def credentials(self) -> list[dict[str, object]]:
        found = await self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return list(found["credentials"])


async def add_authenticator(page: Page) -> VirtualAuthenticator:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return VirtualAuthenticator(cdp=cdp, authenticator_id=str(added["authenticatorId"]))


async def sign_in_with_passkey(page: Page) -> None:
    """Use the sign-in page's passkey button; the virtual authenticator answers."""
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_test_id("passkey-sign-in").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await page.wait_for_function("() => window.htmx && window.Alpine && window.Corral")


async def issue_enrolment_link(settings: Settings, database: URL, base_url: str, email: str) -> str:
    """A passkey enrolment link for a seeded operator or super-admin, as `corral admin
    enrolment-link` prints one (the link names the served panel)."""
    served = settings.model_copy(update={"web": settings.web.model_copy(update={"public_url": base_url})})
    engine = create_engine(database, served)
    try:
        async with transaction(create_session_factory(engine, served)) as session:
            issued = await passkey_enrolment.issue_for_email(
                session, Actor.cli("tests"), email, EnrolmentDelivery.CLI
            )
    finally:
        await engine.dispose()
    return issued.link


async def enrol_through_link(page: Page, email: str, link: str, *, password: str = DEFAULT_PASSWORD) -> None:
    """What a new operator does with the link: sign in with the password, open the link, add the
    passkey (the virtual authenticator answers), sign out."""
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await page.goto(link, wait_until="networkidle")
    await page.get_by_test_id("passkey-name").fill("Test laptop")
    await page.get_by_test_id("passkey-add").click()
    # The passkeys page, with the toast (the address loses its ?done= once the toast is shown).
    await expect(page).to_have_url(re.compile(r"/account/security/passkeys(\?done=enrolled)?$"))
    await expect(page.locator("#toasts")).to_contain_text("Passkey added")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))


async def staff_sign_in(page: Page, settings: Settings, database: URL, base_url: str, email: str) -> None:
    """A seeded operator or super-admin gets its first passkey the only way the panel allows (an
    enrolment link opened in a password session) in this page's browser, then signs in with it."""
    authenticator = await add_authenticator(page)
    link = await issue_enrolment_link(settings, database, base_url, email)
    await enrol_through_link(page, email, link)
    assert len(await authenticator.credentials()) == 1
    await sign_in_with_passkey(page)
