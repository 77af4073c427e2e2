"""The start page in a real browser, under the real CSP: nothing blocked, nothing missing."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import PHONE, NewPage, PageProblems, artifact_path

pytestmark = pytest.mark.browser


async def _load_start_page(page: Page) -> None:
    response = await page.goto("/", wait_until="networkidle")
    assert response is not None
    assert response.status == 200
    # The scripts are deferred: wait until all three ran, rather than for a fixed time.
    await page.wait_for_function("() => window.htmx && window.Alpine && window.Corral")


async def test_start_page_loads_cleanly_under_the_csp(
    browser_page: Page, page_problems: PageProblems
) -> None:
    await _load_start_page(browser_page)

    await expect(browser_page).to_have_title("Your server, up in a minute · Corral")
    await expect(browser_page.get_by_role("heading", level=1)).to_contain_text("Your server, up in a minute")
    await expect(browser_page.locator(".status-card")).to_contain_text("v0.1.0")

    libraries = await browser_page.evaluate(
        """() => ({
            htmx: typeof window.htmx.ajax,
            allowEval: window.htmx.config.allowEval,
            selfRequestsOnly: window.htmx.config.selfRequestsOnly,
            alpine: window.Alpine.version,
        })"""
    )
    assert libraries["htmx"] == "function"
    assert libraries["allowEval"] is False
    assert libraries["selfRequestsOnly"] is True
    assert str(libraries["alpine"]).startswith("3.")

    # The stylesheet applied (a missing or blocked one leaves the browser's default white page).
    background = await browser_page.evaluate("() => getComputedStyle(document.body).backgroundImage")
    assert "radial-gradient" in background

    page_problems.assert_clean()
    await browser_page.screenshot(path=artifact_path("start-page.png"), full_page=True)
    await browser_page.emulate_media(color_scheme="light")
    await browser_page.screenshot(path=artifact_path("start-page-light.png"), full_page=True)


async def test_start_page_on_a_phone(new_page: NewPage, page_problems: PageProblems) -> None:
    page = await new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    await _load_start_page(page)

    # Nothing may stick out sideways at phone width.
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await expect(page.locator(".status-card")).to_be_visible()

    page_problems.assert_clean()
    await page.screenshot(path=artifact_path("start-page-phone.png"), full_page=True)


async def test_error_from_htmx_request_shows_a_toast(browser_page: Page, page_problems: PageProblems) -> None:
    await _load_start_page(browser_page)
    # The 404 is the point of this test, and htmx reports every error response on the console.
    page_problems.allow(r"^http: 404 GET .*/no-such-page$")
    page_problems.allow(r"^console: .*(htmx:responseError|404)")

    await browser_page.evaluate("() => htmx.ajax('GET', '/no-such-page', {target: 'body', swap: 'none'})")

    toast = browser_page.locator("#toasts .toast--error")
    await expect(toast).to_contain_text("Nothing exists at this address")
    await expect(toast).to_have_attribute("role", "alert")
    await toast.get_by_role("button", name="Dismiss notification").click()
    await expect(toast).to_have_count(0)
    # The page behind the toast was left alone (HX-Reswap: none).
    await expect(browser_page.get_by_role("heading", level=1)).to_be_visible()


async def test_unknown_page_shows_the_error_page(browser_page: Page, page_problems: PageProblems) -> None:
    page_problems.allow(r"^http: 404 GET .*/no-such-page$")
    page_problems.allow(r"^console: Failed to load resource: .* 404")

    response = await browser_page.goto("/no-such-page", wait_until="networkidle")

    assert response is not None
    assert response.status == 404
    await expect(browser_page.get_by_role("heading", level=1)).to_have_text("Page not found")
    await expect(browser_page.locator("[data-request-id]")).to_have_text(response.headers["x-request-id"])
    await expect(browser_page.get_by_role("link", name="Go to the start page")).to_have_attribute("href", "/")
    page_problems.assert_clean()
    await browser_page.screenshot(path=artifact_path("error-404.png"), full_page=True)
