"""Admin pages for locations: the list (with the "add" form) and a location's edit page.

Forms post normally (no script needed); an invalid form comes back with what was typed and the
problem next to each field (422). After a change the browser is redirected with a fixed ``done``
key, which the page turns into a toast. Delete is an htmx post (``hx-confirm``) answered with
``HX-Redirect``; a refusal (still in use) comes back as an error toast.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.locations.schemas import MAX_ID, LocationCreate, LocationUpdate
from corral.locations.service import locations
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.forms import Done, FormPage
from corral.web.rendering import redirect

router = APIRouter(prefix="/admin/locations", include_in_schema=False)

LocationId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.LOCATIONS_MANAGE)]
FormText = Annotated[str, Form(max_length=200)]

LIST_TEMPLATE = "locations/list.html"
EDIT_TEMPLATE = "locations/edit.html"
DONE: dict[str, str] = {
    "created": "Location added.",
    "saved": "Location saved.",
    "deleted": "Location deleted.",
}
# What to say next to a field, instead of pydantic's wording.
HINTS: dict[str, str] = {
    "slug": "2-40 lower-case letters, digits or dashes, e.g. syd1.",
    "name": "Give a name of 1-100 characters.",
    "country_code": "Use a two-letter ISO country code, e.g. AU or DE.",
}


async def _list_page(
    request: Request, session: DbSession, principal: Principal, page: FormPage = FormPage()
) -> HTMLResponse:
    context = {
        "rows": await locations.list(session, principal),
        "form": page.values({"slug": "", "name": "", "country_code": "", "active": True}),
    }
    return page.render(request, LIST_TEMPLATE, context)


@router.get("", response_class=HTMLResponse)
async def location_list(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    return await _list_page(request, session, principal, FormPage.opened(done, DONE))


@router.post("", response_class=HTMLResponse)
async def create_location(
    request: Request,
    session: DbSession,
    principal: Manager,
    slug: FormText = "",
    name: FormText = "",
    country_code: FormText = "",
    active: FormText = "",
) -> Response:
    form = {"slug": slug, "name": name, "country_code": country_code, "active": active == "on"}
    try:
        data = LocationCreate.model_validate(form)
    except ValidationError as error:
        return await _list_page(request, session, principal, FormPage.refused(form, error, hints=HINTS))
    await locations.create(session, principal, data)
    return RedirectResponse("/admin/locations?done=created", status_code=303)


async def _edit_page(
    request: Request, session: DbSession, principal: Principal, location_id: int, page: FormPage = FormPage()
) -> HTMLResponse:
    location = await locations.get(session, principal, location_id)
    values = page.values(
        {"name": location.name, "country_code": location.country_code, "active": location.active}
    )
    return page.render(request, EDIT_TEMPLATE, {"location": location, "form": values})


@router.get("/{location_id}", response_class=HTMLResponse)
async def location_page(
    request: Request, session: DbSession, principal: Reader, location_id: LocationId, done: Done = None
) -> HTMLResponse:
    return await _edit_page(request, session, principal, location_id, FormPage.opened(done, DONE))


@router.post("/{location_id}", response_class=HTMLResponse)
async def update_location(
    request: Request,
    session: DbSession,
    principal: Manager,
    location_id: LocationId,
    name: FormText = "",
    country_code: FormText = "",
    active: FormText = "",
) -> Response:
    form = {"name": name, "country_code": country_code, "active": active == "on"}
    try:
        data = LocationUpdate.model_validate(form)
    except ValidationError as error:
        page = FormPage.refused(form, error, hints=HINTS)
        return await _edit_page(request, session, principal, location_id, page)
    await locations.update(session, principal, location_id, data)
    return RedirectResponse(f"/admin/locations/{location_id}?done=saved", status_code=303)


@router.post("/{location_id}/delete")
async def delete_location(
    request: Request, session: DbSession, principal: Manager, location_id: LocationId
) -> Response:
    await locations.delete(session, principal, location_id)
    return redirect(request, "/admin/locations?done=deleted")
