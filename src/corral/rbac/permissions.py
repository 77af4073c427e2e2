"""Permissions are named ``resource:action``; each role maps to a fixed set of them.

Nothing is allowed unless a role's set names it. API tokens narrow this further: a token acts
with the intersection of its scopes and its owner's current role.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from corral.models.users import UserRole


class Permission(enum.StrEnum):
    # A person's own account.
    ACCOUNT_READ = "account:read"
    ACCOUNT_UPDATE = "account:update"
    SESSIONS_MANAGE = "sessions:manage"
    TOKENS_MANAGE = "tokens:manage"
    SSH_KEYS_MANAGE = "ssh_keys:manage"
    # A person's own servers: order, set up, power, reinstall, rename, console, cancel.
    SERVERS_READ = "servers:read"
    SERVERS_MANAGE = "servers:manage"
    # Staff work on other people's accounts.
    USERS_READ = "users:read"
    USERS_BLOCK = "users:block"
    USERS_APPROVE = "users:approve"
    USERS_ROLES = "users:roles"
    AUDIT_READ = "audit:read"
    # The fleet: where servers run.
    LOCATIONS_MANAGE = "locations:manage"
    NODES_READ = "nodes:read"
    NODES_MANAGE = "nodes:manage"
    TEMPLATES_MANAGE = "templates:manage"
    IPAM_READ = "ipam:read"
    IPAM_MANAGE = "ipam:manage"
    PLANS_MANAGE = "plans:manage"
    # Every customer's servers, as staff see them.
    FLEET_SERVERS_READ = "fleet_servers:read"
    FLEET_SERVERS_SUSPEND = "fleet_servers:suspend"
    # Panel-wide settings (customer 2FA requirement, server limits).
    SETTINGS_MANAGE = "settings:manage"


_SELF_SERVICE = frozenset(
    {
        Permission.ACCOUNT_READ,
        Permission.ACCOUNT_UPDATE,
        Permission.SESSIONS_MANAGE,
        Permission.TOKENS_MANAGE,
        Permission.SSH_KEYS_MANAGE,
        Permission.SERVERS_READ,
        Permission.SERVERS_MANAGE,
    }
)

ROLE_PERMISSIONS: dict[UserRole, frozenset[Permission]] = {
    UserRole.CUSTOMER: _SELF_SERVICE,
    # Support looks after customers: sees accounts and history, approves and blocks; no infrastructure.
    UserRole.SUPPORT: _SELF_SERVICE
    | {
        Permission.USERS_READ,
        Permission.USERS_BLOCK,
        Permission.USERS_APPROVE,
        Permission.AUDIT_READ,
        # Seeing where a customer's server runs helps answer tickets; changing the fleet does not.
        Permission.NODES_READ,
        Permission.IPAM_READ,
        Permission.FLEET_SERVERS_READ,
    },
    UserRole.BILLING: _SELF_SERVICE | {Permission.USERS_READ},
    # Operators run the fleet; they do not touch money or roles.
    UserRole.OPERATOR: _SELF_SERVICE
    | {
        Permission.USERS_READ,
        Permission.AUDIT_READ,
        Permission.LOCATIONS_MANAGE,
        Permission.NODES_READ,
        Permission.NODES_MANAGE,
        Permission.TEMPLATES_MANAGE,
        Permission.IPAM_READ,
        Permission.IPAM_MANAGE,
        Permission.PLANS_MANAGE,
        Permission.FLEET_SERVERS_READ,
        Permission.FLEET_SERVERS_SUSPEND,
    },
    UserRole.SUPER_ADMIN: frozenset(Permission),
}

# Roles whose permissions reach other people's data or the fleet.
STAFF_ROLES = frozenset({UserRole.SUPPORT, UserRole.BILLING, UserRole.OPERATOR, UserRole.SUPER_ADMIN})
# Roles that hold their permissions only in a session signed in with a passkey (seed 003: a
# stolen password alone must never grant privileged access). Otherwise they act as a customer.
PASSKEY_ONLY_ROLES = frozenset({UserRole.OPERATOR, UserRole.SUPER_ADMIN})
# Permissions reaching beyond one's own account: every unsafe use needs a passkey step-up.
STAFF_PERMISSIONS = frozenset(Permission) - ROLE_PERMISSIONS[UserRole.CUSTOMER]
# What a customer may do before enrolling a second factor, when the panel requires one.
ENROLMENT_PERMISSIONS = frozenset(
    {Permission.ACCOUNT_READ, Permission.ACCOUNT_UPDATE, Permission.SESSIONS_MANAGE}
)


def permissions_for(role: str) -> frozenset[Permission]:
    try:
        return ROLE_PERMISSIONS[UserRole(role)]
    except ValueError:
        return frozenset()  # an unknown role gets nothing


def parse_scopes(scopes: Iterable[str]) -> frozenset[Permission]:
    """Scopes as typed by a person; unknown names are an error, not silently dropped."""
    parsed = set()
    for scope in scopes:
        try:
            parsed.add(Permission(scope.strip()))
        except ValueError as error:
            raise ValueError(f"unknown scope {scope!r}") from error
    return frozenset(parsed)
