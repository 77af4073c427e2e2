"""Expected refusals of the admin operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, Forbidden, NotFound
from corral.users.errors import TooManyRequests


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = "That user does not exist."


class CannotBlockSelf(Conflict):
    code = "cannot_block_self"
    default_message = "You cannot block your own account."


class ProtectedUser(Forbidden):
    code = "protected_user"
    default_message = "Only a super admin can block a super admin."


class AlreadyBlocked(Conflict):
    code = "already_blocked"
    default_message = "This account is already blocked."


class NotBlocked(Conflict):
    code = "not_blocked"
    default_message = "This account is not blocked."


class RoleUnchanged(Conflict):
    code = "role_unchanged"
    default_message = "The account already has that role."


class LastSuperAdmin(Conflict):
    code = "last_super_admin"
    default_message = "This is the last active super admin: promote someone else first."


class NotPendingApproval(Conflict):
    code = "not_pending_approval"
    default_message = "This account is not waiting for approval."


class AccountBlocked(Conflict):
    code = "account_blocked"
    default_message = "This account is blocked: unblock it first."


class EmailAlreadyVerified(Conflict):
    code = "email_already_verified"
    default_message = "This email address is already verified; there is nothing to resend."


class VerificationRecentlySent(TooManyRequests):
    code = "verification_recently_sent"
    default_message = "A verification email went to this address less than a minute ago. Try again shortly."
