"""The tamper-evident audit log.

    from corral.audit import Target, audit

    await audit.record(session, actor, "server.power.stop", target=Target(type="server", id=server.id))

Rows form an HMAC hash chain (see ``chain.py``); the database refuses UPDATE, DELETE and TRUNCATE;
``audit.verify`` (``corral audit verify``) finds edits, deletions, reordering and truncation.
"""

from corral.audit.errors import AuditChainBusy, AuditError, AuditKeyUnusable, InvalidAuditEvent
from corral.audit.schemas import (
    AuditCheckpointRead,
    AuditEventRead,
    AuditEventRef,
    AuditResult,
    Target,
    VerifyReport,
)
from corral.audit.service import AuditService, audit

__all__ = [
    "AuditChainBusy",
    "AuditCheckpointRead",
    "AuditError",
    "AuditEventRead",
    "AuditEventRef",
    "AuditKeyUnusable",
    "AuditResult",
    "AuditService",
    "InvalidAuditEvent",
    "Target",
    "VerifyReport",
    "audit",
]
