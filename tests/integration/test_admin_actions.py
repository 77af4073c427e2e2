"""Blocking, unblocking, changing roles and approving, through the pages as staff use them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.models.auth import UserSession
from corral.models.email import EmailMessage
from corral.models.users import User, UserRole, UserStatus
from tests.factories.users import DEFAULT_PASSWORD
from tests.support.admin import SESSION_COOKIE, People, people_for
from tests.support.auth import sign_in


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def _reload(db: AsyncSession, user: User) -> User:
    await db.refresh(user)
    return user


def _toasts(header: str) -> list[str]:
    return [item["message"] for item in json.loads(header)["corral:toast"]]


# ---------- Blocking ----------


async def test_blocking_signs_the_user_out_everywhere_at_once(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.sign_in(UserRole.CUSTOMER)
    assert (await target.client.get("/dashboard")).status_code == 200

    response = await admin.post_form(f"/admin/users/{target.user.id}/block", {"reason": "card testing fraud"})

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/users/{target.user.id}?done=blocked"
    # Her very next request, with the cookie she still holds, is that of a stranger.
    after = await target.client.get("/dashboard")
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login?next=")
    sessions = (await db.scalars(select(UserSession).where(UserSession.user_id == target.user.id))).all()
    assert sessions
    assert all(row.revoked_at is not None and row.revoked_reason == "blocked" for row in sessions)
    user = await _reload(db, target.user)
    assert user.status == "blocked"
    assert user.blocked_reason == "card testing fraud"
    assert user.blocked_at is not None
    # The redirect lands on her page, which says what happened.
    landed = await admin.client.get(response.headers["location"])
    assert "User blocked and signed out everywhere." in landed.text
    assert 'class="badge badge--blocked"' in landed.text


async def test_a_blocked_user_cannot_sign_in(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(email="mallory@example.com")
    await admin.post_form(f"/admin/users/{target.id}/block", {"reason": "abuse reports"})

    fresh = await people.client()
    response = await sign_in(fresh, "mallory@example.com", DEFAULT_PASSWORD)

    assert response.status_code == 403
    assert "This account is blocked." in response.text
    assert fresh.cookies.get(SESSION_COOKIE) is None


async def test_the_block_is_audited_with_actor_target_ip_and_reason(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPPORT, email="sam@staff.example")
    target = await people.sign_in(UserRole.CUSTOMER)

    await admin.post_form(f"/admin/users/{target.user.id}/block", {"reason": "  chargeback ring  "})

    [event] = await audit.list(db, action="user.block")
    assert event.actor_type == "user"
    assert event.actor_id == admin.user.id
    assert event.actor_label == "sam@staff.example"
    assert event.actor_role == "support"
    assert (event.target_type, event.target_id) == ("user", str(target.user.id))
    assert str(event.ip) == "127.0.0.1"
    assert event.reason == "chargeback ring"
    assert event.result == "success"
    assert event.payload == {"from_status": "active", "signed_out": 1}
    assert event.request_id
    report = await audit.verify(db)
    assert report.ok, report.summary()


@pytest.mark.parametrize("reason", ["", "   ", "no"])
async def test_blocking_needs_a_reason(people: People, db: AsyncSession, reason: str) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user()
    path = f"/admin/users/{target.id}/block"

    page = await admin.post_form(path, {"reason": reason})
    fragment = await admin.post_htmx(path, {"reason": reason})
    api = await admin.post_json(f"/api/v1/admin/users/{target.id}/block", {"reason": reason})
    missing = await admin.post_json(f"/api/v1/admin/users/{target.id}/block", {})

    assert page.status_code == 422
    # The page comes back with the form still open, what was typed, and the problem by the field.
    assert 'data-testid="form-error"' in page.text
    assert 'aria-invalid="true"' in page.text
    assert fragment.status_code == 422
    assert fragment.text.lstrip().startswith('<article id="user-actions"')
    assert fragment.headers["HX-Retarget"] == "#user-actions"
    assert _toasts(fragment.headers["HX-Trigger"]) == [
        "Give a reason of at least 3 characters; it is kept in the audit log."
    ]
    for response in (api, missing):
        assert response.status_code == 422
        assert response.json()["code"] == "validation_failed"
        assert [error["field"] for error in response.json()["errors"]] == ["reason"]
    assert (await _reload(db, target)).status == "active"
    assert await audit.list(db, action="user.block") == []


async def test_you_cannot_block_yourself(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)

    response = await admin.post_json(f"/api/v1/admin/users/{admin.user.id}/block", {"reason": "testing"})
    page = await admin.client.get(f"/admin/users/{admin.user.id}")

    assert response.status_code == 409
    assert response.json()["code"] == "cannot_block_self"
    assert f"/admin/users/{admin.user.id}/block" not in page.text


async def test_only_a_super_admin_can_block_a_super_admin(people: People, db: AsyncSession) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    other_boss = await people.user(UserRole.SUPER_ADMIN)

    refused = await support.post_json(f"/api/v1/admin/users/{other_boss.id}/block", {"reason": "coup"})
    page = await support.client.get(f"/admin/users/{other_boss.id}")
    allowed = await boss.post_json(f"/api/v1/admin/users/{other_boss.id}/block", {"reason": "left us"})

    assert refused.status_code == 403
    assert refused.json()["code"] == "protected_user"
    assert f"/admin/users/{other_boss.id}/block" not in page.text
    assert allowed.status_code == 200
    assert allowed.json()["status"] == "blocked"


async def test_blocking_twice_is_a_conflict_shown_as_a_toast(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(status="blocked")

    response = await admin.post_htmx(f"/admin/users/{target.id}/block", {"reason": "again"})

    assert response.status_code == 409
    assert response.headers["HX-Reswap"] == "none"
    assert _toasts(response.headers["HX-Trigger"]) == ["This account is already blocked."]


async def test_htmx_block_opens_a_confirmation_then_refreshes_the_panel_with_a_toast(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(name="Tina Target")

    confirm = await admin.client.get(f"/admin/users/{target.id}/block", headers={"HX-Request": "true"})
    done = await admin.post_htmx(f"/admin/users/{target.id}/block", {"reason": "spam waves"})

    assert confirm.status_code == 200
    assert confirm.text.lstrip().startswith('<article id="user-actions"')
    assert "Block <strong>Tina Target</strong>?" in confirm.text
    assert 'name="reason"' in confirm.text
    assert done.status_code == 200
    assert done.text.lstrip().startswith('<div id="user-detail"')
    assert 'class="badge badge--blocked"' in done.text
    assert _toasts(done.headers["HX-Trigger"]) == ["User blocked and signed out everywhere."]


# ---------- Unblocking ----------


@pytest.mark.parametrize(
    "before",
    [UserStatus.ACTIVE, UserStatus.PENDING_APPROVAL, UserStatus.PENDING_VERIFICATION],
)
async def test_unblocking_returns_the_account_to_where_it_was(
    people: People, db: AsyncSession, before: UserStatus
) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(status=before.value)
    await admin.post_form(f"/admin/users/{target.id}/block", {"reason": "suspicious sign-up"})

    response = await admin.post_form(f"/admin/users/{target.id}/unblock", {"reason": ""})

    assert response.status_code == 303
    user = await _reload(db, target)
    assert user.status == before
    assert user.blocked_at is None
    assert user.blocked_reason is None
    [event] = await audit.list(db, action="user.unblock")
    assert event.payload == {"to_status": before.value}
    assert event.reason is None
    assert event.actor_id == admin.user.id


async def test_a_block_made_elsewhere_is_lifted_by_what_the_row_shows(
    people: People, db: AsyncSession
) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    verified = await people.user(status="blocked")
    unverified = await people.user(status="blocked", email_verified_at=None)

    first = await admin.post_json(f"/api/v1/admin/users/{verified.id}/unblock", {"reason": "appeal upheld"})
    second = await admin.post_json(f"/api/v1/admin/users/{unverified.id}/unblock")

    assert first.json()["status"] == "active"
    assert second.json()["status"] == "pending_verification"
    [event, _] = await audit.list(db, action="user.unblock")
    assert event.target_id == str(unverified.id)
    assert (await audit.list(db, action="user.unblock"))[1].reason == "appeal upheld"


async def test_an_unblocked_user_can_sign_in_again(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(email="back@example.com")
    await admin.post_form(f"/admin/users/{target.id}/block", {"reason": "mistaken identity"})
    await admin.post_form(f"/admin/users/{target.id}/unblock", {"reason": "sorted out"})

    response = await sign_in(await people.client(), "back@example.com", DEFAULT_PASSWORD)

    assert response.status_code == 303


async def test_unblocking_an_account_that_is_not_blocked_is_a_conflict(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.user()

    response = await admin.post_json(f"/api/v1/admin/users/{target.id}/unblock", {})

    assert response.status_code == 409
    assert response.json() == {
        "code": "not_blocked",
        "message": "This account is not blocked.",
        "request_id": response.headers["x-request-id"],
    }


# ---------- Roles ----------


async def test_a_role_change_rotates_the_targets_session_and_is_audited(
    people: People, db: AsyncSession
) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await people.sign_in(UserRole.CUSTOMER)
    before = target.client.cookies.get(SESSION_COOKIE)

    response = await boss.post_form(
        f"/admin/users/{target.user.id}/role", {"role": "support", "reason": "hired for support"}
    )

    assert response.status_code == 303
    # Her next request still works, under a new session id, with the new role's permissions.
    assert (await target.client.get("/admin/users")).status_code == 200
    after = target.client.cookies.get(SESSION_COOKIE)
    assert after is not None
    assert after != before
    stale = await people.client()
    stale.cookies.set(SESSION_COOKIE, before or "", domain="panel.test")
    assert (await stale.get("/dashboard")).status_code == 303
    [event] = await audit.list(db, action="user.role.change", target=Target(type="user", id=target.user.id))
    assert event.payload == {"from": "customer", "to": "support"}
    assert event.reason == "hired for support"
    assert event.actor_id == boss.user.id
    assert str(event.ip) == "127.0.0.1"


async def test_a_role_change_needs_a_reason_and_a_known_role(people: People, db: AsyncSession) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await people.user()
    path = f"/admin/users/{target.id}/role"

    no_reason = await boss.post_form(path, {"role": "support", "reason": ""})
    bad_role = await boss.post_form(path, {"role": "emperor", "reason": "because"})
    api = await boss.post_json(f"/api/v1/admin/users/{target.id}/role", {"role": "support"})

    assert no_reason.status_code == 422
    assert "Give a reason of at least 3 characters" in no_reason.text
    assert bad_role.status_code == 422
    assert "Choose one of the roles." in bad_role.text
    assert api.status_code == 422
    assert (await _reload(db, target)).role == "customer"


async def test_the_last_super_admin_cannot_be_demoted(people: People, db: AsyncSession) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    # A blocked super admin cannot sign in, so it does not count as another.
    await people.user(UserRole.SUPER_ADMIN, status="blocked")

    alone = await boss.post_json(
        f"/api/v1/admin/users/{boss.user.id}/role", {"role": "operator", "reason": "stepping down"}
    )
    assert alone.status_code == 409
    assert alone.json()["code"] == "last_super_admin"
    assert (await _reload(db, boss.user)).role == "super_admin"

    second = await people.user(UserRole.SUPER_ADMIN)
    demoted = await boss.post_json(
        f"/api/v1/admin/users/{second.id}/role", {"role": "operator", "reason": "moved to ops"}
    )
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "operator"


async def test_setting_the_same_role_is_a_conflict(people: People) -> None:
    boss = await people.sign_in(UserRole.SUPER_ADMIN)
    target = await people.user(UserRole.BILLING)

    response = await boss.post_json(
        f"/api/v1/admin/users/{target.id}/role", {"role": "billing", "reason": "x y z"}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "role_unchanged"


async def test_support_sees_no_role_form_and_cannot_post_one(people: People) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    target = await people.user()

    page = await support.client.get(f"/admin/users/{target.id}")
    posted = await support.post_form(
        f"/admin/users/{target.id}/role", {"role": "super_admin", "reason": "me"}
    )

    assert "Change role" not in page.text
    assert posted.status_code == 403


# ---------- Approval ----------


async def test_approving_activates_the_account_emails_the_owner_and_is_audited(
    people: People, db: AsyncSession
) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(
        email="newbie@example.com", name="Nia Newbie", status=UserStatus.PENDING_APPROVAL.value
    )
    waiting = await support.client.get("/admin/users", params={"status": "pending_approval"})
    assert "newbie@example.com" in waiting.text

    response = await support.post_form(f"/admin/users/{target.id}/approve")

    assert response.status_code == 303
    user = await _reload(db, target)
    assert user.status == "active"
    assert user.approved_at is not None
    [message] = (
        await db.scalars(select(EmailMessage).where(EmailMessage.to_address == "newbie@example.com"))
    ).all()
    assert message.template == "welcome"
    assert message.context == {"name": "Nia Newbie"}
    [event] = await audit.list(db, action="user.approve")
    assert (event.actor_id, event.target_id) == (support.user.id, str(target.id))
    # And now she can sign in.
    assert (await sign_in(await people.client(), "newbie@example.com", DEFAULT_PASSWORD)).status_code == 303


async def test_approving_from_a_list_row_swaps_that_row(people: People) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(status=UserStatus.PENDING_APPROVAL.value)

    response = await support.post_htmx(f"/admin/users/{target.id}/approve?view=row")

    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<tr id="user-row-{target.id}"')
    assert 'class="badge badge--active"' in response.text
    assert "Approve" not in response.text
    assert _toasts(response.headers["HX-Trigger"]) == ["Account approved. We emailed the user."]


@pytest.mark.parametrize("status", [UserStatus.ACTIVE, UserStatus.PENDING_VERIFICATION, UserStatus.BLOCKED])
async def test_only_accounts_waiting_for_approval_can_be_approved(people: People, status: UserStatus) -> None:
    support = await people.sign_in(UserRole.SUPPORT)
    target = await people.user(status=status.value)

    response = await support.post_json(f"/api/v1/admin/users/{target.id}/approve")

    assert response.status_code == 409
    assert response.json()["code"] == "not_pending_approval"
