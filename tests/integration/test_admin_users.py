"""The user list and a user's page: search, filters, paging, what the page shows, query counts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from corral.auth.service import auth
from corral.kit.clock import utcnow
from corral.models.auth import AuthMethod
from corral.models.users import UserRole, UserStatus
from tests.support.admin import People, people_for


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


def _emails(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text[:300]
    return [item["email"] for item in response.json()["items"]]


async def test_the_list_shows_users_with_status_badges(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    await people.user(email="blocked-one@example.com", status=UserStatus.BLOCKED.value)
    await people.user(email="waiting-one@example.com", status=UserStatus.PENDING_APPROVAL.value)

    page = await admin.client.get("/admin/users")

    assert page.status_code == 200
    assert '<h1 id="users-title" class="page-header__title">Users</h1>' in page.text
    assert "blocked-one@example.com" in page.text
    assert 'class="badge badge--blocked"' in page.text
    assert 'class="badge badge--pending_approval"' in page.text
    # Support may approve: the list links to the accounts waiting, and offers Approve in the row.
    assert 'data-testid="pending-link"' in page.text
    assert "/approve?view=row" in page.text


async def test_an_htmx_search_gets_only_the_results(people: People) -> None:
    admin = await people.sign_in(UserRole.OPERATOR)
    await people.user(email="findme@example.com")

    response = await admin.client.get("/admin/users?q=findme", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="user-results"')
    assert "<html" not in response.text
    assert "findme@example.com" in response.text
    assert "HX-Request" in response.headers["vary"]


async def test_search_matches_part_of_the_email_or_name_whatever_the_case(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    await people.user(email="Grace.Hopper@Navy.example", name="Grace Hopper")
    await people.user(email="ada@example.com", name="Ada Lovelace")

    by_email = await admin.client.get("/api/v1/admin/users", params={"q": "navy.EXAMPLE"})
    by_name = await admin.client.get("/api/v1/admin/users", params={"q": "  lovelace "})

    assert _emails(by_email) == ["Grace.Hopper@Navy.example"]
    assert _emails(by_name) == ["ada@example.com"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("%", ["pct"]),
        ("_", ["under"]),
        ("'", ["quote"]),
        ('"', ["dquote"]),
        ("\\", ["backslash"]),
        ("/", ["slash"]),
        ("%_", []),
        ("'; DROP TABLE users; --", []),
    ],
)
async def test_search_treats_wildcards_and_quotes_as_plain_text(
    people: People, query: str, expected: list[str]
) -> None:
    admin = await people.sign_in(UserRole.SUPPORT, name="Staff Member")
    names = {
        "pct": "Fifty % Off",
        "under": "snake_case",
        "quote": "Miles O'Brien",
        "dquote": 'The "Boss"',
        "backslash": "Back\\Slash",
        "slash": "Either/Or",
        "plain": "Plain Person",
    }
    for key, name in names.items():
        await people.user(email=f"{key}@example.com", name=name)

    response = await admin.client.get("/api/v1/admin/users", params={"q": query})

    found = sorted(email.split("@")[0] for email in _emails(response))
    assert found == sorted(expected)
    # The HTML page takes the same text and escapes it back into the search box.
    page = await admin.client.get("/admin/users", params={"q": query})
    assert page.status_code == 200


async def test_filters_by_status_and_role(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    await people.user(email="pending@example.com", status=UserStatus.PENDING_APPROVAL.value)
    await people.user(email="op@example.com", role=UserRole.OPERATOR)

    pending = await admin.client.get("/api/v1/admin/users", params={"status": "pending_approval"})
    operators = await admin.client.get("/api/v1/admin/users", params={"role": "operator"})
    # An HTML form sends "" for "any": that is no filter, not an error.
    anything = await admin.client.get("/admin/users", params={"status": "", "role": "", "q": ""})
    bad = await admin.client.get("/api/v1/admin/users", params={"status": "zombie"})

    assert _emails(pending) == ["pending@example.com"]
    assert _emails(operators) == ["op@example.com"]
    assert anything.status_code == 200
    assert bad.status_code == 422
    assert bad.json()["code"] == "validation_failed"


async def test_pages_walk_older_and_back_newer(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT, email="staff@example.com")
    for n in range(5):
        await people.user(email=f"page{n}@example.com", name=f"Paged {n}")
    api = "/api/v1/admin/users"
    query: dict[str, Any] = {"q": "paged", "limit": 2}

    first = (await admin.client.get(api, params=query)).json()
    second = (await admin.client.get(api, params={**query, "before": first["older"]})).json()
    third = (await admin.client.get(api, params={**query, "before": second["older"]})).json()
    back = (await admin.client.get(api, params={**query, "after": second["newer"]})).json()

    def emails(page: dict[str, Any]) -> list[str]:
        return [item["email"] for item in page["items"]]

    assert emails(first) == ["page4@example.com", "page3@example.com"]
    assert first["newer"] is None
    assert first["total"] == 5
    assert emails(second) == ["page2@example.com", "page1@example.com"]
    assert emails(third) == ["page0@example.com"]
    assert third["older"] is None
    assert emails(back) == emails(first)
    assert back["newer"] is None
    # The page links carry the filter along.
    html = await admin.client.get("/admin/users", params=query)
    assert re.search(r'href="/admin/users\?q=paged&amp;limit=2&amp;before=\d+"', html.text)
    both = await admin.client.get(api, params={"before": 5, "after": 1})
    assert both.status_code == 422
    too_many = await admin.client.get(api, params={"limit": 1000})
    assert too_many.status_code == 422


async def test_a_users_page_shows_the_account_sessions_and_history(people: People, db: AsyncSession) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)
    target = await people.sign_in(UserRole.CUSTOMER, name="Tess Target")
    await auth.start_session(db, target.user, ip="192.0.2.7", user_agent="phone", method=AuthMethod.PASSWORD)

    page = await admin.client.get(f"/admin/users/{target.user.id}")

    assert page.status_code == 200
    assert "Tess Target" in page.text
    # The page keeps the shell's own blocks (the sign-out button) and has one actions panel.
    assert page.text.count('id="user-actions"') == 1
    assert ">Sign out</button>" in page.text
    assert 'data-testid="active-sessions">2<' in page.text
    # Her sign-in is an audit event about her; support may read the audit log.
    assert "auth.sign_in" in page.text
    assert 'data-testid="user-events"' in page.text
    # Support can block and approve, but not change roles.
    assert f"/admin/users/{target.user.id}/block" in page.text
    assert f"/admin/users/{target.user.id}/role" not in page.text


async def test_billing_sees_the_account_but_no_history_and_no_actions(people: People) -> None:
    billing = await people.sign_in(UserRole.BILLING)
    target = await people.user(blocked_at=utcnow(), blocked_reason="chargebacks", status="blocked")

    page = await billing.client.get(f"/admin/users/{target.id}")

    assert page.status_code == 200
    assert 'data-testid="blocked-reason">chargebacks<' in page.text
    assert "Recent activity" not in page.text
    assert "You can see this account but not change it." in page.text


async def test_an_unknown_user_is_a_404_page_and_a_404_json(people: People) -> None:
    admin = await people.sign_in(UserRole.SUPPORT)

    page = await admin.client.get("/admin/users/987654321")
    api = await admin.client.get("/api/v1/admin/users/987654321")
    zero = await admin.client.get("/api/v1/admin/users/0")
    huge = await admin.client.get(f"/api/v1/admin/users/{2**70}")

    assert page.status_code == 404
    assert "That user does not exist." in page.text
    assert api.status_code == 404
    assert api.json()["code"] == "user_not_found"
    assert api.json()["message"] == "That user does not exist."
    assert zero.status_code == 422
    assert huge.status_code == 422


class QueryCounter:
    """Counts the statements sent on the test's connection (every request shares it)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1


