"""Every ORM table, one module per aggregate. Alembic imports this package to see them all."""

from corral.db.base import Base
from corral.models.audit import AuditCheckpoint, AuditEvent
from corral.models.auth import ApiToken, AuthLockout, SignInAttempt, UserSession, UserToken
from corral.models.email import EmailMessage
from corral.models.jobs import JobLog
from corral.models.users import User, UserRole, UserStatus

__all__ = [
    "ApiToken",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthLockout",
    "Base",
    "EmailMessage",
    "JobLog",
    "SignInAttempt",
    "User",
    "UserRole",
    "UserSession",
    "UserStatus",
    "UserToken",
]
