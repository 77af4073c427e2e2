"""An operator adds a node in a real browser under the real CSP: "Test connection" (htmx) fills in
the capacity, a failing test shows the driver's message, saving lands on the node's page.
Screenshots of the fleet pages go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import ViewportSize, expect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from corral.config import Settings
from corral.models.users import UserRole
from tests.e2e.conftest import NewPage, PageProblems, artifact_path
from tests.factories.fleet import create_location, create_server
from tests.factories.nodes import (
    TEST_POOL,
    create_node,
    create_template,
    host_key,
    put_template_on,
)
from tests.factories.users import create_user
from tests.support.browser_passkeys import staff_sign_in

pytestmark = pytest.mark.browser

OPERATOR = "otto@example.com"


@pytest.fixture
async def seeded(live_server: str, live_database: URL, settings: Settings) -> AsyncIterator[None]:
    engine = create_async_engine(live_database)
    try:
        async with AsyncSession(engine, expire_on_commit=False, info={"settings": settings}) as session:
            await create_user(session, email=OPERATOR, name="Otto Ops", role=UserRole.OPERATOR.value)
            sydney = await create_location(session, slug="syd1", name="Sydney 1", country_code="AU")
            frankfurt = await create_location(session, slug="fra1", name="Frankfurt 1", country_code="DE")
            busy = await create_node(
                session, location=sydney, name="syd1-hv01", cpu_total=32, cpu_oversell=4.0
            )
            for vcpus in (2, 4, 8):
                await create_server(
                    session, location=sydney, node_id=busy.id, vcpus=vcpus, memory_mib=vcpus * 1024
                )
            await create_node(
                session,
                location=sydney,
                name="syd1-hv02",
                status="unhealthy",
                last_error="authentication failed: permission denied",
            )
            await create_node(session, location=frankfurt, name="fra1-hv01", status="maintenance")
            debian = await create_template(session, slug="debian-12", name="Debian 12 (Bookworm)")
            ubuntu = await create_template(
                session, slug="ubuntu-24.04", name="Ubuntu 24.04 LTS", os_family="ubuntu", os_version="24.04"
            )
            await put_template_on(session, busy, debian, present=True)
            await put_template_on(session, busy, ubuntu, present=False)
            await session.commit()
        yield
    finally:
        await engine.dispose()


async def test_an_operator_adds_a_node_after_testing_the_connection(
    seeded: None,
    new_page: NewPage,
    page_problems: PageProblems,
    settings: Settings,
    live_database: URL,
    live_server: str,
) -> None:
    page = await new_page()
    # Operators act only from a passkey session (a password session has customer access).
    await staff_sign_in(page, settings, live_database, live_server, OPERATOR)

    await page.goto("/admin/nodes", wait_until="networkidle")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Nodes")
    await expect(page.get_by_test_id("node-row")).to_have_count(3)
    await expect(page.locator('[data-node="syd1-hv01"] .badge--running')).to_be_visible()
    await page.screenshot(path=artifact_path("nodes-list.png"), full_page=True)

    # SSH nodes log in with a key the panel makes: make one, then choose it on the node.
    await page.goto("/admin/node-keys", wait_until="networkidle")
    await page.get_by_label("Name").fill("syd1-nodes")
    await page.get_by_role("button", name="Make an Ed25519 key").click()
    await expect(page.locator("#toasts .toast--success")).to_contain_text("Key made.")
    await expect(page.get_by_test_id("node-key-row")).to_have_count(1)
    public_key = await page.get_by_label("Public key of syd1-nodes").input_value()
    assert public_key.startswith("ssh-ed25519 ")
    assert "PRIVATE" not in await page.content()
    await page.screenshot(path=artifact_path("node-keys.png"), full_page=True)
    await page.set_viewport_size(ViewportSize(width=390, height=844))
    await page.screenshot(path=artifact_path("node-keys-phone.png"), full_page=True)
    await page.set_viewport_size(ViewportSize(width=1280, height=800))

    await page.goto("/admin/nodes", wait_until="networkidle")
    await page.get_by_test_id("add-node").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Add a node")
    await page.get_by_label("Name", exact=True).fill("syd1-hv03")
    await page.get_by_label("Location").select_option(label="Sydney 1")
    await page.get_by_label("Transport", exact=True).select_option("ssh")
    await page.get_by_label("Host", exact=True).fill("127.0.0.1")
    await page.get_by_label("Port", exact=True).fill("1")  # nothing listens: refused at once
    await page.get_by_label("SSH login", exact=True).fill("nobody")
    await page.get_by_label("SSH key", exact=True).select_option(
        index=1
    )  # the only key, after "Choose a key"
    await page.get_by_label("Node's host key", exact=True).fill(host_key())
    await page.get_by_label("Storage pool").fill(TEST_POOL)
    await page.get_by_label("Password").fill("node-password")
    await page.get_by_test_id("test-connection").click()
    result = page.get_by_test_id("connection-test")
    await expect(result).to_have_attribute("data-ok", "false")
    await expect(result).to_contain_text("Connection refused")
    await page.screenshot(path=artifact_path("nodes-form-test-failed.png"), full_page=True)

    # The ssh fields stay filled in: the test transport simply does not use them.
    await page.get_by_label("Transport", exact=True).select_option("test")
    await page.get_by_test_id("test-connection").click()
    await expect(result).to_have_attribute("data-ok", "true")
    await expect(result).to_contain_text("16")
    # The empty capacity fields now hold what the node reported.
    await expect(page.get_by_label("CPU threads")).to_have_value("16")
    await expect(page.get_by_label("Memory (MiB)")).to_have_value("3072")
    await expect(page.get_by_label("Disk (GiB)")).to_have_value("100")
    await page.get_by_label("CPU oversell").fill("3")
    await page.screenshot(path=artifact_path("nodes-form-tested.png"), full_page=True)
    await page.set_viewport_size(ViewportSize(width=390, height=844))
    await page.screenshot(path=artifact_path("nodes-form-phone.png"), full_page=True)
    await page.set_viewport_size(ViewportSize(width=1280, height=800))

    await page.get_by_role("button", name="Add node").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("syd1-hv03")
    await expect(page.get_by_test_id("node-status")).to_have_text("Online")
    await expect(page.get_by_test_id("credentials-state")).to_have_text("set")
    await expect(page.locator("#toasts .toast--success")).to_contain_text("Node added.")
    assert "node-password" not in await page.content()
    await page.screenshot(path=artifact_path("nodes-detail.png"), full_page=True)

    await page.goto("/admin/nodes", wait_until="networkidle")
    await page.get_by_role("link", name=re.compile("syd1-hv01")).click()
    await expect(page.get_by_test_id("node-template-row")).to_have_count(2)
    await page.screenshot(path=artifact_path("nodes-detail-templates.png"), full_page=True)

    await page.goto("/admin/os-templates", wait_until="networkidle")
    await expect(page.get_by_test_id("template-row")).to_have_count(2)
    await page.screenshot(path=artifact_path("os-templates-list.png"), full_page=True)
    await page.goto("/admin/locations", wait_until="networkidle")
    await expect(page.get_by_test_id("location-row")).to_have_count(2)
    await page.screenshot(path=artifact_path("locations-list.png"), full_page=True)
    page_problems.assert_clean()
