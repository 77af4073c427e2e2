"""Admin pages for plans: the list (with the "add" form) and a plan's edit page.

Forms post normally (no script needed); an invalid form comes back with what was typed and the
problem next to each field (422, or 409 for a taken slug). After a change the browser is
redirected with a fixed ``done`` key, which the page turns into a toast. Delete is an htmx post
(``hx-confirm``) answered with ``HX-Redirect``; a refusal (servers use the plan) comes back as an
error toast.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.kit.errors import PanelError
from corral.locations.schemas import MAX_ID
from corral.plans.errors import PlanSlugTaken, UnknownPlanLocation
from corral.plans.money import format_price, price_amount
from corral.plans.schemas import MAX_LOCATIONS, PlanCreate, PlanUpdate
from corral.plans.service import plans
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.forms import Done, FormPage
from corral.web.rendering import redirect

router = APIRouter(prefix="/admin/plans", include_in_schema=False)

PlanId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.PLANS_MANAGE)]
FormText = Annotated[str, Form(max_length=200)]
FormList = Annotated[list[str], Form(max_length=MAX_LOCATIONS)]

LIST_TEMPLATE = "plans/list.html"
EDIT_TEMPLATE = "plans/edit.html"
DONE: dict[str, str] = {
    "created": "Plan added.",
    "saved": "Plan saved.",
    "deleted": "Plan deleted.",
}
# What to say next to a field, instead of pydantic's wording.
HINTS: dict[str, str] = {
    "slug": "2-40 lower-case letters, digits or dashes, e.g. s-2-4.",
    "name": "Give a name of 1-100 characters.",
    "vcpus": "Give a whole number of vCPUs from 1 to 512.",
    "memory_mib": "Give the memory in MiB: a whole number of 128 or more, e.g. 2048.",
    "disk_gib": "Give the disk in GiB: a whole number of 1 or more.",
    "traffic_gib": "Give the monthly traffic in GiB as a whole number; 0 means unmetered.",
    "currency": "Use a three-letter ISO 4217 currency code, e.g. USD, EUR or JPY.",
    "location_ids": "Tick locations from the list.",
}
EMPTY_FORM: dict[str, Any] = {
    "slug": "",
    "name": "",
    "vcpus": "",
    "memory_mib": "",
    "disk_gib": "",
    "traffic_gib": "0",
    "price": "",
    "currency": "",
    "active": True,
    "location_ids": [],
}


def _plan_form(
    slug: FormText = "",
    name: FormText = "",
    vcpus: FormText = "",
    memory_mib: FormText = "",
    disk_gib: FormText = "",
    traffic_gib: FormText = "",
    price: FormText = "",
    currency: FormText = "",
    active: FormText = "",
    location_ids: FormList = [],  # noqa: B006 (FastAPI copies defaults)
) -> dict[str, Any]:
    """The add and edit forms' fields, as typed (the dependency both posts share)."""
    return {
        "slug": slug,
        "name": name,
        "vcpus": vcpus,
        "memory_mib": memory_mib,
        "disk_gib": disk_gib,
        # Left blank means unmetered.
        "traffic_gib": traffic_gib.strip() or "0",
        "price": price,
        "currency": currency,
        "active": active == "on",
        "location_ids": location_ids,
    }


PlanForm = Annotated[dict[str, Any], Depends(_plan_form)]
# A service refusal shown next to the field it is about.
REFUSAL_FIELDS: dict[type[PanelError], str] = {PlanSlugTaken: "slug", UnknownPlanLocation: "location_ids"}


def _checked(form: dict[str, Any]) -> set[str]:
    return {str(value) for value in form.get("location_ids", [])}


async def _list_page(
    request: Request, session: DbSession, principal: Principal, page: FormPage = FormPage()
) -> HTMLResponse:
    values = page.values(EMPTY_FORM)
    context = {
        "rows": await plans.list(session, principal),
        "choices": await plans.location_choices(session, principal),
        "form": values,
        "checked": _checked(values),
        "format_price": format_price,
    }
    return page.render(request, LIST_TEMPLATE, context)


@router.get("", response_class=HTMLResponse)
async def plan_list(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    return await _list_page(request, session, principal, FormPage.opened(done, DONE))


@router.post("", response_class=HTMLResponse)
async def create_plan(request: Request, session: DbSession, principal: Manager, form: PlanForm) -> Response:
    try:
        data = PlanCreate.model_validate(form)
        await plans.create(session, principal, data)
    except (ValidationError, PlanSlugTaken, UnknownPlanLocation) as error:
        page = FormPage.refused(form, error, hints=HINTS, fields=REFUSAL_FIELDS)
        return await _list_page(request, session, principal, page)
    return RedirectResponse("/admin/plans?done=created", status_code=303)


async def _edit_page(
    request: Request, session: DbSession, principal: Principal, plan_id: int, page: FormPage = FormPage()
) -> HTMLResponse:
    row = await plans.get(session, principal, plan_id)
    plan = row.plan
    values = page.values(
        {
            "slug": plan.slug,
            "name": plan.name,
            "vcpus": plan.vcpus,
            "memory_mib": plan.memory_mib,
            "disk_gib": plan.disk_gib,
            "traffic_gib": plan.traffic_gib,
            "price": price_amount(plan.price_minor, plan.currency),
            "currency": plan.currency,
            "active": plan.active,
            "location_ids": [location.id for location in row.locations],
        }
    )
    context = {
        "row": row,
        "plan": plan,
        "choices": await plans.location_choices(session, principal),
        "form": values,
        "checked": _checked(values),
        "format_price": format_price,
    }
    return page.render(request, EDIT_TEMPLATE, context)


@router.get("/{plan_id}", response_class=HTMLResponse)
async def plan_page(
    request: Request, session: DbSession, principal: Reader, plan_id: PlanId, done: Done = None
) -> HTMLResponse:
    return await _edit_page(request, session, principal, plan_id, FormPage.opened(done, DONE))


@router.post("/{plan_id}", response_class=HTMLResponse)
async def update_plan(
    request: Request, session: DbSession, principal: Manager, plan_id: PlanId, form: PlanForm
) -> Response:
    try:
        data = PlanUpdate.model_validate(form)
        await plans.update(session, principal, plan_id, data)
    except (ValidationError, PlanSlugTaken, UnknownPlanLocation) as error:
        page = FormPage.refused(form, error, hints=HINTS, fields=REFUSAL_FIELDS)
        return await _edit_page(request, session, principal, plan_id, page)
    return RedirectResponse(f"/admin/plans/{plan_id}?done=saved", status_code=303)


@router.post("/{plan_id}/delete")
async def delete_plan(request: Request, session: DbSession, principal: Manager, plan_id: PlanId) -> Response:
    await plans.delete(session, principal, plan_id)
    return redirect(request, "/admin/plans?done=deleted")
