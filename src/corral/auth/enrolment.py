"""Enrolment links: the only way an operator's or super-admin's first passkey is added.

Seed 003: a stolen password alone must never grant privileged access. A privileged account signed
in with its password acts as a customer (auth.service), and the ordinary "add a passkey" route
refuses its first passkey (auth.passkeys), because a password step-up would otherwise turn a
password into staff access. Instead the first passkey needs two things at once:

- a session signed in as that account (its password, and its app code if it has one), and
- a single-use link that reached the owner out of band: emailed to the account's verified
  address when it is promoted, issued by a super-admin (emailed or handed over), or printed by
  ``corral admin enrolment-link`` for the first super-admin.

Neither alone is enough: a stolen password has no link, and a link forwarded or read from a
compromised mailbox opens nothing without the account's sign-in. A link carries 256 random bits,
is stored only as its SHA-256, works for one hour, once, only for its own account, and only
while it is the newest: issuing one retires the others. Every issue, use and refusal (unknown,
expired, used, replaced, another account's) is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth import repository
from corral.auth.passkey_errors import (
    EnrolmentEmailUnverified,
    EnrolmentLinkForAnotherAccount,
    EnrolmentLinkInvalid,
    EnrolmentNotApplicable,
    EnrolmentNotNeeded,
)
from corral.auth.passkeys import passkeys
from corral.auth.principal import Principal
from corral.auth.secrets import new_secret, secret_hash
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.kit.errors import PanelError
from corral.models.mfa import EnrolmentDelivery, Passkey, PasskeyEnrolmentLink
from corral.models.users import User, UserStatus
from corral.notifications.service import absolute_url, mailer
from corral.rbac.permissions import PASSKEY_ONLY_ROLES
from corral.users import repository as users_repository

ENROLMENT_LINK_TTL = timedelta(hours=1)
ENROL_PATH = "/account/security/passkeys/enrol"
# Longer than any real token (43 characters); anything longer is not worth hashing.
MAX_TOKEN_LENGTH = 200

RoleChangeOutcome = Literal["not_needed", "emailed", "email_unverified", "inactive"]


@dataclass(frozen=True)
class IssuedEnrolmentLink:
    """A link just issued. ``link`` holds the secret: show it once or send it, never store it."""

    link: str
    email: str
    delivery: EnrolmentDelivery
    expires_at: datetime


@dataclass(frozen=True)
class EnrolmentStatus:
    """Where a privileged account stands with its first passkey, for the admin user page."""

    needed: bool  # privileged, active, and no passkey yet
    has_passkey: bool
    email_verified: bool
    # The newest link still usable, if any (its secret is not recoverable).
    live_link: PasskeyEnrolmentLink | None


def _usable(link: PasskeyEnrolmentLink, now: datetime) -> bool:
    return link.used_at is None and link.revoked_at is None and link.expires_at > now


class PasskeyEnrolmentService:
    # -- issuing ------------------------------------------------------------------------------

    async def issue(
        self, session: AsyncSession, actor: Actor, user: User, delivery: EnrolmentDelivery
    ) -> IssuedEnrolmentLink:
        """A new link for ``user`` (earlier ones stop working); emailed when ``delivery`` is EMAIL.

        Refuses ``EnrolmentNotApplicable`` (not an active operator or super-admin),
        ``EnrolmentNotNeeded`` (it has a passkey) and ``EnrolmentEmailUnverified`` (emailing
        to an address nobody proved). Callers check who may issue; this checks for whom.
        """
        if user.role not in PASSKEY_ONLY_ROLES or user.status != UserStatus.ACTIVE:
            raise EnrolmentNotApplicable()
        if await repository.passkey_count(session, user.id) > 0:
            raise EnrolmentNotNeeded()
        if delivery == EnrolmentDelivery.EMAIL and user.email_verified_at is None:
            raise EnrolmentEmailUnverified()
        now = utcnow()
        replaced = await repository.revoke_enrolment_links(session, user.id, now)
        secret = new_secret()
        row = PasskeyEnrolmentLink(
            token_hash=secret_hash(secret),
            user_id=user.id,
            delivery=delivery.value,
            created_at=now,
            expires_at=now + ENROLMENT_LINK_TTL,
        )
        session.add(row)
        await session.flush()
        link = absolute_url(settings_of(session), ENROL_PATH, query={"token": secret})
        if delivery == EnrolmentDelivery.EMAIL:
            await mailer.queue(
                session,
                to=user.email,
                template="passkey_enrolment",
                context={
                    "link": link,
                    "name": user.name,
                    "role": user.role,
                    "valid_minutes": int(ENROLMENT_LINK_TTL.total_seconds() // 60),
                },
            )
        await audit.record(
            session,
            actor,
            "auth.passkey_enrolment.issue",
            target=Target(type="user", id=user.id),
            payload={
                "link_id": row.id,
                "delivery": delivery.value,
                "email": user.email,
                "expires_at": row.expires_at.isoformat(),
                "replaced": replaced,
            },
        )
        return IssuedEnrolmentLink(link=link, email=user.email, delivery=delivery, expires_at=row.expires_at)

    async def issue_for_email(
        self, session: AsyncSession, actor: Actor, email: str, delivery: EnrolmentDelivery
    ) -> IssuedEnrolmentLink:
        """``issue`` for the account with this email (the CLI's and the demo's way in)."""
        user = await users_repository.get_by_email(session, email)
        if user is None:
            raise EnrolmentNotApplicable("No account has that email address.")
        return await self.issue(session, actor, user, delivery)

    async def after_role_change(self, session: AsyncSession, actor: Actor, user: User) -> RoleChangeOutcome:
        """Called in the transaction that changed ``user``'s role.

        Promoted to operator or super-admin without a passkey: a link goes to the verified email
        at once. Demoted: outstanding links are retired (a customer adds passkeys normally).
        """
        if user.role not in PASSKEY_ONLY_ROLES:
            if await repository.revoke_enrolment_links(session, user.id, utcnow()):
                await audit.record(
                    session,
                    actor,
                    "auth.passkey_enrolment.revoke",
                    target=Target(type="user", id=user.id),
                    payload={"reason": "role_change", "role": user.role},
                )
            return "not_needed"
        if await repository.passkey_count(session, user.id) > 0:
            return "not_needed"
        if user.status != UserStatus.ACTIVE:
            return "inactive"
        if user.email_verified_at is None:
            return "email_unverified"
        await self.issue(session, actor, user, EnrolmentDelivery.EMAIL)
        return "emailed"

    async def status(self, session: AsyncSession, user: User) -> EnrolmentStatus | None:
        """None for accounts that never need a link (customers, support, billing)."""
        if user.role not in PASSKEY_ONLY_ROLES:
            return None
        count = await repository.passkey_count(session, user.id)
        live = await repository.live_enrolment_link(session, user.id, utcnow()) if count == 0 else None
        return EnrolmentStatus(
            needed=count == 0 and user.status == UserStatus.ACTIVE,
            has_passkey=count > 0,
            email_verified=user.email_verified_at is not None,
            live_link=live,
        )

    # -- using --------------------------------------------------------------------------------

    async def check(
        self, session: AsyncSession, principal: Principal, secret: str | None, *, lock: bool = False
    ) -> PasskeyEnrolmentLink:
        """The link for ``secret`` if the signed-in ``principal`` may use it now; refuses otherwise.

        The refusal's audit record is flushed before the error is raised: callers answer with
        the error (they do not let it roll the request back), so the record is committed.
        """
        link = None
        if secret and len(secret) <= MAX_TOKEN_LENGTH and secret.isprintable():
            link = await repository.enrolment_link(session, secret_hash(secret), lock=lock)
        if link is None:
            await self._refused(session, principal, None, "unknown")
            raise EnrolmentLinkInvalid()
        refusal = await self._refusal(session, principal, link)
        if refusal is None:
            return link
        await self._refused(session, principal, link, refusal.details["reason"])
        raise refusal

    async def _refusal(
        self, session: AsyncSession, principal: Principal, link: PasskeyEnrolmentLink
    ) -> PanelError | None:
        now = utcnow()
        if link.user_id != principal.user_id:
            return EnrolmentLinkForAnotherAccount(details={"reason": "other_account"})
        if link.used_at is not None:
            return EnrolmentLinkInvalid(details={"reason": "used"})
        if link.revoked_at is not None:
            return EnrolmentLinkInvalid(details={"reason": "replaced"})
        if link.expires_at <= now:
            return EnrolmentLinkInvalid(details={"reason": "expired"})
        if principal.role not in PASSKEY_ONLY_ROLES:
            return EnrolmentNotApplicable(details={"reason": "not_privileged"})
        if await repository.passkey_count(session, principal.user_id) > 0:
            return EnrolmentNotNeeded(details={"reason": "has_passkey"})
        return None

    async def _refused(
        self, session: AsyncSession, principal: Principal, link: PasskeyEnrolmentLink | None, reason: str
    ) -> None:
        payload: dict[str, Any] = {"link_id": link.id if link is not None else None}
        # Filed under the account the link belongs to, so another account trying it shows on the
        # owner's page (the actor says who tried).
        owner = link.user_id if link is not None else principal.user_id
        await audit.record(
            session,
            principal.actor,
            "auth.passkey_enrolment.use",
            target=Target(type="user", id=owner),
            payload=payload,
            result="failure",
            reason=reason,
        )

    async def registration_options(
        self, session: AsyncSession, principal: Principal, secret: str | None
    ) -> dict[str, Any]:
        link = await self.check(session, principal, secret)
        return await passkeys.registration_options(session, principal, enrolment_link=link)

    async def finish(
        self,
        session: AsyncSession,
        principal: Principal,
        secret: str | None,
        response_json: dict[str, Any],
        name: str,
    ) -> Passkey:
        """Register the first passkey and spend the link, in one transaction.

        The link's row stays locked from the check to the commit, so of two requests presenting
        it at once the second waits and then finds it used. A ceremony that fails leaves the
        link usable (only the challenge is spent).
        """
        link = await self.check(session, principal, secret, lock=True)
        key = await passkeys.finish_registration(session, principal, response_json, name, enrolment_link=link)
        now = utcnow()
        link.used_at = now
        await session.flush()
        await repository.revoke_enrolment_links(session, principal.user_id, now)
        await audit.record(
            session,
            principal.actor,
            "auth.passkey_enrolment.use",
            target=Target(type="user", id=principal.user_id),
            payload={"link_id": link.id, "passkey_id": key.id, "delivery": link.delivery},
        )
        return key


passkey_enrolment = PasskeyEnrolmentService()
