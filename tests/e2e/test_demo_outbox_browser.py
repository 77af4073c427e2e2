"""`make demo` as a newcomer meets it: sign up, read the verification email in the demo outbox,
follow its link and sign in. The demo runs as `corral demo` in a subprocess, on its own data folder
and port, with no mail configuration at all."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, ViewportSize, expect

from corral.db import embedded
from tests.e2e.conftest import DESKTOP, PHONE, NewPage, PageProblems, artifact_path
from tests.support.processes import CORRAL, answers, clean_env, free_port, wait_until

pytestmark = pytest.mark.browser

PASSWORD = "violet anchor drifts north"
MAIL_WAIT_S = 30.0


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`corral demo` on a free port as `make demo` runs it; yields its URL and what it printed."""
    data_dir = tmp_path / "demo"
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*CORRAL, "demo", "--host", "127.0.0.1", "--port", str(port)],
            env=clean_env(CORRAL_DATA_DIR=str(data_dir), CORRAL_LOG__LEVEL="WARNING", PYTHONUNBUFFERED="1"),
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_until(
            lambda: process.poll() is None and answers(f"http://127.0.0.1:{port}/health"),
            deadline_s=120,
            what="corral demo to answer /health",
        )
        yield f"http://localhost:{port}", log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        embedded.stop(data_dir)
    assert process.returncode == 0, log.read_text()


@pytest.fixture
def live_server(demo: tuple[str, str]) -> str:
    return demo[0]


@pytest.fixture(autouse=True)
def _favicon_fetch_may_be_cut_short(page_problems: PageProblems) -> None:
    # Chromium fetches the favicon after the load event; these pages are left at once.
    page_problems.allow(r"^requestfailed: GET .*/static/img/corral\.svg\?v=\w+ \(net::ERR_ABORTED\)$")


async def shot(page: Page, name: str) -> None:
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.screenshot(path=artifact_path(name), full_page=True)


async def wait_for_messages(page: Page, count: int) -> None:
    """Reload the outbox, as a person presses Refresh, until the worker has sent ``count`` messages;
    the loop ends on the condition or the deadline."""
    deadline = time.monotonic() + MAIL_WAIT_S
    while await page.get_by_test_id("outbox-message").count() < count:
        assert time.monotonic() < deadline, f"fewer than {count} email(s) in the outbox after {MAIL_WAIT_S}s"
        await page.reload()


async def test_a_newcomer_signs_up_reads_the_email_in_the_outbox_and_signs_in(
    new_page: NewPage, demo: tuple[str, str]
) -> None:
    url, printed = demo
    assert f"mail: {url}/demo/outbox" in printed

    page = await new_page()
    await page.goto("/")
    await page.get_by_role("link", name="Create account").first.click()
    await page.get_by_label("Name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    await shot(page, "demo-check-email.png")

    await page.get_by_test_id("demo-outbox-hint").get_by_role("link", name="demo outbox").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Outbox")
    await wait_for_messages(page, 1)
    await expect(page.get_by_test_id("outbox-message").first).to_contain_text("ada@example.com")
    await shot(page, "demo-outbox-1280.png")
    await page.set_viewport_size(ViewportSize(width=PHONE["width"], height=PHONE["height"]))
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the outbox scrolls sideways at 390 px"
    await shot(page, "demo-outbox-390.png")

    await page.get_by_test_id("outbox-message").filter(has_text="ada@example.com").first.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your email address for Corral")
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the message scrolls sideways at 390 px"
    await shot(page, "demo-outbox-message-390.png")
    await page.set_viewport_size(ViewportSize(width=DESKTOP["width"], height=DESKTOP["height"]))
    await shot(page, "demo-outbox-message-1280.png")

    link = page.get_by_test_id("message-text").get_by_role("link", name=re.compile(r"verify\?token="))
    await expect(link).to_have_attribute("href", re.compile(rf"^{re.escape(url)}/verify\?token=[\w-]+$"))
    await link.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your email is confirmed")
    await page.get_by_role("link", name="Sign in").last.click()

    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(f"{url}/dashboard")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada Lovelace")
    # The welcome email followed the verification.
    await page.goto("/demo/outbox")
    await wait_for_messages(page, 2)
    await expect(page.get_by_test_id("outbox-message").first).to_contain_text("Welcome")
