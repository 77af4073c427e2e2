"""Who is making a request, and with which permissions."""

from __future__ import annotations

from dataclasses import dataclass

from corral.kit.actors import Actor
from corral.models.auth import ApiToken, UserSession
from corral.models.users import User
from corral.rbac.permissions import Permission


@dataclass(frozen=True)
class Principal:
    """A snapshot of the requester taken when the request was authenticated.

    Templates, the audit log and permission checks use the plain fields, which stay valid after the
    request's transaction is rolled back (error pages render after a rollback, when ORM rows are
    expired). ``user``, ``session`` and ``token`` are the ORM rows, for services that change them.
    """

    user_id: int
    email: str
    name: str
    role: str
    permissions: frozenset[Permission]
    user: User
    # Exactly one of these says how the request authenticated.
    session: UserSession | None = None
    token: ApiToken | None = None
    token_prefix: str | None = None
    # An operator or super-admin signed in without a passkey: acting with customer permissions.
    elevation_withheld: bool = False
    # The panel requires customers to have a second factor and this one has none yet.
    must_enrol_second_factor: bool = False

    @classmethod
    def of(
        cls,
        user: User,
        permissions: frozenset[Permission],
        *,
        session: UserSession | None = None,
        token: ApiToken | None = None,
        elevation_withheld: bool = False,
        must_enrol_second_factor: bool = False,
    ) -> Principal:
        return cls(
            user_id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            permissions=permissions,
            user=user,
            session=session,
            token=token,
            token_prefix=token.prefix if token is not None else None,
            elevation_withheld=elevation_withheld,
            must_enrol_second_factor=must_enrol_second_factor,
        )

    def can(self, permission: Permission | str) -> bool:
        return permission in self.permissions

    @property
    def actor(self) -> Actor:
        if self.token_prefix is not None:
            label = f"{self.email} (token {self.token_prefix})"
            return Actor(kind="api_token", label=label, id=self.user_id, role=self.role)
        return Actor.user(self.user_id, self.email, self.role)
