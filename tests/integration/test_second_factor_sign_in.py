"""Signing in to an account with an authenticator app: the password alone is not enough."""

from __future__ import annotations

import httpx
import pyotp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.auth.totp import totp
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.auth import SignInAttempt, UserSession
from corral.models.users import User
from corral.rbac.permissions import permissions_for
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.auth import ORIGIN, csrf_from, sign_in


async def with_app(db: AsyncSession) -> tuple[User, str, list[str]]:
    """A customer whose authenticator app was confirmed with the code of the previous time step,
    so the current code is still unused."""
    user = await create_user(db)
    principal = Principal.of(user, permissions_for(user.role))
    secret, _uri, _svg = await totp.begin_enrolment(db, principal)
    earlier = utcnow().timestamp() - 30
    codes = await totp.confirm(db, principal, pyotp.TOTP(secret).at(earlier), now=utcnow())
    return user, secret, codes


async def sessions_of(db: AsyncSession, user: User) -> list[UserSession]:
    rows = await db.scalars(
        select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.id)
    )
    return list(rows)


async def password_step(client: httpx.AsyncClient, user: User) -> str:
    """Type the password; return the CSRF token of the code page it leads to."""
    response = await sign_in(client, user.email, DEFAULT_PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login/verify")
    page = await client.get(response.headers["location"])
    assert page.status_code == 200
    assert 'data-testid="verify-code"' in page.text
    return csrf_from(page.text)


async def enter(client: httpx.AsyncClient, token: str, code: str) -> httpx.Response:
    data = {"code": code, "csrf_token": token, "next": "/dashboard"}
    return await client.post("/login/verify", data=data, headers=ORIGIN)


async def test_the_password_alone_makes_no_session_and_the_code_completes_it(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user, secret, _codes = await with_app(db)

    token = await password_step(client, user)
    assert await sessions_of(db, user) == []
    assert (await client.get("/dashboard")).status_code == 303  # still signed out

    done = await enter(client, token, pyotp.TOTP(secret).now())

    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard"
    [made] = await sessions_of(db, user)
    assert made.auth_method == "password_totp"
    # The app is the account's strongest factor: this sign-in counts as a fresh step-up.
    assert made.step_up_method == "totp"
    assert (await client.get("/dashboard")).status_code == 200


async def test_a_totp_code_is_never_accepted_twice(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user, secret, _codes = await with_app(db)
    code = pyotp.TOTP(secret).now()
    first = await enter(client, await password_step(client, user), code)
    assert first.status_code == 303
    csrf = csrf_from((await client.get("/account/security/totp")).text)

    # The same code as a step-up in the session it made: refused.
    again_here = await client.post("/step-up/code", data={"code": code, "csrf_token": csrf}, headers=ORIGIN)
    assert again_here.status_code == 401

    # And for a second sign-in, from another browser: refused, and counted as a failure.
    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as other:
        replay = await enter(other, await password_step(other, user), code)
    assert replay.status_code == 401
    assert "not right" in replay.text
    assert len(await sessions_of(db, user)) == 1
    failures = await db.scalar(
        select(func.count())
        .select_from(SignInAttempt)
        .where(SignInAttempt.user_id == user.id, ~SignInAttempt.succeeded)
    )
    assert failures == 2  # the step-up and the sign-in


async def test_a_recovery_code_signs_in_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user, _secret, codes = await with_app(db)

    first = await enter(client, await password_step(client, user), codes[3].lower())
    assert first.status_code == 303
    client.cookies.clear()
    second = await enter(client, await password_step(client, user), codes[3])
    assert second.status_code == 401
    used = await db.scalars(
        select(AuditEvent.action).where(
            AuditEvent.action == "auth.recovery_code.use", AuditEvent.target_id == str(user.id)
        )
    )
    assert list(used) == ["auth.recovery_code.use"]


async def test_wrong_codes_count_as_failed_sign_ins(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user, secret, _codes = await with_app(db)
    token = await password_step(client, user)
    right = pyotp.TOTP(secret).now()
    wrong = "000000" if right != "000000" else "111111"

    statuses = [(await enter(client, token, wrong)).status_code for _ in range(3)]
    # Three failures for one email from one address lock that pair (seed 000 §3.3), code or not.
    locked = await enter(client, token, right)

    assert statuses == [401, 401, 401]
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert await sessions_of(db, user) == []
    failures = await db.scalars(
        select(AuditEvent.payload).where(AuditEvent.action == "auth.sign_in", AuditEvent.result == "failure")
    )
    reasons = [payload["reason"] for payload in failures]
    assert reasons.count("bad_second_factor") == 3
    assert "locked:email_ip" in reasons


async def test_without_the_password_step_the_code_page_sends_you_to_sign_in(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/login/verify")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    token = csrf_from((await client.get("/login")).text)
    forged = await enter(client, token, "123456")
    assert forged.status_code == 401
    assert "Sign in again" in forged.text
