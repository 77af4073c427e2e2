"""Creating accounts, and the anonymous account flows: registration, email verification, password reset.

Everything an anonymous caller can do answers the same whether or not an account has the address
they typed: the difference, if any, only shows in the mailbox of the address's owner.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.service import auth
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.auth import TokenPurpose
from corral.models.users import AccountRequestKind, User, UserStatus
from corral.notifications.service import absolute_url, mailer
from corral.users import repository
from corral.users.errors import EmailTaken, InvalidAccountInput, InvalidLink
from corral.users.limits import limiter
from corral.users.passwords import hash_password
from corral.users.schemas import PasswordResetForm, RegistrationForm, UserCreate, VerifyOutcome
from corral.users.tokens import email_tokens
from corral.users.validation import clean_email, clean_name, new_password_problems

VERIFY_PATH = "/verify"
RESET_PATH = "/password/reset"
FORGOT_PATH = "/password/forgot"
# Who did something before anyone is signed in.
ANONYMOUS = Actor(kind="user", label="anonymous")


def _actor(user: User) -> Actor:
    return Actor.user(user.id, user.email, user.role)


class UserService:
    async def create(self, session: AsyncSession, data: UserCreate) -> User:
        if await repository.get_by_email(session, data.email) is not None:
            raise EmailTaken()
        active = data.status == UserStatus.ACTIVE
        user = User(
            email=data.email.strip(),
            name=data.name.strip(),
            password_hash=hash_password(data.password),
            role=data.role.value,
            status=data.status.value,
            email_verified_at=utcnow() if active else None,
        )
        repository.add(session, user)
        await session.flush()
        return user

    async def get_by_email(self, session: AsyncSession, email: str) -> User | None:
        return await repository.get_by_email(session, email)


class AccountService:
    # ------------------------------------------------------------ registration

    async def register(self, session: AsyncSession, form: RegistrationForm, *, ip: str | None) -> None:
        """Create an unverified account and email it a verification link.

        When the address already has an account, nothing is created and its owner is emailed
        instead; the caller sees exactly what a new registration sees. Raises ``TooManyRequests``
        or ``InvalidAccountInput`` before writing anything.
        """
        await limiter.check(session, AccountRequestKind.REGISTER, ip=ip)
        email, email_problem = clean_email(form.email)
        name, name_problem = clean_name(form.name)
        problems = {"email": email_problem, "name": name_problem}
        problems.update(new_password_problems(form.password, form.password_confirm, email=email))
        fields = {field: message for field, message in problems.items() if message}
        if fields:
            raise InvalidAccountInput(fields)
        await limiter.record(session, AccountRequestKind.REGISTER, ip=ip, email=email.lower())

        existing = await repository.get_by_email(session, email)
        if existing is not None:
            # Hash anyway, so the answer takes as long as creating an account would.
            hash_password(form.password)
            await self._notify_existing_owner(session, existing)
            await audit.record(
                session,
                ANONYMOUS,
                "user.register",
                target=Target(type="user", id=existing.id),
                payload={"email": email},
                result="failure",
                reason="email_taken",
            )
            return

        user = await users.create(session, UserCreate(email=email, name=name, password=form.password))
        await self.send_verification(session, user)
        await audit.record(
            session,
            _actor(user),
            "user.register",
            target=Target(type="user", id=user.id),
            payload={"email": user.email, "name": user.name},
        )

    async def _notify_existing_owner(self, session: AsyncSession, user: User) -> None:
        """Someone tried to register the address of an existing account: tell its owner, usefully.

        An owner who never verified gets a fresh verification link (the first may be lost). Any
        other owner (unless blocked) gets a password-reset link: someone signing up with an address
        that has an account has usually forgotten it has one.
        """
        if user.status == UserStatus.PENDING_VERIFICATION:
            await self.send_verification(session, user)
        elif user.status != UserStatus.BLOCKED:
            await self._send_reset(session, user)

    async def send_verification(self, session: AsyncSession, user: User) -> None:
        """Email ``user`` a new verification link; earlier links stop working."""
        issued = await email_tokens.issue(session, user, TokenPurpose.VERIFY_EMAIL, email=user.email)
        link = absolute_url(settings_of(session), VERIFY_PATH, query={"token": issued.secret})
        await mailer.queue(
            session,
            to=user.email,
            template="verify_email",
            context={"link": link, "name": user.name, "valid_minutes": issued.valid_minutes},
        )

    # ------------------------------------------------------------ verification

    async def verify_email(self, session: AsyncSession, secret: str | None) -> VerifyOutcome:
        """Follow a verification link: the address is proven; the account becomes active, or waits
        for approval when the panel requires it. ``InvalidLink`` for a used, old or unknown link."""
        token = await email_tokens.consume(session, secret, TokenPurpose.VERIFY_EMAIL)
        user = await repository.get_by_id(session, token.user_id, for_update=True)
        if user is None or (token.email or "").lower() != user.email.lower():
            raise InvalidLink()
        await self.mark_verified(session, user)
        await audit.record(
            session,
            _actor(user),
            "user.email.verify",
            target=Target(type="user", id=user.id),
            payload={"email": user.email, "status": user.status},
        )
        if user.status == UserStatus.ACTIVE:
            return VerifyOutcome(status="active", email=user.email)
        if user.status == UserStatus.PENDING_APPROVAL:
            return VerifyOutcome(status="pending_approval", email=user.email)
        return VerifyOutcome(status="blocked", email=user.email)

    async def mark_verified(self, session: AsyncSession, user: User) -> None:
        """The address is proven, by its link or by staff who checked it: an account waiting for
        verification becomes active (and is welcomed) or waits for approval when the panel requires
        it; links still out for it stop working. The caller holds the user's row lock and audits."""
        user.email_verified_at = utcnow()
        if user.status == UserStatus.PENDING_VERIFICATION:
            approval = settings_of(session).auth.require_admin_approval
            user.status = (UserStatus.PENDING_APPROVAL if approval else UserStatus.ACTIVE).value
            if user.status == UserStatus.ACTIVE:
                await mailer.queue(session, to=user.email, template="welcome", context={"name": user.name})
        await email_tokens.retire(session, user.id, TokenPurpose.VERIFY_EMAIL)
        await session.flush()

    async def resend_verification(self, session: AsyncSession, typed_email: str, *, ip: str | None) -> None:
        """Send a new verification link if the address has an account waiting for one. Answers the
        same either way; rate-limited per IP and per address."""
        email = self._email_or_raise(typed_email)
        await limiter.check(session, AccountRequestKind.VERIFY_RESEND, ip=ip, email=email.lower())
        await limiter.record(session, AccountRequestKind.VERIFY_RESEND, ip=ip, email=email.lower())
        user = await repository.get_by_email(session, email)
        if user is None or user.status != UserStatus.PENDING_VERIFICATION:
            return
        await self.send_verification(session, user)
        await audit.record(
            session,
            ANONYMOUS,
            "user.email.verify_resend",
            target=Target(type="user", id=user.id),
            payload={"email": user.email},
        )

    # ------------------------------------------------------------ password reset

    async def request_password_reset(
        self, session: AsyncSession, typed_email: str, *, ip: str | None
    ) -> None:
        """Email a reset link if the address has an account. Answers the same either way."""
        email = self._email_or_raise(typed_email)
        await limiter.check(session, AccountRequestKind.PASSWORD_FORGOT, ip=ip, email=email.lower())
        await limiter.record(session, AccountRequestKind.PASSWORD_FORGOT, ip=ip, email=email.lower())
        user = await repository.get_by_email(session, email)
        if user is None or user.status == UserStatus.BLOCKED:
            return
        await self._send_reset(session, user)
        await audit.record(
            session,
            ANONYMOUS,
            "user.password.reset_request",
            target=Target(type="user", id=user.id),
            payload={"email": user.email},
        )

    async def _send_reset(self, session: AsyncSession, user: User) -> None:
        issued = await email_tokens.issue(session, user, TokenPurpose.RESET_PASSWORD, email=user.email)
        link = absolute_url(settings_of(session), RESET_PATH, query={"token": issued.secret})
        await mailer.queue(
            session,
            to=user.email,
            template="reset_password",
            context={"link": link, "name": user.name, "valid_minutes": issued.valid_minutes},
        )

    async def check_reset_link(self, session: AsyncSession, secret: str | None) -> None:
        """``InvalidLink`` unless the reset link still works (it stays usable)."""
        await email_tokens.check(session, secret, TokenPurpose.RESET_PASSWORD)

    async def reset_password(self, session: AsyncSession, form: PasswordResetForm) -> None:
        """Set a new password through a reset link; every session of the account ends.

        ``InvalidAccountInput`` leaves the link usable, so the form can be corrected.
        """
        token = await email_tokens.check(session, form.token, TokenPurpose.RESET_PASSWORD, lock=True)
        user = await repository.get_by_id(session, token.user_id, for_update=True)
        if user is None or user.status == UserStatus.BLOCKED:
            raise InvalidLink()
        problems = new_password_problems(form.password, form.password_confirm, email=user.email)
        if problems:
            raise InvalidAccountInput(problems)
        now = utcnow()
        token.used_at = now
        user.password_hash = hash_password(form.password)
        user.password_changed_at = now
        # A pending address change was asked for under the old password: it must be asked again.
        for purpose in (TokenPurpose.RESET_PASSWORD, TokenPurpose.CHANGE_EMAIL):
            await email_tokens.retire(session, user.id, purpose)
        ended = await auth.end_all_sessions(session, user.id, "password_reset")
        await session.flush()
        await send_password_changed(session, user)
        await audit.record(
            session,
            _actor(user),
            "user.password.reset",
            target=Target(type="user", id=user.id),
            payload={"signed_out": ended},
        )

    @staticmethod
    def _email_or_raise(typed: str) -> str:
        email, problem = clean_email(typed)
        if problem is not None:
            raise InvalidAccountInput({"email": problem})
        return email


async def send_password_changed(session: AsyncSession, user: User) -> None:
    """The notice every password change sends, with a way back in if it was not the owner."""
    await mailer.queue(
        session,
        to=user.email,
        template="password_changed",
        context={
            "name": user.name,
            "changed_at": (user.password_changed_at or utcnow()).isoformat(),
            "reset_link": absolute_url(settings_of(session), FORGOT_PATH),
        },
    )


users = UserService()
accounts = AccountService()
