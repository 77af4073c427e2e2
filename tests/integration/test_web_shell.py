"""The HTML shell: page and fragment rendering, escaping, toasts, error shapes, static assets."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from corral.kit.clock import utcnow
from corral.kit.errors import Conflict, NotFound
from corral.web.rendering import STATIC_DIR, Toast, render, templates, toast

HTMX = {"HX-Request": "true"}
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class _Assets(HTMLParser):
    """Collects what a page loads and anything the CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
            if name in ("src", "href") and value and tag in ("script", "link", "img", "source", "iframe"):
                self.urls.append(value)
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if not values.get("src"):
                self.inline.append("<script> without src")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script body")


def _assets(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    return parser


@pytest.fixture
def shell_app(app: FastAPI) -> FastAPI:
    """The test's own app instance with routes that exist only for these tests."""

    async def boom() -> None:
        raise RuntimeError("db password is hunter2")

    async def hostile_not_found() -> None:
        raise NotFound(HOSTILE)

    async def conflict() -> None:
        raise Conflict("The server is already stopping.", details={"server_id": 7})

    async def typed(count: int) -> dict[str, int]:
        return {"count": count}

    async def with_toasts(request: Request) -> HTMLResponse:
        return render(request, "pages/home.html", {"now": utcnow(), "toasts": [Toast(HOSTILE, "warning")]})

    app.add_api_route("/test/boom", boom)
    app.add_api_route("/api/test/boom", boom)
    app.add_api_route("/test/hostile", hostile_not_found)
    app.add_api_route("/test/conflict", conflict)
    app.add_api_route("/api/test/conflict", conflict)
    app.add_api_route("/api/test/typed", typed)
    app.add_api_route("/test/toasts", with_toasts)
    return app


# ---------- Rendering ----------


async def test_start_page_is_a_full_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    body = response.text
    assert body.startswith("<!doctype html>")
    assert "Your server, <span" in body
    assert 'class="glass status-card"' in body
    assert "v0.1.0" in body
    assert '<meta name="htmx-config" content=\'{"allowEval":false,"includeIndicatorStyles":false' in body
    assert re.search(r'<meta name="csrf-token" content="[0-9a-f]{64}">', body)
    assert response.headers["vary"] == "HX-Request"


async def test_htmx_request_gets_only_the_block(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers=HTMX)

    assert response.status_code == 200
    body = response.text.strip()
    assert body.startswith('<aside class="glass status-card"')
    assert body.endswith("</aside>")
    for page_only in ("<html", "<title>", "hero__title"):
        assert page_only not in body


async def test_boosted_navigation_gets_the_whole_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={**HTMX, "HX-Boosted": "true"})

    assert response.text.startswith("<!doctype html>")


def test_autoescaping_is_on_for_html_templates() -> None:
    autoescape = templates.env.autoescape
    assert callable(autoescape)
    assert autoescape("pages/home.html") is True
    assert autoescape(None) is True  # templates built from strings


async def test_user_text_is_escaped_in_pages_and_toasts(
    shell_app: FastAPI, client: httpx.AsyncClient
) -> None:
    for path in ("/test/hostile", "/test/toasts"):
        body = (await client.get(path)).text
        assert HOSTILE not in body
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body
        assert _assets(body).inline == []


async def test_server_rendered_toasts_use_the_toast_markup(
    shell_app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = (await client.get("/test/toasts")).text

    assert '<div class="toast toast--warning" role="status" data-toast data-level="warning">' in body
    assert body.count("data-toast-close") == 2  # the toast, and the template corral.js clones


async def test_csrf_meta_tag_appears_only_with_a_token(shell_app: FastAPI, client: httpx.AsyncClient) -> None:
    # A route outside the access layer (added by this test) has no CSRF context, so no meta tag;
    # every real route declares its access and gets one.
    assert 'name="csrf-token"' not in (await client.get("/test/toasts")).text
    assert 'name="csrf-token"' in (await client.get("/")).text


# ---------- Toast header ----------


def _triggers(response: Response | httpx.Response) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.headers["HX-Trigger"])
    return parsed


def test_toast_sets_the_trigger_header() -> None:
    response = toast(Response(), "Server started")

    assert _triggers(response) == {"corral:toast": [{"message": "Server started", "level": "success"}]}


def test_toast_merges_with_earlier_toasts_and_other_events() -> None:
    response = Response(headers={"HX-Trigger": json.dumps({"servers:refresh": {"id": 3}})})

    toast(response, "Rebooting", "info")
    toast(response, "Disk almost full", "warning")

    assert _triggers(response) == {
        "servers:refresh": {"id": 3},
        "corral:toast": [
            {"message": "Rebooting", "level": "info"},
            {"message": "Disk almost full", "level": "warning"},
        ],
    }


def test_toast_keeps_plain_event_names() -> None:
    response = Response(headers={"HX-Trigger": "refresh-list, close-dialog"})

    toast(response, "Saved")

    triggers = _triggers(response)
    assert triggers["refresh-list"] is None
    assert triggers["close-dialog"] is None
    assert triggers["corral:toast"] == [{"message": "Saved", "level": "success"}]


