"""Password sign-in: generic failures, equal work, and each brute-force rule of seed 000 §3.3."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.audit import audit
from corral.auth import service as auth_service
from corral.auth.service import auth
from corral.auth.throttle import throttle
from corral.config import AuthSettings, Settings
from corral.db.session import create_session_factory, transaction
from corral.kit.clock import utcnow
from corral.models.auth import AuthLockout, LockoutScope, SignInAttempt, UserSession
from corral.models.email import EmailMessage
from corral.models.users import UserStatus
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import sign_in

WRONG = "not the right password"


async def attempt(db: AsyncSession, email: str, password: str, ip: str = "198.51.100.7") -> str:
    outcome = await auth.sign_in(db, email=email, password=password, ip=ip, user_agent="pytest")
    return outcome.status


async def test_sign_in_sets_a_strict_session_cookie_and_lands_on_the_dashboard(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db, name="Ann Example")
    response = await sign_in(client, user.email, DEFAULT_PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("__Host-corral_session=")
    )
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert len(secret) >= 43  # 256 bits, base64url
    stored = (await db.execute(select(UserSession).where(UserSession.user_id == user.id))).scalar_one()
    assert stored.token_hash != secret  # only a hash is kept
    dashboard = await client.get("/dashboard")
    assert dashboard.status_code == 200
    assert "Welcome, Ann Example" in dashboard.text
    [event] = await audit.list(db, action="auth.sign_in")
    assert event.result == "success"
    assert event.actor_id == user.id


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await create_user(db)
    wrong = await sign_in(client, user.email, WRONG)
    unknown = await sign_in(client, "nobody-here@example.com", WRONG)
    assert wrong.status_code == unknown.status_code == 401
    assert "That email and password do not match an account." in wrong.text
    assert wrong.text.count("do not match") == unknown.text.count("do not match") == 1
    failures = await audit.list(db, action="auth.sign_in")
    assert [event.result for event in failures] == ["failure", "failure"]


async def test_an_unknown_email_costs_a_password_verification_too(
    db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = auth_service.verify_password

    def counting(stored: str, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(auth_service, "verify_password", counting)
    await attempt(db, "ghost@example.com", WRONG)
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (UserStatus.PENDING_VERIFICATION, "unverified"),
        (UserStatus.PENDING_APPROVAL, "pending_approval"),
        (UserStatus.BLOCKED, "blocked"),
    ],
)
async def test_accounts_that_are_not_active_cannot_sign_in(
    db: AsyncSession, status: UserStatus, outcome: str
) -> None:
    user = await create_user(db, status=status.value)
    assert await attempt(db, user.email, DEFAULT_PASSWORD) == outcome
    sessions = (await db.execute(select(UserSession).where(UserSession.user_id == user.id))).all()
    assert sessions == []


async def test_five_failures_lock_the_account_for_thirty_minutes(db: AsyncSession) -> None:
    user = await create_user(db)
    # Each from a different address, so only the per-account rule can fire.
    for n in range(5):
        assert await attempt(db, user.email, WRONG, ip=f"203.0.113.{n + 1}") == "invalid"
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="203.0.113.50") == "throttled"
    lock = (await db.execute(select(AuthLockout).where(AuthLockout.scope == "account"))).scalar_one()
    assert lock.key == user.email
    assert timedelta(minutes=29) < lock.locked_until - utcnow() <= timedelta(minutes=30)
    [event] = await audit.list(db, action="auth.lockout")
    assert event.payload["scope"] == "account"
    mail = (await db.execute(select(EmailMessage).where(EmailMessage.to_address == user.email))).scalar_one()
    assert mail.template == "account_locked"


async def test_four_failures_then_success_start_the_count_again(db: AsyncSession) -> None:
    user = await create_user(db)
    for n in range(4):
        await attempt(db, user.email, WRONG, ip=f"203.0.113.{n + 1}")
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="203.0.113.9") == "ok"
    for n in range(4):
        assert await attempt(db, user.email, WRONG, ip=f"203.0.113.{n + 20}") == "invalid"
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="203.0.113.30") == "ok"


async def test_three_failures_from_one_address_lock_that_email_there_only(db: AsyncSession) -> None:
    user = await create_user(db)
    for _ in range(3):
        assert await attempt(db, user.email, WRONG, ip="192.0.2.10") == "invalid"
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="192.0.2.10") == "throttled"
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="192.0.2.99") == "ok"


async def test_twenty_attempts_in_five_minutes_block_the_address(db: AsyncSession) -> None:
    user = await create_user(db)
    for n in range(20):
        await attempt(db, f"spray{n}@example.com", WRONG, ip="192.0.2.66")
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="192.0.2.66") == "throttled"
    lock = (await db.execute(select(AuthLockout).where(AuthLockout.scope == "ip"))).scalar_one()
    assert timedelta(minutes=14) < lock.locked_until - utcnow() <= timedelta(minutes=15)
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="192.0.2.67") == "ok"


async def test_a_lock_ends_when_its_time_is_up(db: AsyncSession) -> None:
    user = await create_user(db)
    for _ in range(3):
        await attempt(db, user.email, WRONG, ip="192.0.2.10")
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="192.0.2.10") == "throttled"
    await db.execute(update(AuthLockout).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert await attempt(db, user.email, DEFAULT_PASSWORD, ip="192.0.2.10") == "ok"


async def test_a_throttled_page_says_when_to_come_back(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await create_user(db)
    for _ in range(3):
        await sign_in(client, user.email, WRONG)
    response = await sign_in(client, user.email, DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert 0 < int(response.headers["retry-after"]) <= 30 * 60
    assert "Too many attempts" in response.text


async def test_progressive_delay_doubles_up_to_ten_seconds(db: AsyncSession) -> None:
    policy = AuthSettings()  # the real numbers
    delays = []
    for _ in range(7):
        delays.append(await throttle.delay_seconds(db, policy, email="slow@example.com", now=utcnow()))
        db.add(
            SignInAttempt(attempted_at=utcnow(), email="slow@example.com", ip="198.51.100.1", succeeded=False)
        )
        await db.flush()
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


async def test_the_delay_is_really_waited(db: AsyncSession, settings: Settings) -> None:
    slow = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"delay_base_seconds": 0.2, "delay_max_seconds": 1})}
    )
    db.info["settings"] = slow
    try:
        await attempt(db, "wait@example.com", WRONG, ip="198.51.100.1")
        started = time.monotonic()
        await attempt(db, "wait@example.com", WRONG, ip="198.51.100.2")
        assert time.monotonic() - started >= 0.2
    finally:
        db.info["settings"] = settings


async def test_counters_hold_across_connections(
    fresh_database: Callable[[], URL], settings: Settings
) -> None:
    """Two web processes share the counters: failures through one lock the account for the other."""
    url = fresh_database()
    engines = [create_async_engine(url), create_async_engine(url)]
    first, second = (create_session_factory(engine, settings) for engine in engines)
    try:
        async with transaction(first) as session:
            user = await create_user(session)
            email = user.email
        for n in range(5):
            async with transaction(first) as session:
                await attempt(session, email, WRONG, ip=f"203.0.113.{n + 1}")
        async with transaction(second) as session:
            assert await attempt(session, email, DEFAULT_PASSWORD, ip="203.0.113.77") == "throttled"
            scopes = (await session.execute(select(AuthLockout.scope))).scalars().all()
            assert LockoutScope.ACCOUNT in scopes
    finally:
        for engine in engines:
            await engine.dispose()


async def test_single_session_mode_ends_the_older_session(db: AsyncSession, settings: Settings) -> None:
    single = settings.model_copy(update={"auth": settings.auth.model_copy(update={"single_session": True})})
    db.info["settings"] = single
    try:
        user = await create_user(db)
        assert await attempt(db, user.email, DEFAULT_PASSWORD) == "ok"
        assert await attempt(db, user.email, DEFAULT_PASSWORD) == "ok"
        rows = (await db.execute(select(UserSession).where(UserSession.user_id == user.id))).scalars().all()
        assert sorted(row.revoked_reason or "active" for row in rows) == ["active", "single_session"]
    finally:
        db.info["settings"] = settings


def test_the_stand_in_hash_costs_what_a_real_one_does() -> None:
    real = auth_service.hash_password("any password at all")
    # Same algorithm, version, memory, passes and lanes: the "$argon2id$v=19$m=…,t=…,p=…" head.
    assert auth_service._DUMMY_HASH.split("$")[1:4] == real.split("$")[1:4]
