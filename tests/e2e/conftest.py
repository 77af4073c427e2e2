"""Browser fixtures: the panel served by a real uvicorn, driven by Debian's Chromium.

- ``live_server``: base URL of a panel on a free loopback port (as localhost), on its own fresh database.
- ``browser``: one headless Chromium for the session (``/usr/bin/chromium``; never
  ``playwright install``).
- ``new_page(**context_options)``: opens a page (own context, base URL set) whose console errors,
  page errors, failed or 4xx/5xx requests and CSP violations are collected in ``page_problems``.
  The test fails at teardown if any is left that it did not ``page_problems.allow()``.
- ``browser_page``: a desktop-sized page from ``new_page``.
- ``mail_server``: a live panel with a job worker whose email goes to an SMTP sink (``MailServer``).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
)
from sqlalchemy.engine import URL

from corral.app import create_app
from corral.config import Settings
from tests.support.smtp import SmtpSink

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
STARTUP_DEADLINE_S = 30.0
SHUTDOWN_DEADLINE_S = 15.0

# Runs in every document before its own scripts, outside the page's CSP, so the CSP cannot
# block the reporter it is meant to observe.
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__corralReportCsp(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
      `at ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""


class _ServerThread(threading.Thread):
    """uvicorn on its own event loop, so the tests' loop stays free for Playwright."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        super().__init__(name="live-server", daemon=True)
        self.server = server
        self.sock = sock
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as error:
            self.error = error


def _wait_until_healthy(url: str, thread: _ServerThread) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    last: str = "no answer yet"
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                raise RuntimeError(f"live server exited during start-up: {thread.error!r}")
            try:
                response = http.get(f"{url}/health")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as error:
                last = repr(error)
            # Polling interval, not a guess at readiness: the loop ends on /health or the deadline.
            time.sleep(0.05)
    raise TimeoutError(f"live server not healthy after {STARTUP_DEADLINE_S}s ({last})")


@contextmanager
def serving(
    settings: Settings,
    database_url: URL,
    *,
    run_worker: bool = False,
    hooks: Sequence[Callable[[FastAPI], None]] = (),
) -> Iterator[str]:
    """Serve a panel on a free loopback port until the block ends; yields its base URL.

    ``hooks`` change the app before it starts (e.g. include a router app.py does not have yet).
    """
    # Bound here and handed to uvicorn, so no other process can take the port in between.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # "localhost", not the IP: passkeys need a domain for their relying party id, and browsers
    # treat http://localhost as a secure context.
    url = f"http://localhost:{sock.getsockname()[1]}"
    # Links and Origin checks use the public URL, which for this server is its own address.
    served = settings.model_copy(update={"web": settings.web.model_copy(update={"public_url": url})})
    app = create_app(served, database_url=database_url, run_worker=run_worker)
    for hook in hooks:
        hook(app)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = _ServerThread(server, sock)
    thread.start()
    try:
        _wait_until_healthy(url, thread)
        yield url
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_DEADLINE_S)
        sock.close()
        assert not thread.is_alive(), "live server did not stop"
        if thread.error is not None:
            raise thread.error


@pytest.fixture
def live_database(fresh_database: Callable[[], URL]) -> URL:
    """The database the live server serves; tests seed users and data straight into it."""
    return fresh_database()


@pytest.fixture
def live_server(settings: Settings, live_database: URL) -> Iterator[str]:
    """Base URL (``http://localhost:<port>``) of a panel serving its own fresh database."""
    with serving(settings, live_database) as url:
        yield url


@dataclass(frozen=True)
class MailServer:
    """A live panel that runs a job worker and sends its email to ``sink``."""

    url: str
    sink: SmtpSink
    database_url: URL


@pytest.fixture
def panel_app_hooks() -> list[Callable[[FastAPI], None]]:
    """Changes made to ``mail_server``'s app before it starts; a test module may override this."""
    return []


@pytest.fixture
def mail_server(
    settings: Settings,
    fresh_database: Callable[[], URL],
    panel_app_hooks: list[Callable[[FastAPI], None]],
) -> Iterator[MailServer]:
    """A panel on its own fresh database with an in-process job worker and SMTP pointed at a sink.

    A module whose pages need it can serve it as its ``live_server``::

        @pytest.fixture
        def live_server(mail_server: MailServer) -> str:
            return mail_server.url
    """
    sink = SmtpSink().start()
    database_url = fresh_database()
    try:
        with serving(sink.settings(settings), database_url, run_worker=True, hooks=panel_app_hooks) as url:
            yield MailServer(url=url, sink=sink, database_url=database_url)
    finally:
        sink.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class PageProblems:
    """Everything that went wrong in the test's pages, as readable lines."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def add(self, kind: str, text: str) -> None:
        self.problems.append(f"{kind}: {text}")

    def allow(self, pattern: str) -> None:
        """Expect problems matching ``pattern`` (a regex searched in ``"<kind>: <text>"``)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [line for line in self.problems if not any(p.search(line) for p in self.allowed)]

    def assert_clean(self) -> None:
        left = self.unexpected()
        assert not left, "browser problems:\n" + "\n".join(left)

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.add("console", f"{message.text} ({message.location.get('url', '')})")

        def on_page_error(error: Exception) -> None:
            self.add("pageerror", str(error))

        def on_failed(request: Request) -> None:
            # A subresource still loading when the page navigates away (a redirect after a form
            # post) is cancelled by the browser: that is not a broken page. Every other failure is.
            if request.failure == "net::ERR_ABORTED" and request.resource_type != "document":
                return
            self.add("requestfailed", f"{request.method} {request.url} ({request.failure})")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                self.add("http", f"{response.status} {response.request.method} {response.url}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("requestfailed", on_failed)
        page.on("response", on_response)


class NewPage(Protocol):
    def __call__(self, **context_options: Any) -> Awaitable[Page]: ...


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
async def new_page(browser: Browser, live_server: str, page_problems: PageProblems) -> AsyncIterator[NewPage]:
    contexts: list[BrowserContext] = []

    async def make(**context_options: Any) -> Page:
        # Dark is the panel's primary look; a test may ask for "light".
        options: dict[str, Any] = {
            "viewport": DESKTOP,
            "base_url": live_server,
            "color_scheme": "dark",
            **context_options,
        }
        context = await browser.new_context(**options)
        contexts.append(context)
        await context.expose_function("__corralReportCsp", lambda text: page_problems.add("csp", str(text)))
        await context.add_init_script(_CSP_LISTENER)
        page = await context.new_page()
        page_problems.watch(page)
        return page

    yield make
    for context in contexts:
        await context.close()
    page_problems.assert_clean()


@pytest.fixture
async def browser_page(new_page: NewPage) -> Page:
    """A desktop-sized page on the live server; navigate with relative URLs (``/``)."""
    return await new_page()


def artifact_path(name: str) -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR / name
