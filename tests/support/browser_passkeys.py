"""Passkeys in Chromium: its virtual authenticator (CDP ``WebAuthn.*``) holds the credentials.

``add_authenticator`` gives a page a platform authenticator with user verification, so the
panel's own script registers and uses passkeys exactly as on a laptop with a fingerprint reader.
``give_passkey`` plants a credential for a seeded staff account (key in the authenticator, public
key in the panel's database), for browser tests that need a passkey sign-in before they start.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.async_api import CDPSession, Page, expect
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.auth.passkeys import user_handle
from corral.config import Settings
from corral.models.mfa import Passkey
from corral.models.users import User
from tests.support.authenticator import cose_public_key


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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def give_passkey(
    authenticator: VirtualAuthenticator, settings: Settings, database: URL, base_url: str, email: str
) -> None:
    """A passkey for ``email`` known to both the authenticator and the panel."""
    host = re.sub(r"^https?://([^:/]+).*$", r"\1", base_url)
    key = ec.generate_private_key(ec.SECP256R1())
    credential_id = secrets.token_bytes(32)
    engine = create_async_engine(database)
    try:
        async with AsyncSession(engine) as session:
            user = (await session.execute(select(User).where(User.email == email))).scalar_one()
            handle = user_handle(settings, user.id)
            session.add(
                Passkey(
                    user_id=user.id,
                    name="Test laptop",
                    credential_id=credential_id,
                    public_key=cose_public_key(key),
                    sign_count=0,
                    transports=["internal"],
                )
            )
            await session.commit()
    finally:
        await engine.dispose()
    private = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    await authenticator.cdp.send(
        "WebAuthn.addCredential",
        {
            "authenticatorId": authenticator.authenticator_id,
            "credential": {
                "credentialId": _b64(credential_id),
                "isResidentCredential": True,
                "rpId": host,
                "privateKey": _b64(private),
                "userHandle": _b64(handle),
                "signCount": 0,
            },
        },
    )


async def sign_in_with_passkey(page: Page) -> None:
    """Use the sign-in page's passkey button; the virtual authenticator answers."""
    await page.goto("/login", wait_until="networkidle")
    await page.get_by_test_id("passkey-sign-in").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await page.wait_for_function("() => window.htmx && window.Alpine && window.Corral")


async def staff_sign_in(page: Page, settings: Settings, database: URL, base_url: str, email: str) -> None:
    """Give a seeded staff account a passkey in this page's browser and sign in with it."""
    authenticator = await add_authenticator(page)
    await give_passkey(authenticator, settings, database, base_url, email)
    await sign_in_with_passkey(page)
