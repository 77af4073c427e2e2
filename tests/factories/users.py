"""Users for tests: built with factory_boy, persisted through the session the test hands in."""

from __future__ import annotations

from typing import Any

import factory
from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.clock import utcnow
from corral.models.users import User, UserRole, UserStatus
from corral.users.passwords import hash_password

DEFAULT_PASSWORD = "correct horse battery staple"


class UserFactory(factory.Factory):  # type: ignore[misc]
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    # Hashing is deliberately slow; every built user shares one hash of the default password.
    password_hash = factory.LazyFunction(lambda: _DEFAULT_HASH)
    role = UserRole.CUSTOMER.value
    status = UserStatus.ACTIVE.value
    email_verified_at = factory.LazyFunction(utcnow)


_DEFAULT_HASH = hash_password(DEFAULT_PASSWORD)


async def create_user(session: AsyncSession, **overrides: Any) -> User:
    user: User = UserFactory.build(**overrides)
    session.add(user)
    await session.flush()
    return user
