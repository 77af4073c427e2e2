"""Staff mark an account's email verified or send it a new verification link: pages and API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.kit.clock import utcnow
from corral.models.auth import UserToken
from corral.models.email import EmailMessage
from corral.models.users import User, UserRole, UserStatus
from corral.users.service import accounts
from tests.support.admin import People, people_for
from tests.support.auth import ORIGIN

API = "/api/v1/admin/users/{id}/{action}"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def pending(people: People, role: UserRole = UserRole.CUSTOMER, **overrides: object) -> User:
    """An account that signed up and has not followed its link yet."""
    values: dict[str, object] = {"status": UserStatus.PENDING_VERIFICATION.value, "email_verified_at": None}
    return await people.user(role, **{**values, **overrides})


async def emails_to(db: AsyncSession, address: str, template: str) -> list[EmailMessage]:
    statement = select(EmailMessage).where(
        EmailMessage.to_address == address, EmailMessage.template == template
    )
    return list((await db.execute(statement.order_by(EmailMessage.id))).scalars())


def token_in(message: EmailMessage) -> str:
    [token] = parse_qs(urlsplit(str(message.context["link"])).query)["token"]
    return token


def toasts(response: httpx.Response) -> list[str]:
    return [item["message"] for item in json.loads(response.headers["HX-Trigger"])["corral:toast"]]


# ---------------------------------------------------------------- marking verified


async def test_support_marks_an_email_verified_and_the_account_is_ready(
    people: People, db: AsyncSession
) -> None:
    support = await people.sign_in(UserRole.SUPPORT, email="sam@staff.example")
    ada = await pending(people, email="ada@example.com")
    await accounts.send_verification(db, ada)
    [link_email] = await emails_to(db, "ada@example.com", "verify_email")

    response = await support.post_form(f"/admin/users/{ada.id}/verify-email")

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/users/{ada.id}?done=email_verified"
    await db.refresh(ada)
    assert ada.status == UserStatus.ACTIVE
    assert ada.email_verified_at is not None
    assert len(await emails_to(db, "ada@example.com", "welcome")) == 1
    [event] = await audit.list(db, action="user.email.mark_verified")
    assert (event.actor_id, event.actor_role) == (support.user.id, "support")
    assert (event.target_type, event.target_id) == ("user", str(ada.id))
    assert event.payload == {
        "email": "ada@example.com",
        "from_status": "pending_verification",
        "to_status": "active",
    }
    # The link still out for the address has nothing left to do: it stops working.
    stale = await support.client.get(f"/verify?token={token_in(link_email)}")
    assert stale.status_code == 400
    landed = await support.client.get(response.headers["location"])
    assert "Email marked verified." in landed.text
    assert "Mark email verified" not in landed.text


async def test_marking_verified_twice_changes_nothing_and_says_so(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    ada = await pending(people)
    path = API.format(id=ada.id, action="verify-email")

    first = await support.post_json(path)
    second = await support.post_json(path)
    page = await support.post_htmx(f"/admin/users/{ada.id}/verify-email")

    assert first.status_code == 200
    assert first.json()["outcome"] == "email_verified"
    assert first.json()["user"]["status"] == "active"
    assert second.status_code == 200
    assert second.json()["outcome"] == "already_verified"
    assert second.json()["message"] == "This email address was already verified; nothing changed."
    assert second.json()["user"]["email_verified_at"] == first.json()["user"]["email_verified_at"]
    assert page.status_code == 200
    assert toasts(page) == ["This email address was already verified; nothing changed."]
    assert len(await audit.list(db, action="user.email.mark_verified")) == 1
    assert len(await emails_to(db, ada.email, "welcome")) == 1


async def test_only_a_super_admin_vouches_for_a_staff_account(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    operator = await pending(people, UserRole.OPERATOR)

    refused = await support.post_json(API.format(id=operator.id, action="verify-email"))
    page = await support.client.get(f"/admin/users/{operator.id}")

    assert refused.status_code == 403
    assert refused.json()["code"] == "protected_user"
    await db.refresh(operator)
    assert operator.email_verified_at is None
    assert "Mark email verified" not in page.text
    assert "Resend verification email" in page.text  # a new link only goes to the owner's address


async def test_a_blocked_account_is_unblocked_first(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    blocked = await pending(people, status=UserStatus.BLOCKED.value)

    verify = await support.post_json(API.format(id=blocked.id, action="verify-email"))
    resend = await support.post_json(API.format(id=blocked.id, action="resend-verification"))

    assert (verify.status_code, verify.json()["code"]) == (409, "account_blocked")
    assert (resend.status_code, resend.json()["code"]) == (409, "account_blocked")
    await db.refresh(blocked)
    assert blocked.email_verified_at is None


# ---------------------------------------------------------------- resending


async def test_support_resends_the_link_at_most_once_a_minute(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    ada = await pending(people, email="ada@example.com")
    path = API.format(id=ada.id, action="resend-verification")

    sent = await support.post_json(path)
    again = await support.post_json(path)
    page_again = await support.post_htmx(f"/admin/users/{ada.id}/resend-verification")

    assert sent.status_code == 200
    assert sent.json()["outcome"] == "verification_sent"
    assert again.status_code == 429
    assert again.json()["code"] == "verification_recently_sent"
    assert 1 <= int(again.headers["Retry-After"]) <= 60
    assert page_again.status_code == 429
    assert toasts(page_again) == [
        "A verification email went to this address less than a minute ago. Try again shortly."
    ]
    [message] = await emails_to(db, "ada@example.com", "verify_email")
    [event] = await audit.list(db, action="user.email.verify_resend")
    assert (event.actor_id, event.actor_role) == (support.user.id, "support")
    assert event.payload == {"email": "ada@example.com"}

    # A minute later the next one goes, and only its link works.
    await db.execute(update(UserToken).values(created_at=utcnow() - timedelta(seconds=61)))
    later = await support.post_form(f"/admin/users/{ada.id}/resend-verification")
    assert later.status_code == 303
    assert later.headers["location"] == f"/admin/users/{ada.id}?done=verification_sent"
    first, second = await emails_to(db, "ada@example.com", "verify_email")
    assert first.id == message.id
    assert (await support.client.get(f"/verify?token={token_in(first)}")).status_code == 400
    followed = await people.client()
    assert (await followed.get(f"/verify?token={token_in(second)}")).status_code == 200


async def test_a_link_the_owner_just_asked_for_counts_against_the_minute(
    people: People, db: AsyncSession
) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    ada = await pending(people)
    await accounts.send_verification(db, ada)  # as sign-up or the owner's own resend does

    response = await support.post_json(API.format(id=ada.id, action="resend-verification"))

    assert response.status_code == 429
    assert len(await emails_to(db, ada.email, "verify_email")) == 1


async def test_there_is_nothing_to_resend_to_a_verified_address(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    verified = await people.user()

    response = await support.post_json(API.format(id=verified.id, action="resend-verification"))
    page = await support.client.get(f"/admin/users/{verified.id}")

    assert response.status_code == 409
    assert response.json()["code"] == "email_already_verified"
    assert response.json()["message"] == "This email address is already verified; there is nothing to resend."
    assert await emails_to(db, verified.email, "verify_email") == []
    assert "Resend verification email" not in page.text
    assert "Mark email verified" not in page.text


# ---------------------------------------------------------------- who may


@pytest.mark.parametrize("role", [UserRole.CUSTOMER, UserRole.BILLING])
@pytest.mark.parametrize("action", ["verify-email", "resend-verification"])
async def test_only_staff_who_approve_accounts_may(
    people: People, db: AsyncSession, role: UserRole, action: str
) -> None:
    someone = await people.sign_in(role)
    ada = await pending(people)

    api = await someone.post_json(API.format(id=ada.id, action=action))
    page = await someone.post_form(f"/admin/users/{ada.id}/{action}")

    assert api.status_code == 403
    assert page.status_code == 403
    await db.refresh(ada)
    assert ada.email_verified_at is None
    assert await emails_to(db, ada.email, "verify_email") == []


async def test_an_operator_sees_the_account_but_cannot_act_on_its_email(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)
    ada = await pending(people)

    page = await operator.client.get(f"/admin/users/{ada.id}")
    refused = await operator.post_json(API.format(id=ada.id, action="verify-email"))

    assert page.status_code == 200
    assert "Mark email verified" not in page.text
    assert "Resend verification email" not in page.text
    assert refused.status_code == 403


async def test_signed_out_and_forged_requests_are_refused(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    ada = await pending(people)
    stranger = await people.client()

    signed_out = await stranger.post(API.format(id=ada.id, action="verify-email"), json={}, headers=ORIGIN)
    forged = await support.client.post(f"/admin/users/{ada.id}/verify-email", headers=ORIGIN)
    missing = await support.post_json(API.format(id=2**40, action="verify-email"))

    assert signed_out.status_code == 401
    assert forged.status_code == 403
    assert missing.status_code == 404
    await db.refresh(ada)
    assert ada.email_verified_at is None


async def test_support_sees_both_buttons_for_an_unverified_customer(people: People) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    ada = await pending(people)

    page = await support.client.get(f"/admin/users/{ada.id}")

    assert f'action="/admin/users/{ada.id}/verify-email"' in page.text
    assert f'action="/admin/users/{ada.id}/resend-verification"' in page.text
    assert "The owner has not confirmed this address yet." in page.text
