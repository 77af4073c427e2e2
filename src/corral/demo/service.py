"""Demo data: a super-admin and a customer whose credentials are printed at start-up."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.enrolment import passkey_enrolment
from corral.auth.passkey_errors import EnrolmentNotApplicable, EnrolmentNotNeeded
from corral.demo.secrets import load_private_json, write_private_json
from corral.kit.actors import Actor
from corral.models.mfa import EnrolmentDelivery
from corral.models.users import UserRole, UserStatus
from corral.rbac.permissions import PASSKEY_ONLY_ROLES
from corral.users.schemas import UserCreate
from corral.users.service import users

CREDENTIALS_FILE = "demo-credentials.json"


@dataclass(frozen=True)
class DemoAccount:
    role: UserRole
    email: str
    name: str


DEMO_ACCOUNTS = (
    DemoAccount(UserRole.SUPER_ADMIN, "admin@demo.example.com", "Demo Administrator"),
    DemoAccount(UserRole.CUSTOMER, "customer@demo.example.com", "Demo Customer"),
)


@dataclass(frozen=True)
class DemoCredential:
    role: str
    email: str
    password: str
    # A staff account's first passkey comes only through a single-use link (seed 003): a fresh
    # one at every start while it has none. Not part of equality: it changes on every start.
    enrolment_link: str | None = field(default=None, compare=False)


class DemoService:
    async def seed(self, session: AsyncSession, data_dir: Path) -> list[DemoCredential]:
        """Create the demo accounts that are missing; return every demo account's credentials.

        Passwords are random per installation and kept (0600) in the data directory, so they can
        be printed again on the next start without being recoverable from the database.
        """
        path = data_dir / CREDENTIALS_FILE
        passwords = load_private_json(path)
        for account in DEMO_ACCOUNTS:
            if await users.get_by_email(session, account.email) is not None:
                continue
            password = passwords.setdefault(account.email, secrets.token_urlsafe(12))
            user = await users.create(
                session,
                UserCreate(
                    email=account.email,
                    name=account.name,
                    password=password,
                    role=account.role,
                    status=UserStatus.ACTIVE,
                ),
            )
            await audit.record(
                session,
                Actor.cli("demo"),
                "user.create",
                target=Target(type="user", id=user.id),
                payload={"email": user.email, "role": user.role, "demo": True},
            )
        write_private_json(path, passwords)
        return [
            DemoCredential(
                role=account.role.value,
                email=account.email,
                password=passwords[account.email],
                enrolment_link=await self._enrolment_link(session, account),
            )
            for account in DEMO_ACCOUNTS
            if account.email in passwords
        ]

    async def _enrolment_link(self, session: AsyncSession, account: DemoAccount) -> str | None:
        """A new passkey enrolment link for a demo staff account without a passkey, else None."""
        if account.role not in PASSKEY_ONLY_ROLES:
            return None
        try:
            issued = await passkey_enrolment.issue_for_email(
                session, Actor.cli("demo"), account.email, EnrolmentDelivery.CLI
            )
        except (EnrolmentNotNeeded, EnrolmentNotApplicable):
            return None  # it has a passkey already (or was changed by hand)
        return issued.link


demo = DemoService()