def test_toast_wraps_a_single_earlier_toast_object() -> None:
    response = Response(headers={"HX-Trigger": '{"corral:toast": {"message": "A", "level": "info"}}'})

    toast(response, "B", "error")

    assert _triggers(response)["corral:toast"] == [
        {"message": "A", "level": "info"},
        {"message": "B", "level": "error"},
    ]


def test_toast_header_stays_ascii_and_rejects_unknown_levels() -> None:
    response = toast(Response(), "Server „Köln“ gestartet ✓")

    assert response.headers["HX-Trigger"].isascii()
    assert _triggers(response)["corral:toast"][0]["message"] == "Server „Köln“ gestartet ✓"
    with pytest.raises(ValueError, match="toast level"):
        toast(Response(), "x", "loud")  # type: ignore[arg-type]


# ---------- Errors ----------


async def test_unknown_page_is_an_html_404_with_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-page")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text
    assert f'<code class="mono" data-request-id>{response.headers["x-request-id"]}</code>' in response.text


async def test_unknown_api_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": "Nothing exists at this address. It may have moved, or the address may be mistyped.",
        "request_id": response.headers["x-request-id"],
    }


async def test_htmx_error_becomes_a_toast_and_swaps_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-page", headers=HTMX)

    assert response.status_code == 404
    assert response.headers["hx-reswap"] == "none"
    assert response.content == b""
    [item] = _triggers(response)["corral:toast"]
    assert item["level"] == "error"
    assert "Nothing exists at this address" in item["message"]


async def test_wrong_method_keeps_the_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.post("/")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert "Error 405" in response.text


async def test_panel_error_in_each_shape(shell_app: FastAPI, client: httpx.AsyncClient) -> None:
    api = await client.get("/api/test/conflict")
    page = await client.get("/test/conflict")
    htmx = await client.get("/test/conflict", headers=HTMX)

    assert api.status_code == page.status_code == htmx.status_code == 409
    assert api.json() == {
        "code": "conflict",
        "message": "The server is already stopping.",
        "request_id": api.headers["x-request-id"],
        "details": {"server_id": 7},
    }
    assert "The server is already stopping." in page.text
    assert "Error 409" in page.text
    assert _triggers(htmx)["corral:toast"] == [
        {"message": "The server is already stopping.", "level": "error"}
    ]


async def test_validation_error_lists_the_fields(shell_app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.get("/api/test/typed", params={"count": "many"})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["request_id"] == response.headers["x-request-id"]
    [field] = body["errors"]
    assert field["field"] == "count"
    assert field["location"] == "query"
    assert field["type"] == "int_parsing"


async def test_crash_shows_a_500_page_without_the_traceback(
    shell_app: FastAPI, client: httpx.AsyncClient
) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/test/boom")

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    body = response.text
    assert "Something broke on our side" in body
    assert request_id in body
    for leak in ("Traceback", "RuntimeError", "hunter2"):
        assert leak not in body
    # Answered inside the middleware stack, so the security headers are there too.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    [entry] = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert entry["log_level"] == "error"
    assert entry["path"] == "/test/boom"
    assert entry["exc_info"] is True


async def test_crash_under_api_and_htmx(shell_app: FastAPI, client: httpx.AsyncClient) -> None:
    api = await client.get("/api/test/boom")
    htmx = await client.get("/test/boom", headers=HTMX)

    assert api.status_code == 500
    assert api.json() == {
        "code": "internal_error",
        "message": api.json()["message"],
        "request_id": api.headers["x-request-id"],
    }
    assert "hunter2" not in api.text
    assert htmx.status_code == 500
    [item] = _triggers(htmx)["corral:toast"]
    assert item["message"].endswith(f"Reference: {htmx.headers['x-request-id']}")


# ---------- Static assets ----------


async def test_assets_are_linked_with_a_content_hash_and_served(client: httpx.AsyncClient) -> None:
    urls = _assets((await client.get("/")).text).urls

    css = next(url for url in urls if url.startswith("/static/css/corral.css"))
    digest = hashlib.sha256((STATIC_DIR / "css" / "corral.css").read_bytes()).hexdigest()[:12]
    assert css == f"/static/css/corral.css?v={digest}"
    for url in urls:
        assert "?v=" in url, url
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable", url
    unversioned = await client.get("/static/css/corral.css")
    assert unversioned.headers["cache-control"] == "no-cache"
    assert any(url.startswith("/static/vendor/htmx/htmx.min.js?v=") for url in urls)
    assert any(url.startswith("/static/vendor/alpine-csp/alpine-csp.min.js?v=") for url in urls)
    assert any(url.startswith("/static/js/corral.js?v=") for url in urls)


async def test_pages_load_only_local_assets_and_nothing_inline(
    shell_app: FastAPI, client: httpx.AsyncClient
) -> None:
    for path in ("/", "/no-such-page", "/test/boom", "/test/conflict", "/test/toasts"):
        page = _assets((await client.get(path)).text)
        assert page.urls, path
        for url in page.urls:
            assert url.startswith("/"), f"{path} loads {url}"
            assert not url.startswith("//"), f"{path} loads {url}"
        assert page.inline == [], f"{path}: {page.inline}"
