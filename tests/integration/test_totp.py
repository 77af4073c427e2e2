"""TOTP enrolment, verification, recovery codes and disabling, on a real PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.auth.totp import PERIOD_SECONDS, TotpAlreadyEnabled, TotpCodeRejected, totp
from corral.models.audit import AuditEvent
from corral.models.mfa import RecoveryCode, TotpFactor
from corral.models.users import User
from corral.rbac.permissions import permissions_for
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, csrf_from, sign_in

NOW = datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC)
STEP = int(NOW.timestamp()) // PERIOD_SECONDS


def at(step: int) -> datetime:
    return datetime.fromtimestamp(step * PERIOD_SECONDS + 1, tz=UTC)


def code(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * PERIOD_SECONDS)


async def actions(db: AsyncSession, user: User) -> list[str]:
    rows = await db.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.target_type == "user", AuditEvent.target_id == str(user.id))
        .order_by(AuditEvent.seq)
    )
    return list(rows)


async def enrolled(db: AsyncSession) -> tuple[User, Principal, str, list[str]]:
    user = await create_user(db)
    principal = Principal.of(user, permissions_for(user.role))
    secret, _uri, _svg = await totp.begin_enrolment(db, principal)
    codes = await totp.confirm(db, principal, code(secret, STEP), now=NOW)
    return user, principal, secret, codes


async def test_enrolment_stores_the_secret_encrypted_and_confirms_with_a_code(db: AsyncSession) -> None:
    user = await create_user(db)
    principal = Principal.of(user, permissions_for(user.role))
    secret, uri, svg = await totp.begin_enrolment(db, principal)
    assert uri.startswith("otpauth://totp/")
    assert f"secret={secret}" in uri
    assert svg.startswith("<svg")
    assert "style=" not in svg

    factor = await db.get(TotpFactor, user.id)
    assert factor is not None
    assert factor.confirmed_at is None
    assert secret not in factor.secret_encrypted
    assert factor.secret_encrypted.startswith("v1:")
    assert not (await totp.status(db, user.id)).enabled

    with pytest.raises(TotpCodeRejected):
        await totp.confirm(db, principal, "000000" if code(secret, STEP) != "000000" else "111111", now=NOW)
    codes = await totp.confirm(db, principal, code(secret, STEP), now=NOW)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    status = await totp.status(db, user.id)
    assert status.enabled
    assert status.recovery_codes_left == 10
    assert await actions(db, user) == ["auth.totp.enrol"]

    with pytest.raises(TotpAlreadyEnabled):
        await totp.begin_enrolment(db, principal)


async def test_a_new_enrolment_replaces_an_unconfirmed_one(db: AsyncSession) -> None:
    user = await create_user(db)
    principal = Principal.of(user, permissions_for(user.role))
    first, _, _ = await totp.begin_enrolment(db, principal)
    second, _, _ = await totp.begin_enrolment(db, principal)
    assert first != second
    with pytest.raises(TotpCodeRejected):
        await totp.confirm(db, principal, code(first, STEP), now=NOW)
    await totp.confirm(db, principal, code(second, STEP), now=NOW)


async def test_verify_accepts_the_window_and_never_a_code_twice(db: AsyncSession) -> None:
    user, _, secret, _ = await enrolled(db)
    # Confirming used STEP; the next code within the window is accepted once.
    later = STEP + 10
    assert await totp.verify(db, user.id, code(secret, later - 1), now=at(later))
    assert not await totp.verify(db, user.id, code(secret, later - 1), now=at(later))
    assert await totp.verify(db, user.id, code(secret, later + 1), now=at(later))
    # Older than the newest accepted one: refused even though it is inside the window.
    assert not await totp.verify(db, user.id, code(secret, later), now=at(later))
    factor = await db.get(TotpFactor, user.id)
    assert factor is not None
    assert factor.last_used_step == later + 1


async def test_verify_refuses_two_steps_away(db: AsyncSession) -> None:
    user, _, secret, _ = await enrolled(db)
    later = STEP + 20
    window = {code(secret, later + near) for near in (-1, 0, 1)}
    for offset in (-2, 2):
        candidate = code(secret, later + offset)
        if candidate not in window:  # a code repeating inside the window would rightly pass
            assert not await totp.verify(db, user.id, candidate, now=at(later))


async def test_verify_is_false_without_a_confirmed_factor(db: AsyncSession) -> None:
    user = await create_user(db)
    principal = Principal.of(user, permissions_for(user.role))
    assert not await totp.verify(db, user.id, "123456", now=NOW)
    secret, _, _ = await totp.begin_enrolment(db, principal)
    assert not await totp.verify(db, user.id, code(secret, STEP), now=NOW)


async def test_recovery_codes_are_hashed_and_single_use(db: AsyncSession) -> None:
    user, _, _, codes = await enrolled(db)
    stored = list(await db.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)))
    assert len(stored) == 10
    plain = {c.replace("-", "") for c in codes}
    assert not plain & set(stored)
    assert not set(codes) & set(stored)
    assert hashlib.sha256(codes[0].replace("-", "").encode()).hexdigest() in stored

    assert await totp.use_recovery_code(db, user.id, codes[0].lower())
    assert not await totp.use_recovery_code(db, user.id, codes[0])
    assert not await totp.use_recovery_code(db, user.id, "NOPE2-NOPE3")
    assert (await totp.status(db, user.id)).recovery_codes_left == 9
    assert await actions(db, user) == ["auth.totp.enrol", "auth.recovery_code.use"]


async def test_recovery_codes_of_another_user_do_not_work(db: AsyncSession) -> None:
    _, _, _, codes = await enrolled(db)
    other = await create_user(db)
    assert not await totp.use_recovery_code(db, other.id, codes[0])


async def test_regenerating_replaces_every_recovery_code(db: AsyncSession) -> None:
    user, principal, _, old = await enrolled(db)
    new = await totp.regenerate_recovery_codes(db, principal)
    assert not set(old) & set(new)
    assert not await totp.use_recovery_code(db, user.id, old[1])
    assert await totp.use_recovery_code(db, user.id, new[1])


async def test_disable_removes_the_factor_and_codes(db: AsyncSession) -> None:
    user, principal, secret, codes = await enrolled(db)
    await totp.disable(db, principal)
    assert await db.get(TotpFactor, user.id) is None
    assert not list(await db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)))
    assert not await totp.verify(db, user.id, code(secret, STEP + 5), now=at(STEP + 5))
    assert not await totp.use_recovery_code(db, user.id, codes[0])
    assert await actions(db, user) == ["auth.totp.enrol", "auth.totp.disable"]
    status = await totp.status(db, user.id)
    assert not status.enabled
    assert not status.enrolling


@pytest.fixture
def totp_app(app: FastAPI) -> FastAPI:
    return app


async def test_enrol_over_http(db: AsyncSession, totp_app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await create_user(db)
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code in (200, 303)

    page = await client.get("/account/security/totp")
    assert page.status_code == 200
    assert 'data-testid="totp-disabled"' in page.text
    token = csrf_from(page.text)

    # Without the CSRF token the request is refused and nothing is set up.
    refused = await client.post("/account/security/totp/enrol", data={}, headers=ORIGIN)
    assert refused.status_code == 403
    assert await db.get(TotpFactor, user.id) is None

    started = await client.post("/account/security/totp/enrol", data={"csrf_token": token}, headers=ORIGIN)
    assert started.status_code == 200
    assert started.headers["cache-control"] == "no-store"
    assert "<svg" in started.text
    assert "style=" not in started.text.split("<svg", 1)[1].split("</svg>")[0]
    shown = re.search(r'data-testid="totp-secret">([A-Z2-7 ]+)<', started.text)
    assert shown is not None
    secret = shown.group(1).replace(" ", "")

    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    rejected = await client.post(
        "/account/security/totp/confirm", data={"csrf_token": token, "code": wrong}, headers=ORIGIN
    )
    assert rejected.status_code == 422
    assert 'data-field-error="code"' in rejected.text

    confirmed = await client.post(
        "/account/security/totp/confirm",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).now()},
        headers=ORIGIN,
    )
    assert confirmed.status_code == 200
    codes = re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", confirmed.text)
    assert len(codes) == 10
    assert (await totp.status(db, user.id)).enabled

    again = await client.get("/account/security/totp")
    assert 'data-testid="totp-enabled"' in again.text
    assert codes[0] not in again.text

    # The app is now the account's strongest factor: the password sign-in no longer counts as a
    # step-up, so new codes are refused until a code (here a recovery code) is given again.
    stale = await client.post(
        "/account/security/totp/recovery-codes", data={"csrf_token": token}, headers=ORIGIN
    )
    assert stale.status_code == 403
    assert stale.headers["x-corral-step-up"] == "required"
    stepped = await client.post(
        "/step-up/code",
        data={"csrf_token": token, "code": codes[0], "next": "/account/security/totp"},
        headers=ORIGIN,
    )
    assert stepped.status_code == 303

    regenerated = await client.post(
        "/account/security/totp/recovery-codes", data={"csrf_token": token}, headers=ORIGIN
    )
    assert regenerated.status_code == 200
    assert not set(re.findall(r"<li><code>([A-Z0-9-]+)</code></li>", regenerated.text)) & set(codes)

    disabled = await client.post("/account/security/totp/disable", data={"csrf_token": token}, headers=ORIGIN)
    assert disabled.status_code == 303
    assert await db.get(TotpFactor, user.id) is None
