"""Every ORM table, one module per aggregate. Alembic imports this package to see them all."""

from corral.db.base import Base
from corral.models.audit import AuditCheckpoint, AuditEvent
from corral.models.auth import ApiToken, AuthLockout, SignInAttempt, UserSession, UserToken
from corral.models.consoles import ConsoleTicket
from corral.models.email import EmailMessage
from corral.models.ipam import IpAddress, IpPool
from corral.models.jobs import JobLog
from corral.models.locations import Location
from corral.models.mfa import Passkey, PasskeyEnrolmentLink, RecoveryCode, TotpFactor, WebAuthnChallenge
from corral.models.nodes import (
    DriftKind,
    DriftReport,
    Node,
    NodeSshKey,
    NodeStatus,
    NodeTemplate,
    OsTemplate,
)
from corral.models.plans import Plan, PlanLocation
from corral.models.servers import CancelMode, PowerState, Server, ServerStatus
from corral.models.settings import PanelSetting
from corral.models.ssh_keys import SshKey
from corral.models.users import User, UserRole, UserStatus

__all__ = [
    "ApiToken",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthLockout",
    "Base",
    "CancelMode",
    "ConsoleTicket",
    "DriftKind",
    "DriftReport",
    "EmailMessage",
    "IpAddress",
    "IpPool",
    "JobLog",
    "Location",
    "Node",
    "NodeSshKey",
    "NodeStatus",
    "NodeTemplate",
    "OsTemplate",
    "PanelSetting",
    "Passkey",
    "PasskeyEnrolmentLink",
    "Plan",
    "PlanLocation",
    "PowerState",
    "RecoveryCode",
    "Server",
    "ServerStatus",
    "SignInAttempt",
    "SshKey",
    "TotpFactor",
    "User",
    "UserRole",
    "UserSession",
    "UserStatus",
    "UserToken",
    "WebAuthnChallenge",
]
