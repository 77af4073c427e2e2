"""Staff operations on accounts: list, inspect, block, unblock, change role, approve, and mark an
email verified or send a new verification email.

Routes already refuse callers without the permission; the service checks it again, because it is
also reached from the JSON API and, later, from the CLI, and because the rules that depend on the
target (yourself, a super admin, the last super admin) can only be decided here. Every change is
audited in the same transaction as the change itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from corral.admin import repository
from corral.admin.errors import (
    AccountBlocked,
    AlreadyBlocked,
    CannotBlockSelf,
    EmailAlreadyVerified,
    LastSuperAdmin,
    NotBlocked,
    NotPendingApproval,
    ProtectedUser,
    RoleUnchanged,
    UserNotFound,
    VerificationRecentlySent,
)
from corral.admin.schemas import (
    EmailAction,
    RoleChange,
    UserAction,
    UserBlock,
    UserDetail,
    UserFilter,
    UserPage,
    UserUnblock,
)
from corral.audit import Target, audit
from corral.auth.enrolment import IssuedEnrolmentLink, passkey_enrolment
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.auth.service import auth
from corral.db.session import settings_of
from corral.kit.clock import utcnow
from corral.kit.errors import PanelError
from corral.models.auth import TokenPurpose
from corral.models.mfa import EnrolmentDelivery
from corral.models.users import User, UserRole, UserStatus
from corral.notifications.service import mailer
from corral.rbac.permissions import Permission
from corral.users.service import accounts
from corral.users.tokens import email_tokens

RECENT_EVENTS = 20
# At most one verification email per account this often, whoever asks for it.
RESEND_INTERVAL = timedelta(minutes=1)
# The states a block can be lifted back to; anything else falls back to what the row shows.
_RESTORABLE = frozenset({UserStatus.PENDING_VERIFICATION, UserStatus.PENDING_APPROVAL, UserStatus.ACTIVE})


def _need(principal: Principal, *permissions: Permission) -> None:
    if not all(principal.can(permission) for permission in permissions):
        raise MissingPermission()


def _target(user: User) -> Target:
    return Target(type="user", id=user.id)


# The rules that depend on who acts on whom. Each answers with the refusal, or None when allowed;
# the actions raise it, and actions_for() uses the same answers to decide which buttons to show.
def _block_refusal(principal: Principal, user: User) -> PanelError | None:
    if not (principal.can(Permission.USERS_READ) and principal.can(Permission.USERS_BLOCK)):
        return MissingPermission()
    if user.id == principal.user_id:
        return CannotBlockSelf()
    if user.role == UserRole.SUPER_ADMIN and principal.role != UserRole.SUPER_ADMIN:
        return ProtectedUser()
    if user.status == UserStatus.BLOCKED:
        return AlreadyBlocked()
    return None


def _unblock_refusal(principal: Principal, user: User) -> PanelError | None:
    if not (principal.can(Permission.USERS_READ) and principal.can(Permission.USERS_BLOCK)):
        return MissingPermission()
    if user.status != UserStatus.BLOCKED:
        return NotBlocked()
    if user.role == UserRole.SUPER_ADMIN and principal.role != UserRole.SUPER_ADMIN:
        return ProtectedUser("Only a super admin can unblock a super admin.")
    return None


def _approve_refusal(principal: Principal, user: User) -> PanelError | None:
    if not (principal.can(Permission.USERS_READ) and principal.can(Permission.USERS_APPROVE)):
        return MissingPermission()
    if user.status != UserStatus.PENDING_APPROVAL:
        return NotPendingApproval()
    return None


def _role_refusal(principal: Principal, user: User) -> PanelError | None:
    if not (principal.can(Permission.USERS_READ) and principal.can(Permission.USERS_ROLES)):
        return MissingPermission()
    return None


def _verify_refusal(principal: Principal, user: User) -> PanelError | None:
    """Marking verified vouches for an address with no proof from its owner. A staff account's
    address is where its passkey enrolment link goes, so only a super admin vouches for one."""
    if not (principal.can(Permission.USERS_READ) and principal.can(Permission.USERS_APPROVE)):
        return MissingPermission()
    if user.role != UserRole.CUSTOMER and principal.role != UserRole.SUPER_ADMIN:
        return ProtectedUser("Only a super admin can mark a staff account's email verified.")
    if user.status == UserStatus.BLOCKED:
        return AccountBlocked()
    return None


def _verify_button_refusal(principal: Principal, user: User) -> PanelError | None:
    # The action itself accepts a verified address (nothing to do); the button is not shown for it.
    refusal = _verify_refusal(principal, user)
    if refusal is None and user.email_verified_at is not None:
        return EmailAlreadyVerified()
    return refusal


def _resend_refusal(principal: Principal, user: User) -> PanelError | None:
    if not (principal.can(Permission.USERS_READ) and principal.can(Permission.USERS_APPROVE)):
        return MissingPermission()
    if user.status == UserStatus.BLOCKED:
        return AccountBlocked()
    if user.email_verified_at is not None:
        return EmailAlreadyVerified()
    return None


def _check(refusal: PanelError | None) -> None:
    if refusal is not None:
        raise refusal


class AdminUserService:
    async def search(self, session: AsyncSession, principal: Principal, filters: UserFilter) -> UserPage:
        """One page of users matching ``filters``: a fixed handful of queries, whatever the page size."""
        _need(principal, Permission.USERS_READ)
        users, more = await repository.page(session, filters)
        first, last = (users[0].id, users[-1].id) if users else (None, None)
        if filters.after is not None:
            older, newer = last, first if more else None
        else:
            older = last if more else None
            newer = first if filters.before is not None else None
        return UserPage(
            users=users,
            total=await repository.count(session, filters),
            older=older,
            newer=newer,
            pending_approval=await repository.count_with_status(session, UserStatus.PENDING_APPROVAL),
        )

    async def get(self, session: AsyncSession, principal: Principal, user_id: int) -> User:
        _need(principal, Permission.USERS_READ)
        user = await repository.get(session, user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def detail(self, session: AsyncSession, principal: Principal, user_id: int) -> UserDetail:
        """The user, how many sessions they have open, and (for audit readers) what happened to them."""
        user = await self.get(session, principal, user_id)
        policy = settings_of(session).auth
        now = utcnow()
        sessions = await repository.active_session_count(
            session, user.id, now, now - timedelta(minutes=policy.session_idle_minutes)
        )
        events = None
        if principal.can(Permission.AUDIT_READ):
            events = await audit.list(session, target=_target(user), limit=RECENT_EVENTS)
        return UserDetail(
            user=user,
            active_sessions=sessions,
            events=events,
            actions=self.actions_for(principal, user),
            enrolment=await passkey_enrolment.status(session, user),
        )

    def actions_for(self, principal: Principal, user: User) -> frozenset[UserAction]:
        """What ``principal`` may do to ``user`` now: the buttons a page shows. Same rules as the
        actions themselves, which check again when they run."""
        refusals: dict[UserAction, Callable[[Principal, User], PanelError | None]] = {
            "block": _block_refusal,
            "unblock": _unblock_refusal,
            "approve": _approve_refusal,
            "role": _role_refusal,
            "verify_email": _verify_button_refusal,
            "resend_verification": _resend_refusal,
        }
        return frozenset(action for action, refusal in refusals.items() if refusal(principal, user) is None)

    async def _locked(self, session: AsyncSession, user_id: int) -> User:
        user = await repository.get_for_update(session, user_id)
        if user is None:
            raise UserNotFound()
        return user

    async def block(self, session: AsyncSession, principal: Principal, user_id: int, data: UserBlock) -> User:
        """Block the account and end every one of its sessions now (their next request is refused)."""
        _need(principal, Permission.USERS_READ, Permission.USERS_BLOCK)
        # Locked as in change_role: two super admins blocking each other at once must not leave
        # the panel with no active super admin.
        super_admins = await repository.lock_active_super_admins(session)
        user = await self._locked(session, user_id)
        _check(_block_refusal(principal, user))
        if user.id in super_admins and len(super_admins) == 1:
            raise LastSuperAdmin()
        previous = user.status
        user.status = UserStatus.BLOCKED.value
        user.blocked_at = utcnow()
        user.blocked_reason = data.reason
        ended = await auth.end_all_sessions(session, user.id, "blocked")
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "user.block",
            target=_target(user),
            # from_status is what unblock restores. (A key naming "session" would be redacted.)
            payload={"from_status": previous, "signed_out": ended},
            reason=data.reason,
        )
        return user

    async def unblock(
        self, session: AsyncSession, principal: Principal, user_id: int, data: UserUnblock
    ) -> User:
        """Lift a block, returning the account to the state it was blocked from.

        A blocked account that had not yet verified its email (or been approved) goes back to
        waiting for that, so unblocking never skips verification or approval. The earlier state is
        read from the ``user.block`` audit event; without one (a block made outside this service)
        the account is active if its email is verified and waits for verification otherwise.
        """
        _need(principal, Permission.USERS_READ, Permission.USERS_BLOCK)
        user = await self._locked(session, user_id)
        _check(_unblock_refusal(principal, user))
        restored = await self._status_before_block(session, user)
        user.status = restored.value
        user.blocked_at = None
        user.blocked_reason = None
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "user.unblock",
            target=_target(user),
            payload={"to_status": restored.value},
            reason=data.reason,
        )
        return user

    async def _status_before_block(self, session: AsyncSession, user: User) -> UserStatus:
        events = await audit.list(session, action="user.block", target=_target(user), limit=1)
        recorded: Any = events[0].payload.get("from_status") if events else None
        if recorded in {status.value for status in _RESTORABLE}:
            return UserStatus(recorded)
        return UserStatus.ACTIVE if user.email_verified_at is not None else UserStatus.PENDING_VERIFICATION

    async def change_role(
        self, session: AsyncSession, principal: Principal, user_id: int, data: RoleChange
    ) -> User:
        """Give the account another role. Its sessions get new ids on their next request, and the
        last active super admin cannot be demoted (nobody could then manage roles)."""
        _need(principal, Permission.USERS_READ, Permission.USERS_ROLES)
        # The super admins are locked before the target (always in this order), so two super admins
        # demoting each other at once queue up instead of deadlocking, and the second is refused.
        super_admins = await repository.lock_active_super_admins(session)
        user = await self._locked(session, user_id)
        _check(_role_refusal(principal, user))
        previous = user.role
        if previous == data.role:
            raise RoleUnchanged()
        if user.id in super_admins and len(super_admins) == 1:
            raise LastSuperAdmin()
        user.role = data.role.value
        await auth.privileges_changed(session, user.id)
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "user.role.change",
            target=_target(user),
            payload={"from": previous, "to": data.role.value},
            reason=data.reason,
        )
        # Promoted to operator or super-admin without a passkey: the first passkey needs a link
        # to the verified address (seed 003); the page tells the super admin what happened.
        await passkey_enrolment.after_role_change(session, principal.actor, user)
        return user

    async def issue_enrolment_link(
        self, session: AsyncSession, principal: Principal, user_id: int, delivery: EnrolmentDelivery
    ) -> IssuedEnrolmentLink:
        """A passkey enrolment link for a privileged account without a passkey, emailed to its
        verified address or returned once for the super admin to hand over (audited either way)."""
        _need(principal, Permission.USERS_READ, Permission.USERS_ROLES)
        user = await self._locked(session, user_id)
        _check(_role_refusal(principal, user))
        return await passkey_enrolment.issue(session, principal.actor, user, delivery)

    async def approve(self, session: AsyncSession, principal: Principal, user_id: int) -> User:
        """Let a verified account that waits for approval in, and tell its owner by email."""
        _need(principal, Permission.USERS_READ, Permission.USERS_APPROVE)
        user = await self._locked(session, user_id)
        _check(_approve_refusal(principal, user))
        user.status = UserStatus.ACTIVE.value
        user.approved_at = utcnow()
        await session.flush()
        # "welcome" says the account is ready to use, which is exactly what approval means.
        await mailer.queue(session, to=user.email, template="welcome", context={"name": user.name})
        await audit.record(session, principal.actor, "user.approve", target=_target(user))
        return user

    async def mark_email_verified(
        self, session: AsyncSession, principal: Principal, user_id: int
    ) -> EmailAction:
        """Staff vouch for the account's address (checked some other way): as if its owner had
        followed the link. Idempotent: an address already verified is left as it is, unaudited."""
        _need(principal, Permission.USERS_READ, Permission.USERS_APPROVE)
        user = await self._locked(session, user_id)
        _check(_verify_refusal(principal, user))
        if user.email_verified_at is not None:
            return EmailAction(user, "already_verified")
        previous = user.status
        await accounts.mark_verified(session, user)
        await audit.record(
            session,
            principal.actor,
            "user.email.mark_verified",
            target=_target(user),
            payload={"email": user.email, "from_status": previous, "to_status": user.status},
        )
        return EmailAction(user, "email_verified")

    async def resend_verification(
        self, session: AsyncSession, principal: Principal, user_id: int
    ) -> EmailAction:
        """Email the account a new verification link (earlier ones stop working), at most once a
        minute per account, counting the links its owner asked for too."""
        _need(principal, Permission.USERS_READ, Permission.USERS_APPROVE)
        # The row lock makes two clicks at once queue up: the second sees the first one's link.
        user = await self._locked(session, user_id)
        _check(_resend_refusal(principal, user))
        latest = await email_tokens.pending(session, user.id, TokenPurpose.VERIFY_EMAIL)
        if latest is not None and latest.created_at + RESEND_INTERVAL > utcnow():
            raise VerificationRecentlySent(latest.created_at + RESEND_INTERVAL)
        await accounts.send_verification(session, user)
        await audit.record(
            session,
            principal.actor,
            "user.email.verify_resend",
            target=_target(user),
            payload={"email": user.email},
        )
        return EmailAction(user, "verification_sent")


admin_users = AdminUserService()
