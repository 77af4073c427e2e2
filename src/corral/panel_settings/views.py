"""The admin settings page: one form for every panel-wide setting.

The form posts normally (no script needed); an invalid value comes back with what was typed and
the problem next to the field (422). After a save the browser is redirected with ``done=saved``,
which the page turns into a toast.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.panel_settings.schemas import (
    MAX_SERVER_LIMIT,
    MAX_UNFINISHED_DAYS,
    MIN_SERVER_LIMIT,
    MIN_UNFINISHED_DAYS,
    PanelSettingsUpdate,
)
from corral.panel_settings.service import panel_settings
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.forms import Done, done_toasts, field_errors
from corral.web.rendering import Toast, render

router = APIRouter(prefix="/admin/settings", include_in_schema=False)

HERE = "/admin/settings"
PAGE = "panel_settings/edit.html"
Manager = Annotated[Principal, require(Permission.SETTINGS_MANAGE)]
FormText = Annotated[str, Form(max_length=100)]

DONE: dict[str, str] = {"saved": "Settings saved."}
HINTS: dict[str, str] = {
    "customer_server_limit": f"Give a whole number from {MIN_SERVER_LIMIT} to {MAX_SERVER_LIMIT}.",
    "unfinished_order_days": f"Give a number of days from {MIN_UNFINISHED_DAYS} to {MAX_UNFINISHED_DAYS}.",
}


async def _page(
    request: Request,
    session: DbSession,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[Toast] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    if form is None:
        form = (await panel_settings.current(session)).model_dump()
    context = {
        "form": form,
        "errors": errors or {},
        "toasts": toasts or [],
        "limits": (MIN_SERVER_LIMIT, MAX_SERVER_LIMIT),
        "unfinished_limits": (MIN_UNFINISHED_DAYS, MAX_UNFINISHED_DAYS),
    }
    return render(request, PAGE, context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
async def settings_page(
    request: Request, session: DbSession, principal: Manager, done: Done = None
) -> HTMLResponse:
    return await _page(request, session, toasts=done_toasts(done, DONE))


@router.post("", response_class=HTMLResponse)
async def save_settings(
    request: Request,
    session: DbSession,
    principal: Manager,
    require_customer_2fa: FormText = "",
    customer_server_limit: FormText = "",
    unfinished_order_days: FormText = "",
) -> Response:
    # An unticked checkbox is simply absent from the post: that means "off", not "unchanged".
    form = {
        "require_customer_2fa": require_customer_2fa == "on",
        "customer_server_limit": customer_server_limit.strip(),
        "unfinished_order_days": unfinished_order_days.strip(),
    }
    try:
        data = PanelSettingsUpdate.model_validate(form)
    except ValidationError as error:
        return await _page(
            request, session, form=form, errors=field_errors(error, hints=HINTS), status_code=422
        )
    await panel_settings.update(session, principal, data)
    return RedirectResponse(f"{HERE}?done=saved", status_code=303)
