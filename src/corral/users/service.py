"""Creating and finding accounts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from corral.kit.clock import utcnow
from corral.models.users import User, UserStatus
from corral.users import repository
from corral.users.errors import EmailTaken
from corral.users.passwords import hash_password
from corral.users.schemas import UserCreate


class UserService:
    async def create(self, session: AsyncSession, data: UserCreate) -> User:
        if await repository.get_by_email(session, data.email) is not None:
            raise EmailTaken()
        active = data.status == UserStatus.ACTIVE
        user = User(
            email=data.email.strip(),
            name=data.name.strip(),
            password_hash=hash_password(data.password),
            role=data.role.value,
            status=data.status.value,
            email_verified_at=utcnow() if active else None,
        )
        repository.add(session, user)
        await session.flush()
        return user

    async def get_by_email(self, session: AsyncSession, email: str) -> User | None:
        return await repository.get_by_email(session, email)


users = UserService()
