"""An operator's or super-admin's first passkey: only through a single-use enrolment link (issue 10).

A password (even with a password step-up) never adds a staff account's passkey, so it never turns
into staff access; the link that does works once, for an hour, for its own account only, and only
in a session signed in as that account.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

import corral.auth.enrolment as enrolment_module
from corral.app import create_app
from corral.auth.enrolment import passkey_enrolment
from corral.auth.passkey_errors import EnrolmentNotNeeded
from corral.auth.secrets import secret_hash
from corral.config import Settings
from corral.db.session import create_engine, create_session_factory, transaction
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.email import EmailMessage
from corral.models.mfa import EnrolmentDelivery, Passkey, PasskeyEnrolmentLink
from corral.models.users import User, UserRole
from tests.factories.users import DEFAULT_PASSWORD, create_user
from tests.support.admin import People, people_for
from tests.support.auth import ORIGIN, page_token, passkey_sign_in, register_through_link, sign_in
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.processes import clean_env, run_corral

ENROL = "/account/security/passkeys/enrol"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as made:
        yield made


async def password_client(people: People, user: User) -> httpx.AsyncClient:
    client = await people.client()
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 303
    return client


async def headers_of(client: httpx.AsyncClient) -> dict[str, str]:
    return {**ORIGIN, "X-CSRF-Token": await page_token(client)}


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def passkeys_of(db: AsyncSession, user: User) -> list[Passkey]:
    return list(await db.scalars(select(Passkey).where(Passkey.user_id == user.id)))


async def events(db: AsyncSession, action: str) -> list[AuditEvent]:
    rows = await db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
    return list(rows)


async def emails_to(db: AsyncSession, address: str, template: str) -> list[EmailMessage]:
    rows = await db.scalars(
        select(EmailMessage)
        .where(EmailMessage.to_address == address, EmailMessage.template == template)
        .order_by(EmailMessage.id)
    )
    return list(rows)


async def issue(db: AsyncSession, user: User) -> str:
    issued = await passkey_enrolment.issue(db, Actor.cli("tests"), user, EnrolmentDelivery.CLI)
    return issued.link


def toasts(response: httpx.Response) -> list[str]:
    return [item["message"] for item in json.loads(response.headers["hx-trigger"])["corral:toast"]]


# ---------------------------------------------------------------- the hole that is closed


@pytest.mark.parametrize("role", [UserRole.OPERATOR, UserRole.SUPER_ADMIN])
async def test_a_password_alone_never_adds_a_staff_passkey_nor_reaches_staff_routes(
    people: People, db: AsyncSession, role: UserRole
) -> None:
    staff = await create_user(db, role=role.value)
    client = await password_client(people, staff)
    headers = await headers_of(client)
    # The password sign-in counts as this account's fresh step-up, and a password step-up on top
    # changes nothing: neither is a second factor.
    stepped = await client.post("/step-up/password", data={"password": DEFAULT_PASSWORD}, headers=headers)
    assert stepped.status_code in (200, 303)

    page = await client.get("/account/security/passkeys")
    options = await client.post("/account/security/passkeys/options", json={}, headers=headers)
    forged = SoftwareAuthenticator().create(
        {"challenge": "AAAA", "rp": {"id": "panel.test"}, "user": {"id": "AAAA"}}
    )
    finish = await client.post(
        "/account/security/passkeys", json={"credential": forged, "name": "mine"}, headers=headers
    )
    staff_page = await client.get("/admin/nodes")

    assert 'data-testid="passkey-enrolment-needed"' in page.text
    assert 'data-testid="passkey-register"' not in page.text
    assert options.status_code == 403
    assert options.json()["code"] == "passkey_enrolment_link_required"
    assert "enrolment link" in options.json()["message"]
    assert finish.status_code == 403
    assert finish.json()["code"] == "passkey_enrolment_link_required"
    assert await passkeys_of(db, staff) == []
    assert staff_page.status_code == 403
    refused = [e for e in await events(db, "auth.passkey.register") if e.result == "failure"]
    assert [e.reason for e in refused] == ["enrolment_link_required", "enrolment_link_required"]


async def test_a_customer_still_adds_a_passkey_after_a_password_step_up(
    people: People, db: AsyncSession
) -> None:
    customer = await create_user(db)
    client = await password_client(people, customer)
    options = await client.post(
        "/account/security/passkeys/options", json={}, headers=await headers_of(client)
    )
    assert options.status_code == 200


# ---------------------------------------------------------------- promotion and the link


async def test_promotion_emails_a_link_that_adds_the_first_passkey_once(
    people: People, db: AsyncSession
) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await create_user(db, name="Olive Operator")

    promoted = await boss.post_htmx(
        f"/admin/users/{target.id}/role", {"role": "operator", "reason": "joins the ops team"}
    )

    assert promoted.status_code == 200
    assert "emailed it a single-use enrolment link" in toasts(promoted)[0]
    assert 'data-testid="enrolment-live-link"' in promoted.text
    [message] = await emails_to(db, target.email, "passkey_enrolment")
    link = message.context["link"]
    assert link.startswith("https://panel.test/account/security/passkeys/enrol?token=")
    assert message.context["role"] == "operator"
    stored = (
        await db.scalars(select(PasskeyEnrolmentLink).where(PasskeyEnrolmentLink.user_id == target.id))
    ).one()
    assert stored.token_hash == secret_hash(token_of(link))  # only the hash is kept
    assert token_of(link) not in json.dumps(
        [e.payload for e in await events(db, "auth.passkey_enrolment.issue")]
    )

    # The operator signs in with the password and follows the link in that session.
    client = await password_client(people, target)
    authenticator = SoftwareAuthenticator()
    await register_through_link(client, link, authenticator, name="Olive's laptop")
    assert [key.name for key in await passkeys_of(db, target)] == ["Olive's laptop"]
    used = [e for e in await events(db, "auth.passkey_enrolment.use") if e.actor_id == target.id]
    assert [e.result for e in used] == ["success"]
    assert len(await emails_to(db, target.email, "second_factor_changed")) == 1

    # The link is spent: the page says so, and its endpoints refuse it.
    again = await client.get(link)
    options = await client.post(
        f"{ENROL}/options", json={"token": token_of(link)}, headers=await headers_of(client)
    )
    assert again.status_code == 400
    assert 'data-testid="enrolment-refused"' in again.text
    assert 'name="token"' not in again.text
    assert options.status_code == 400
    assert options.json()["code"] == "enrolment_link_invalid"

    # The passkey signs in, and that session has the operator's tools.
    operator = await people.client()
    await passkey_sign_in(operator, db, target, authenticator)
    assert (await operator.get("/admin/nodes")).status_code == 200


async def test_the_link_works_for_an_hour_and_not_a_minute_more(
    people: People, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = await create_user(db, role=UserRole.OPERATOR.value)
    link = await issue(db, operator)
    client = await password_client(people, operator)
    issued_at = utcnow()

    monkeypatch.setattr(enrolment_module, "utcnow", lambda: issued_at + timedelta(minutes=59))
    assert (await client.get(link)).status_code == 200

    monkeypatch.setattr(enrolment_module, "utcnow", lambda: issued_at + timedelta(hours=1, seconds=1))
    expired = await client.get(link)
    options = await client.post(
        f"{ENROL}/options", json={"token": token_of(link)}, headers=await headers_of(client)
    )

    assert expired.status_code == 400
    assert "expired" in expired.text
    assert options.status_code == 400
    assert options.json()["code"] == "enrolment_link_invalid"
    reasons = [e.reason for e in await events(db, "auth.passkey_enrolment.use") if e.result == "failure"]
    assert reasons == ["expired", "expired"]
    assert await passkeys_of(db, operator) == []


async def test_the_link_is_bound_to_its_account(people: People, db: AsyncSession) -> None:
    alice = await create_user(db, role=UserRole.OPERATOR.value)
    mallory = await create_user(db, role=UserRole.OPERATOR.value)
    link = await issue(db, alice)

    intruder = await password_client(people, mallory)
    page = await intruder.get(link)
    options = await intruder.post(
        f"{ENROL}/options", json={"token": token_of(link)}, headers=await headers_of(intruder)
    )
    finish = await intruder.post(
        ENROL,
        json={"token": token_of(link), "credential": {"rawId": "x"}, "name": "stolen"},
        headers=await headers_of(intruder),
    )

    assert page.status_code == 403
    assert "belongs to another account" in page.text
    assert options.status_code == finish.status_code == 403
    assert options.json()["code"] == finish.json()["code"] == "enrolment_link_other_account"
    assert await passkeys_of(db, mallory) == []
    refused = [e for e in await events(db, "auth.passkey_enrolment.use") if e.result == "failure"]
    assert {e.reason for e in refused} == {"other_account"}
    assert {e.actor_id for e in refused} == {mallory.id}
    assert {e.target_id for e in refused} == {str(alice.id)}  # on the owner's record

    # Refusing the intruder did not spend it: its owner still can use it.
    owner = await password_client(people, alice)
    await register_through_link(owner, link, SoftwareAuthenticator())
    assert len(await passkeys_of(db, alice)) == 1


async def test_the_link_alone_opens_nothing(people: People, db: AsyncSession) -> None:
    operator = await create_user(db, role=UserRole.OPERATOR.value)
    link = await issue(db, operator)
    stranger = await people.client()

    page = await stranger.get(link)
    options = await stranger.post(f"{ENROL}/options", json={"token": token_of(link)}, headers=ORIGIN)

    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")
    assert options.status_code == 303  # sent to sign in, like any page's request without a session
    assert options.headers["location"].startswith("/login?next=")
    # After signing in with the password, the same link works (the sign-in brings the person back).
    client = await password_client(people, operator)
    await register_through_link(client, link, SoftwareAuthenticator())


async def test_a_new_link_replaces_the_old_one(people: People, db: AsyncSession) -> None:
    operator = await create_user(db, role=UserRole.OPERATOR.value)
    first = await issue(db, operator)
    second = await issue(db, operator)
    client = await password_client(people, operator)

    old = await client.get(first)
    assert old.status_code == 400
    await register_through_link(client, second, SoftwareAuthenticator())
    reasons = [e.reason for e in await events(db, "auth.passkey_enrolment.use") if e.result == "failure"]
    assert reasons == ["replaced"]
    assert [e.payload["replaced"] for e in await events(db, "auth.passkey_enrolment.issue")] == [0, 1]


async def test_an_account_with_a_passkey_needs_no_link(people: People, db: AsyncSession) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)  # enrolled through a link by the helper
    with pytest.raises(EnrolmentNotNeeded):
        await issue(db, operator.user)


# ---------------------------------------------------------------- the super-admin's side


async def test_an_unverified_promotion_says_so_and_a_link_can_be_handed_over(
    people: People, db: AsyncSession
) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await create_user(db, email_verified_at=None)

    promoted = await boss.post_htmx(
        f"/admin/users/{target.id}/role", {"role": "super_admin", "reason": "second administrator"}
    )
    assert promoted.status_code == 200
    assert "no passkey enrolment link was emailed" in toasts(promoted)[0]
    assert 'data-testid="enrolment-email-unverified"' in promoted.text
    assert 'data-testid="enrolment-email"' not in promoted.text  # nothing to email to
    assert await emails_to(db, target.email, "passkey_enrolment") == []
    emailed = await boss.post_htmx(f"/admin/users/{target.id}/enrolment-link", {"delivery": "email"})
    assert emailed.status_code == 409

    handed = await boss.post_htmx(f"/admin/users/{target.id}/enrolment-link", {"delivery": "handover"})

    assert handed.status_code == 200
    assert handed.headers["cache-control"] == "no-store"
    assert 'data-testid="issued-enrolment-link"' in handed.text
    links = re.findall(
        r'value="(https://panel\.test/account/security/passkeys/enrol\?token=[^"]+)"', handed.text
    )
    assert len(links) == 1
    link = links[0]
    [issued] = [e for e in await events(db, "auth.passkey_enrolment.issue") if e.target_id == str(target.id)]
    assert issued.payload["delivery"] == "handover"
    assert issued.actor_id == boss.user.id
    # Shown once: the page afterwards does not show it again.
    later = await boss.client.get(f"/admin/users/{target.id}")
    assert token_of(link) not in later.text

    client = await password_client(people, target)
    await register_through_link(client, link, SoftwareAuthenticator())
    assert len(await passkeys_of(db, target)) == 1


async def test_only_a_super_admin_issues_links(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    operator = await create_user(db, role=UserRole.OPERATOR.value)
    refused = await support.post_htmx(f"/admin/users/{operator.id}/enrolment-link", {"delivery": "handover"})
    assert refused.status_code == 403
    assert await events(db, "auth.passkey_enrolment.issue") == []


async def test_a_link_is_only_for_staff_without_a_passkey(people: People, db: AsyncSession) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    customer = await create_user(db)
    answer = await boss.post_htmx(f"/admin/users/{customer.id}/enrolment-link", {"delivery": "handover"})
    bad = await boss.post_htmx(f"/admin/users/{customer.id}/enrolment-link", {"delivery": "carrier pigeon"})
    assert answer.status_code == 409
    assert bad.status_code == 422


async def test_demotion_retires_outstanding_links(people: People, db: AsyncSession) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await create_user(db)
    await boss.post_htmx(f"/admin/users/{target.id}/role", {"role": "operator", "reason": "temporary help"})
    [message] = await emails_to(db, target.email, "passkey_enrolment")
    await boss.post_htmx(f"/admin/users/{target.id}/role", {"role": "customer", "reason": "help is over"})

    client = await password_client(people, target)
    assert (await client.get(message.context["link"])).status_code == 400
    assert len(await events(db, "auth.passkey_enrolment.revoke")) == 1


# ---------------------------------------------------------------- the first super-admin: the CLI


async def test_the_cli_prints_a_working_link_for_the_first_super_admin(
    fresh_database: Callable[[], URL], settings: Settings, tmp_path: Path
) -> None:
    url = fresh_database()
    engine = create_engine(url, settings)
    try:
        async with transaction(create_session_factory(engine, settings)) as session:
            await create_user(session, email="first@example.com", role=UserRole.SUPER_ADMIN.value)
            await create_user(session, email="cust@example.com")
    finally:
        await engine.dispose()
    env = clean_env(
        CORRAL_DATABASE_URL=url.render_as_string(hide_password=False),
        CORRAL_WEB__PUBLIC_URL=settings.web.public_url,
        CORRAL_SECURITY__AUDIT_KEY=settings.security.audit_key.get_secret_value(),
        CORRAL_DATA_DIR=str(tmp_path / "data"),
    )

    def corral_admin(*args: str) -> subprocess.CompletedProcess[str]:
        return run_corral("admin", "enrolment-link", *args, env=env, cwd=tmp_path)

    printed = await asyncio.to_thread(corral_admin, "first@example.com")
    customer = await asyncio.to_thread(corral_admin, "cust@example.com")
    nobody = await asyncio.to_thread(corral_admin, "nobody@example.com")

    assert printed.returncode == 0, printed.stderr
    links = re.findall(
        r"^https://panel\.test/account/security/passkeys/enrol\?token=\S+$", printed.stdout, re.M
    )
    assert len(links) == 1, printed.stdout
    assert "first@example.com" in printed.stdout
    assert customer.returncode == nobody.returncode == 1
    assert "operator and super-admin" in customer.stderr
    assert "No account has that email address" in nobody.stderr

    # The printed link is the first super-admin's way to a passkey, in the panel on that database.
    app = create_app(settings, database_url=url, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://panel.test") as client:
            assert (await sign_in(client, "first@example.com", DEFAULT_PASSWORD)).status_code == 303
            await register_through_link(client, links[0], SoftwareAuthenticator())
    engine = create_engine(url, settings)
    try:
        async with create_session_factory(engine, settings)() as session:
            issued = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action.like("auth.passkey_enrolment.%"))
                )
            ).all()
            keys = (await session.scalars(select(Passkey))).all()
    finally:
        await engine.dispose()
    assert [(e.action, e.actor_label, e.result) for e in issued] == [
        ("auth.passkey_enrolment.issue", "cli:admin enrolment-link", "success"),
        ("auth.passkey_enrolment.use", "first@example.com", "success"),
    ]
    assert len(keys) == 1


# ---------------------------------------------------------------- the same class: the email channel


async def test_a_password_session_cannot_move_a_staff_accounts_email(
    people: People, db: AsyncSession
) -> None:
    """The address is where enrolment links go: a password alone must not redirect it."""
    operator = await create_user(db, role=UserRole.OPERATOR.value)
    client = await password_client(people, operator)
    form = {"new_email": "thief@example.net", "current_password": DEFAULT_PASSWORD}

    refused = await client.post("/account/email", data=form, headers=await headers_of(client))

    assert refused.status_code == 422
    assert "only in a session signed in with a passkey" in refused.text
    assert await emails_to(db, "thief@example.net", "change_email") == []

    # Signed in with its passkey, the operator may.
    staff = await people.client()
    await passkey_sign_in(staff, db, operator)
    moved = await staff.post("/account/email", data=form, headers=await headers_of(staff))
    assert moved.status_code in (200, 303)
    assert len(await emails_to(db, "thief@example.net", "change_email")) == 1