@pytest.fixture
def queries(engine: AsyncEngine) -> Iterator[QueryCounter]:
    counter = QueryCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(engine.sync_engine, "before_cursor_execute", counter)


async def _count_list_queries(admin_client: httpx.AsyncClient, queries: QueryCounter, path: str) -> int:
    await admin_client.get(path)  # warm up: the session's last_seen write happens at most once a minute
    before = queries.count
    response = await admin_client.get(path)
    assert response.status_code == 200
    return queries.count - before


async def test_the_list_costs_the_same_few_queries_for_3_users_or_60(
    people: People, queries: QueryCounter
) -> None:
    admin = await people.sign_in(UserRole.SUPER_ADMIN)
    for n in range(3):
        await people.user(email=f"few{n}@example.com", status=UserStatus.PENDING_APPROVAL.value)
    few = await _count_list_queries(admin.client, queries, "/admin/users?limit=100")
    api_few = await _count_list_queries(admin.client, queries, "/api/v1/admin/users?limit=100")

    for n in range(57):
        await people.user(email=f"many{n}@example.com", role=UserRole.SUPPORT)
    many = await _count_list_queries(admin.client, queries, "/admin/users?limit=100")
    api_many = await _count_list_queries(admin.client, queries, "/api/v1/admin/users?limit=100")

    assert (await admin.client.get("/api/v1/admin/users?limit=100")).json()["total"] == 61
    assert few == many
    assert api_few == api_many
    # Session lookup, the page, the count, the pending count, and the savepoint around the request.
    assert many <= 8, many
