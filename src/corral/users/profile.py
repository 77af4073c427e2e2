"""A signed-in user's own account: name, email address and password.

An address change is only a request until the link sent to the new address is followed; changing
the password (or the address) needs the current password, so a session left open on a shared
computer is not enough to take the account over.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth import repository as auth_repository
from corral.auth.principal import Principal
from corral.auth.service import auth
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.auth import AuthMethod, TokenPurpose
from corral.models.users import User
from corral.notifications.schemas import TEMPLATES
from corral.notifications.service import absolute_url, mailer
from corral.users import repository
from corral.users.errors import EmailInUse, InvalidAccountInput, InvalidLink
from corral.users.passwords import hash_password, verify_password
from corral.users.schemas import (
    AccountRead,
    AccountUpdate,
    EmailChangeForm,
    PasswordChanged,
    PasswordChangeForm,
)
from corral.users.service import send_password_changed
from corral.users.tokens import email_tokens
from corral.users.validation import clean_email, clean_name, new_password_problems

CONFIRM_EMAIL_PATH = "/account/email/confirm"
WRONG_PASSWORD = "That is not your current password."  # noqa: S105 (a message)
# The notice to the address an account moved away from. notifications has no template for it yet;
# until one is declared under this name the notice is not sent (see the lead's to-do).
OLD_ADDRESS_TEMPLATE = "email_changed"
STAFF_EMAIL_NEEDS_PASSKEY = (
    "Staff accounts change their email address only in a session signed in with a passkey: it is "
    "where their passkey enrolment links go. Sign in with your passkey (or ask a super-admin)."
)


class ProfileService:
    async def read(self, session: AsyncSession, principal: Principal) -> AccountRead:
        user = principal.user
        pending = await email_tokens.pending(session, user.id, TokenPurpose.CHANGE_EMAIL)
        account = AccountRead.model_validate(user)
        return account.model_copy(update={"pending_email": pending.email if pending else None})

    async def update(self, session: AsyncSession, principal: Principal, data: AccountUpdate) -> AccountRead:
        """Change what the API and the profile form may change without a password: the name."""
        user = principal.user
        changes: dict[str, dict[str, str]] = {}
        if data.name is not None:
            name, problem = clean_name(data.name)
            if problem is not None:
                raise InvalidAccountInput({"name": problem})
            if name != user.name:
                changes["name"] = {"from": user.name, "to": name}
                user.name = name
        if changes:
            await session.flush()
            await audit.record(
                session,
                principal.actor,
                "user.profile.update",
                target=Target(type="user", id=user.id),
                payload=changes,
            )
        return await self.read(session, principal)

    async def request_email_change(
        self, session: AsyncSession, principal: Principal, form: EmailChangeForm
    ) -> str:
        """Send a confirmation link to the new address; returns that address. The account keeps its
        current address until the link is followed."""
        user = principal.user
        email, problem = clean_email(form.new_email)
        fields: dict[str, str] = {}
        if problem is not None:
            fields["new_email"] = problem
        elif email.lower() == user.email.lower():
            fields["new_email"] = "That is already your email address."
        if not self._password_ok(user, form.current_password):
            fields["current_password"] = WRONG_PASSWORD
        if principal.elevation_withheld and "new_email" not in fields:
            # An operator's or super-admin's address is where its passkey enrolment links go: a
            # password must not be able to redirect them to a mailbox of the password thief's.
            fields["new_email"] = STAFF_EMAIL_NEEDS_PASSKEY
        if fields:
            raise InvalidAccountInput(fields)
        # An address that belongs to another account is not refused here: saying so would tell any
        # signed-in user which addresses have accounts. The link fails for it instead, and only the
        # owner of that mailbox can follow it.
        issued = await email_tokens.issue(session, user, TokenPurpose.CHANGE_EMAIL, email=email)
        link = absolute_url(settings_of(session), CONFIRM_EMAIL_PATH, query={"token": issued.secret})
        await mailer.queue(
            session,
            to=email,
            template="change_email",
            context={
                "link": link,
                "name": user.name,
                "new_email": email,
                "valid_minutes": issued.valid_minutes,
            },
        )
        await audit.record(
            session,
            principal.actor,
            "user.email.change_request",
            target=Target(type="user", id=user.id),
            payload={"from": user.email, "to": email},
        )
        return email

    async def cancel_email_change(self, session: AsyncSession, principal: Principal) -> None:
        await email_tokens.retire(session, principal.user_id, TokenPurpose.CHANGE_EMAIL)
        await audit.record(
            session,
            principal.actor,
            "user.email.change_cancel",
            target=Target(type="user", id=principal.user_id),
        )

    async def confirm_email_change(self, session: AsyncSession, secret: str | None) -> str:
        """Follow the link sent to the new address: it becomes the account's (verified) address.

        Works without being signed in: the link itself proves the new mailbox, and the request
        was made with the password. Returns the new address.
        """
        token = await email_tokens.consume(session, secret, TokenPurpose.CHANGE_EMAIL)
        user = await repository.get_by_id(session, token.user_id, for_update=True)
        if user is None or not token.email:
            raise InvalidLink()
        owner = await repository.get_by_email(session, token.email)
        if owner is not None and owner.id != user.id:
            raise EmailInUse()
        old = user.email
        now = utcnow()
        user.email = token.email
        user.email_verified_at = now
        # Links sent to the old address (reset, verification, passkey enrolment) must not outlive it.
        for purpose in TokenPurpose:
            await email_tokens.retire(session, user.id, purpose)
        await auth_repository.revoke_enrolment_links(session, user.id, now)
        await session.flush()
        await self._notify_old_address(session, user, old)
        await audit.record(
            session,
            _actor_of(user),
            "user.email.change",
            target=Target(type="user", id=user.id),
            payload={"from": old, "to": user.email},
        )
        return user.email

    async def _notify_old_address(self, session: AsyncSession, user: User, old: str) -> None:
        if OLD_ADDRESS_TEMPLATE not in TEMPLATES:
            return
        await mailer.queue(
            session,
            to=old,
            template=OLD_ADDRESS_TEMPLATE,
            context={"name": user.name, "new_email": user.email, "changed_at": utcnow().isoformat()},
        )

    async def change_password(
        self,
        session: AsyncSession,
        principal: Principal,
        form: PasswordChangeForm,
        *,
        ip: str | None,
        user_agent: str | None,
    ) -> PasswordChanged | None:
        """Set a new password. Every session of the account ends, this one included; a signed-in
        browser gets a brand-new session (returned, for its cookie) so it stays signed in."""
        user = principal.user
        fields = new_password_problems(form.password, form.password_confirm, email=user.email)
        if not self._password_ok(user, form.current_password):
            fields["current_password"] = WRONG_PASSWORD
        elif "password" not in fields and form.password == form.current_password:
            fields["password"] = "Choose a password different from your current one."  # noqa: S105
        if fields:
            raise InvalidAccountInput(fields)
        now = utcnow()
        user.password_hash = hash_password(form.password)
        user.password_changed_at = now
        for purpose in (TokenPurpose.RESET_PASSWORD, TokenPurpose.CHANGE_EMAIL):
            await email_tokens.retire(session, user.id, purpose)
        ended = await auth.end_all_sessions(session, user.id, "password_changed")
        changed = None
        if principal.session is not None:
            method = AuthMethod(principal.session.auth_method)
            secret = await auth.start_session(session, user, ip=ip, user_agent=user_agent, method=method)
            changed = PasswordChanged(session_secret=secret)
        await session.flush()
        await send_password_changed(session, user)
        await audit.record(
            session,
            principal.actor,
            "user.password.change",
            target=Target(type="user", id=user.id),
            payload={"others_signed_out": max(0, ended - (1 if principal.session else 0))},
        )
        return changed

    @staticmethod
    def _password_ok(user: User, password: str) -> bool:
        return bool(user.password_hash) and verify_password(user.password_hash or "", password)


def _actor_of(user: User) -> Actor:
    return Actor.user(user.id, user.email, user.role)


profile = ProfileService()
