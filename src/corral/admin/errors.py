"""Expected refusals of the admin operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, Forbidden, NotFound


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
