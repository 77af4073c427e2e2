"""Panel settings: defaults, changes with audit, validation, and only super admins may touch them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.settings import PanelSetting
from corral.models.users import UserRole
from corral.panel_settings.schemas import PanelSettings
from corral.panel_settings.service import panel_settings
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for

API = "/api/v1/admin/settings"
PAGE = "/admin/settings"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


async def stored(db: AsyncSession) -> dict[str, object]:
    rows = (await db.execute(select(PanelSetting.key, PanelSetting.value))).all()
    return {key: value for key, value in rows}


async def test_unset_settings_read_as_the_defaults(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)

    assert await panel_settings.current(db) == PanelSettings(
        require_customer_2fa=False, customer_server_limit=5
    )
    response = await admin.client.get(API)

    assert response.status_code == 200
    assert response.json() == {
        "require_customer_2fa": False,
        "customer_server_limit": 5,
        "unfinished_order_days": 7,
    }


async def test_unknown_and_unusable_rows_are_ignored(db: AsyncSession) -> None:
    db.add_all(
        [
            PanelSetting(key="customer_server_limit", value="lots"),
            PanelSetting(key="require_customer_2fa", value=True),
            PanelSetting(key="retired_setting", value={"x": 1}),
        ]
    )
    await db.flush()

    assert await panel_settings.current(db) == PanelSettings(
        require_customer_2fa=True, customer_server_limit=5
    )


async def test_a_super_admin_changes_settings_and_it_is_audited(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)

    changed = await admin.client.patch(API, json={"customer_server_limit": 12}, headers=admin.headers())

    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "require_customer_2fa": False,
        "customer_server_limit": 12,
        "unfinished_order_days": 7,
    }
    assert await stored(db) == {"customer_server_limit": 12}  # only the changed key is written
    both = await admin.client.patch(
        API, json={"require_customer_2fa": True, "customer_server_limit": 12}, headers=admin.headers()
    )
    assert both.json() == {
        "require_customer_2fa": True,
        "customer_server_limit": 12,
        "unfinished_order_days": 7,
    }
    assert await panel_settings.current(db) == PanelSettings(
        require_customer_2fa=True, customer_server_limit=12
    )
    row = (await db.scalars(select(PanelSetting).where(PanelSetting.key == "require_customer_2fa"))).one()
    assert row.updated_by_id == admin.user.id

    unchanged = await admin.client.patch(API, json={"customer_server_limit": 12}, headers=admin.headers())
    assert unchanged.status_code == 200

    events = await audit_events(db, "settings.")
    assert [event.action for event in events] == ["settings.update", "settings.update"]
    assert events[0].actor_label == admin.user.email
    assert events[0].payload == {
        "before": {"customer_server_limit": 5},
        "after": {"customer_server_limit": 12},
    }
    assert events[1].payload == {
        "before": {"require_customer_2fa": False},
        "after": {"require_customer_2fa": True},
    }


@pytest.mark.parametrize(
    "body",
    [
        {"customer_server_limit": 0},
        {"customer_server_limit": 1001},
        {"customer_server_limit": "many"},
        {"require_customer_2fa": "perhaps"},
        {"unknown_setting": 1},
    ],
)
async def test_invalid_changes_are_refused_and_nothing_is_written(
    people: People, db: AsyncSession, body: dict[str, object]
) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)

    response = await admin.client.patch(API, json=body, headers=admin.headers())

    assert response.status_code == 422
    assert error_code(response.json()) == "validation_failed"
    assert [error["field"] for error in response.json()["errors"]] == list(body)
    assert await stored(db) == {}
    assert await audit_events(db, "settings.") == []


@pytest.mark.parametrize("role", [UserRole.CUSTOMER, UserRole.SUPPORT, UserRole.BILLING, UserRole.OPERATOR])
async def test_only_a_super_admin_may_see_or_change_settings(
    people: People, db: AsyncSession, role: UserRole
) -> None:
    person = await people.sign_in(role)

    assert (await person.client.get(API)).status_code == 403
    assert (
        await person.client.patch(API, json={"customer_server_limit": 9}, headers=person.headers())
    ).status_code == 403
    assert (await person.client.get(PAGE)).status_code == 403
    assert (await person.post_form(PAGE, {"customer_server_limit": "9"})).status_code == 403
    assert 'href="/admin/settings"' not in (await person.client.get("/account")).text
    assert await stored(db) == {}


async def test_anonymous_requests_are_refused(people: People) -> None:
    anonymous = await people.client()

    assert (await anonymous.get(API)).status_code == 401
    page = await anonymous.get(PAGE)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")


async def test_the_page_saves_and_refuses_bad_input_inline(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)

    page = await admin.client.get(PAGE)
    assert page.status_code == 200
    assert 'href="/admin/settings"' in page.text  # the nav links here for those who may use it
    assert 'value="5"' in page.text

    bad = await admin.post_form(PAGE, {"require_customer_2fa": "on", "customer_server_limit": "1001"})
    assert bad.status_code == 422
    assert 'data-field-error="customer_server_limit"' in bad.text
    assert 'value="1001"' in bad.text
    assert await stored(db) == {}

    saved = await admin.post_form(
        PAGE, {"require_customer_2fa": "on", "customer_server_limit": " 20 ", "unfinished_order_days": "7"}
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PAGE}?done=saved"
    shown = await admin.client.get(saved.headers["location"])
    assert "Settings saved." in shown.text
    assert 'value="20"' in shown.text
    assert await panel_settings.current(db) == PanelSettings(
        require_customer_2fa=True, customer_server_limit=20
    )

    # An unticked checkbox is not sent at all: it turns the requirement off.
    await admin.post_form(PAGE, {"customer_server_limit": "20", "unfinished_order_days": "7"})
    assert (await panel_settings.current(db)).require_customer_2fa is False
    assert len(await audit_events(db, "settings.")) == 2
