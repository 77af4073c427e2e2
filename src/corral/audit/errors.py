"""Audit failures.

These are programming or configuration mistakes, not user errors, so they are not ``PanelError``s
(which would be shown to the user as a 4xx): a bad audit call must fail loudly as a 500 and roll
the caller's transaction back.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class for audit log failures."""


class InvalidAuditEvent(AuditError, ValueError):
    """The event cannot be recorded as given (bad action name, payload, IP, field too long …)."""


class AuditKeyUnusable(AuditError, RuntimeError):
    """There is no audit key to sign or verify with."""

    def __init__(self, message: str = "the audit key (CORRAL_SECURITY__AUDIT_KEY) is not set") -> None:
        super().__init__(message)


class AuditChainBusy(AuditError, RuntimeError):
    """The chain head cannot be read reliably in this transaction (wrong isolation level)."""
