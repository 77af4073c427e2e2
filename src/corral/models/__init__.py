"""Every ORM table, one module per aggregate. Alembic imports this package to see them all."""

from corral.db.base import Base
from corral.models.audit import AuditCheckpoint, AuditEvent
from corral.models.jobs import JobLog
from corral.models.users import User, UserRole, UserStatus

__all__ = ["AuditCheckpoint", "AuditEvent", "Base", "JobLog", "User", "UserRole", "UserStatus"]
