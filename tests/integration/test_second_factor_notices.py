"""Every added or removed second factor emails the account's owner (issue 10), never a secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.principal import Principal
from corral.auth.totp import PERIOD_SECONDS, totp
from corral.db.session import settings_of
from corral.models.email import EmailMessage
from corral.models.mfa import Passkey
from corral.models.users import User, UserRole
from corral.notifications.service import render, template_spec
from corral.rbac.permissions import permissions_for
from tests.support.admin import People, Person, people_for
from tests.support.authenticator import SoftwareAuthenticator

NOTICE = "second_factor_changed"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as made:
        yield made


async def notices(db: AsyncSession, user: User) -> list[EmailMessage]:
    rows = await db.scalars(
        select(EmailMessage).where(EmailMessage.template == NOTICE).order_by(EmailMessage.id)
    )
    found = list(rows)
    assert {message.to_address for message in found} <= {user.email}  # only ever the owner
    return found


def body_of(db: AsyncSession, message: EmailMessage) -> str:
    rendered = render(template_spec(message.template), message.context, settings_of(db))
    return rendered.subject + rendered.text + rendered.html


async def add_passkey(person: Person, authenticator: SoftwareAuthenticator, name: str) -> int:
    options = await person.post_json("/account/security/passkeys/options", {})
    assert options.status_code == 200, options.text
    added = await person.post_json(
        "/account/security/passkeys", {"credential": authenticator.create(options.json()), "name": name}
    )
    assert added.status_code == 201, added.text
    return int(added.json()["id"])


async def passkey_step_up(person: Person, authenticator: SoftwareAuthenticator) -> None:
    options = await person.post_json("/step-up/passkey/options", {})
    assert options.status_code == 200, options.text
    done = await person.post_json("/step-up/passkey", {"credential": authenticator.get(options.json())})
    assert done.status_code == 200, done.text


async def test_adding_and_removing_a_passkey_emails_the_owner(people: People, db: AsyncSession) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    authenticator = SoftwareAuthenticator()

    passkey_id = await add_passkey(customer, authenticator, "Kitchen tablet")
    [added] = await notices(db, customer.user)
    # With a passkey on the account, changing passkeys needs a passkey step-up.
    await passkey_step_up(customer, authenticator)
    renamed = await customer.post_form(f"/account/security/passkeys/{passkey_id}/rename", {"name": "Tablet"})
    removed = await customer.post_form(f"/account/security/passkeys/{passkey_id}/delete")

    assert renamed.status_code == removed.status_code == 303
    assert await db.scalar(select(Passkey).where(Passkey.id == passkey_id)) is None
    first, second = await notices(db, customer.user)  # renaming changes no factor: no email
    assert (first.context["change"], first.context["detail"]) == ("passkey_added", "Kitchen tablet")
    assert (second.context["change"], second.context["detail"]) == ("passkey_removed", "Tablet")
    assert added.id == first.id
    body = body_of(db, first)
    assert "A passkey was added to your Corral account" in body
    assert "Kitchen tablet" in body
    assert "If it was not you" in body
    assert "https://panel.test/password/forgot" in body


async def test_turning_the_authenticator_on_and_off_emails_the_owner(
    db: AsyncSession, people: People
) -> None:
    person = await people.sign_in(UserRole.CUSTOMER)
    principal = Principal.of(person.user, permissions_for(person.user.role))
    now = datetime.now(UTC)

    enrolment = await totp.begin_enrolment(db, principal)
    assert await notices(db, person.user) == []  # a setup not yet confirmed changes nothing
    code = pyotp.TOTP(enrolment.secret).at(int(now.timestamp()) // PERIOD_SECONDS * PERIOD_SECONDS)
    first_codes = await totp.confirm(db, principal, code, now=now)
    new_codes = await totp.regenerate_recovery_codes(db, principal)
    await totp.disable(db, principal)

    sent = await notices(db, person.user)
    assert [message.context["change"] for message in sent] == [
        "totp_enabled",
        "recovery_codes_regenerated",
        "totp_disabled",
    ]
    for message in sent:
        body = body_of(db, message) + str(message.context)
        assert enrolment.secret not in body
        assert not any(recovery in body for recovery in [*first_codes, *new_codes])


async def test_a_staff_passkey_added_through_its_link_emails_the_owner_too(
    people: People, db: AsyncSession
) -> None:
    operator = await people.sign_in(UserRole.OPERATOR)  # the helper enrols through a link
    [message] = await notices(db, operator.user)
    assert message.context["change"] == "passkey_added"
