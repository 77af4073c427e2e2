"""Template rendering: whole pages, or one block of a page for HTMX, plus toasts and static URLs.

Every HTML view goes through :func:`render`. A view names the block an HTMX request swaps, and the
same template serves both the full page and the fragment, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2_fragments.fastapi import Jinja2Blocks
from starlette.responses import Response

from corral import __version__
from corral.kit.logging import get_logger
from corral.web.redirects import safe_redirect

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_PREFIX = "/static/"
APP_NAME = "Corral"
TOAST_EVENT = "corral:toast"

ToastLevel = Literal["success", "info", "warning", "error"]
TOAST_LEVELS: frozenset[str] = frozenset(get_args(ToastLevel))

ResponseT = TypeVar("ResponseT", bound=Response)

log = get_logger("corral.web")


@dataclass(frozen=True)
class Toast:
    message: str
    level: ToastLevel = "success"

    def __post_init__(self) -> None:
        if self.level not in TOAST_LEVELS:
            raise ValueError(f"toast level must be one of {sorted(TOAST_LEVELS)}, not {self.level!r}")


@cache
def _content_hash(path: str) -> str | None:
    """First 12 hex digits of the file's SHA-256, or None when it does not exist.

    Cached for the life of the process: assets change only with a deploy, which restarts it.
    """
    root = STATIC_DIR.resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        return None
    return hashlib.sha256(file.read_bytes()).hexdigest()[:12]


def static_url(path: str) -> str:
    """``/static/<path>?v=<content hash>``, so browsers may cache assets until their content changes."""
    path = path.lstrip("/")
    digest = _content_hash(path)
    if digest is None:
        # Rendering goes on (the browser test then fails on the 404) rather than turning every page
        # into a 500 because one asset, e.g. an unbuilt vendor file, is missing.
        log.warning("static_file_missing", path=path)
        return f"{STATIC_PREFIX}{path}"
    return f"{STATIC_PREFIX}{path}?v={digest}"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        # Escaping is on for markup and for templates built from strings; a value is only ever
        # inserted raw through an explicit, reviewable `|safe` or Markup().
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "svg"), default_for_string=True
        ),
        trim_blocks=True,
        lstrip_blocks=True,
    )


templates = Jinja2Blocks(env=_environment())
templates.env.globals.update(static_url=static_url, app_name=APP_NAME, version=__version__)
# The shared macros as a global, `{{ ui.badge("running") }}`, rather than `{% from ... import %}`:
# a block rendered alone for HTMX does not run the imports at the top of its template.
templates.env.globals["ui"] = templates.env.get_template("macros/ui.html").module


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def wants_fragment(request: Request) -> bool:
    """An HTMX request that swaps part of the page; a boosted link or form wants the whole page."""
    return is_htmx(request) and request.headers.get("HX-Boosted") != "true"


def _csrf_token(request: Request) -> str | None:
    # Set by the access check every route declares (corral.auth.deps); pages rendered outside a
    # route (error pages for unknown URLs) have none and show no forms.
    csrf = getattr(request.state, "csrf", None)
    token = csrf.token() if csrf is not None else None
    return token if isinstance(token, str) and token else None


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    block: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render template ``name``: the whole page, or only ``block`` for an HTMX partial request.

    A full page also shows ``context["toasts"]`` (a list of :class:`Toast`), for messages that
    must survive without JavaScript or across a redirect.
    """
    values: dict[str, Any] = {
        "request": request,
        "csrf_token": _csrf_token(request),
        "principal": getattr(request.state, "principal", None),
        "toasts": [],
    }
    values.update(context or {})
    fragment = block if block is not None and wants_fragment(request) else None
    response = cast(
        HTMLResponse,
        templates.TemplateResponse(
            request, name, values, status_code=status_code, headers=headers, block_name=fragment
        ),
    )
    if block is not None:
        # The same URL answers with a page or a fragment; caches must keep them apart.
        response.headers.append("Vary", "HX-Request")
    return response


def _parse_trigger(value: str) -> dict[str, Any]:
    """An existing HX-Trigger value as {event: detail}; it may be JSON or comma-separated names."""
    value = value.strip()
    if not value:
        return {}
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"HX-Trigger header is not valid JSON: {value[:80]!r}") from error
        if not isinstance(parsed, dict):
            raise ValueError("HX-Trigger JSON must be an object")
        return parsed
    # A bare name carries no detail; htmx hands JSON null to listeners as {value: null}, the same.
    return {event.strip(): None for event in value.split(",") if event.strip()}


def toast(response: ResponseT, message: str, level: ToastLevel = "success") -> ResponseT:
    """Ask the page to show a toast, through the ``corral:toast`` event in ``HX-Trigger``.

    Merges with events the response already triggers, and with toasts added before. Only htmx
    reads the header: for a full page (or after a redirect) pass ``toasts=[Toast(...)]`` to
    :func:`render` instead.
    """
    item = asdict(Toast(message, level))
    triggers = _parse_trigger(response.headers.get("HX-Trigger", ""))
    existing = triggers.get(TOAST_EVENT)
    if existing is None:
        queued: list[Any] = []
    elif isinstance(existing, list):
        queued = existing
    else:
        queued = [existing]
    triggers[TOAST_EVENT] = [*queued, item]
    # ensure_ascii keeps the header Latin-1 safe whatever language the message is in.
    response.headers["HX-Trigger"] = json.dumps(triggers, ensure_ascii=True, separators=(",", ":"))
    return response


def redirect(request: Request, url: str) -> Response:
    """After a change: htmx follows ``HX-Redirect`` (a plain 303 would be swapped into the page);
    a normal form post gets a 303 so a reload does not post again. The target always passes the
    panel's one redirect check, so no caller can send a browser off-site by mistake."""
    url = safe_redirect(url)
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
