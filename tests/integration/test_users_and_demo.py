"""Creating accounts and seeding the demo accounts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.demo.service import CREDENTIALS_FILE, demo
from corral.models.users import User, UserRole, UserStatus
from corral.users.errors import EmailTaken
from corral.users.passwords import verify_password
from corral.users.schemas import UserCreate
from corral.users.service import users
from tests.factories.users import create_user


async def test_create_hashes_the_password_with_argon2id(db: AsyncSession) -> None:
    user = await users.create(
        db, UserCreate(email="ann@example.com", name="Ann", password="a long passphrase 42")
    )
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert "a long passphrase 42" not in user.password_hash
    assert verify_password(user.password_hash, "a long passphrase 42")
    assert not verify_password(user.password_hash, "a long passphrase 43")
    assert user.status == UserStatus.PENDING_VERIFICATION


async def test_email_is_unique_whatever_its_case(db: AsyncSession) -> None:
    await create_user(db, email="Bob@Example.com")
    with pytest.raises(EmailTaken):
        await users.create(db, UserCreate(email="bob@example.COM", name="Bob", password="x" * 12))


async def test_demo_seed_is_idempotent_and_keeps_passwords(db: AsyncSession, tmp_path: Path) -> None:
    first = await demo.seed(db, tmp_path)
    second = await demo.seed(db, tmp_path)
    assert first == second
    # The super-admin has no passkey: each start prints a new enrolment link (replacing the last).
    links = [{cred.role: cred.enrolment_link for cred in seeded} for seeded in (first, second)]
    assert [seeded[UserRole.CUSTOMER] for seeded in links] == [None, None]
    admin_links = [seeded[UserRole.SUPER_ADMIN] for seeded in links]
    assert all(
        link and link.startswith("https://panel.test/account/security/passkeys/enrol?token=")
        for link in admin_links
    )
    assert admin_links[0] != admin_links[1]
    assert {cred.role for cred in first} == {UserRole.SUPER_ADMIN, UserRole.CUSTOMER}
    count = await db.scalar(select(func.count()).select_from(User))
    assert count == 2
    created = await audit.list(db, action="user.create")
    assert {event.payload["email"] for event in created} == {cred.email for cred in first}
    stored = json.loads((tmp_path / CREDENTIALS_FILE).read_text())
    for cred in first:
        user = await users.get_by_email(db, cred.email)
        assert user is not None
        assert user.status == UserStatus.ACTIVE
        assert user.password_hash is not None
        assert verify_password(user.password_hash, stored[cred.email])
