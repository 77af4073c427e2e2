"""Admin pages for accounts: the user list, a user's page, and the forms that act on a user.

Destructive actions are two steps without any inline script: the button fetches a confirmation
form (a fragment for htmx, the user's page with the form open otherwise) and that form posts the
action with its reason. After an action, htmx gets the refreshed user panel and a toast; a plain
form post is redirected to the user's page, which shows the toast.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.admin.schemas import (
    EMAIL_OUTCOMES,
    MAX_USER_ID,
    REASON_HINT,
    REASON_MAX,
    REASON_MIN,
    RoleChange,
    UserAction,
    UserBlock,
    UserDetail,
    UserFilter,
    UserUnblock,
)
from corral.admin.service import admin_users
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.kit.errors import ValidationFailed
from corral.models.mfa import EnrolmentDelivery
from corral.models.users import UserRole, UserStatus
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.rendering import Toast, render, toast, wants_fragment

router = APIRouter(prefix="/admin", include_in_schema=False)

UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID)]
Reader = Annotated[Principal, require(Permission.USERS_READ)]
Blocker = Annotated[Principal, require(Permission.USERS_READ, Permission.USERS_BLOCK)]
RoleSetter = Annotated[Principal, require(Permission.USERS_READ, Permission.USERS_ROLES)]
Approver = Annotated[Principal, require(Permission.USERS_READ, Permission.USERS_APPROVE)]
# Form fields are read generously and validated by the schemas, so a bad value is shown next to
# the field instead of as a bare 422 page.
FormText = Annotated[str, Form(max_length=4000)]

LIST_TEMPLATE = "admin/users/list.html"
DETAIL_TEMPLATE = "admin/users/detail.html"
ROW_TEMPLATE = "admin/users/_row.html"

# Outcome messages, keyed by the `done` query parameter a plain form post is redirected with; only
# these fixed texts are ever shown, never text taken from the URL.
DONE: dict[str, str] = {
    "blocked": "User blocked and signed out everywhere.",
    "unblocked": "User unblocked.",
    "role": "Role changed. The user's sessions get new ids on their next request.",
    "role_link_emailed": (
        "Role changed. The account has no passkey yet, so we emailed it a single-use enrolment link "
        "(valid for one hour)."
    ),
    "role_link_not_sent": (
        "Role changed, but no passkey enrolment link was emailed: the account's email address is not "
        "verified (or the account is not active). Issue a link below to hand over."
    ),
    "enrolment_emailed": (
        "Passkey enrolment link emailed. It works once, for one hour; earlier links stop working."
    ),
    "approved": "Account approved. We emailed the user.",
    **EMAIL_OUTCOMES,
}
FORMS = {
    "block": {"reason": ""},
    "unblock": {"reason": ""},
    "role": {"reason": "", "role": ""},
}


def _labels() -> dict[str, Any]:
    return {
        "statuses": [status.value for status in UserStatus],
        "roles": [role.value for role in UserRole],
        "reason_min": REASON_MIN,
        "reason_max": REASON_MAX,
        "reason_hint": REASON_HINT,
    }


@router.get("/users", response_class=HTMLResponse)
async def user_list(
    request: Request,
    session: DbSession,
    principal: Reader,
    filters: Annotated[UserFilter, Query()],
) -> HTMLResponse:
    """Search and filter; htmx swaps just the results as the filter changes."""
    page = await admin_users.search(session, principal, filters)
    context = {"page": page, "filters": filters, **_labels()}
    return render(request, LIST_TEMPLATE, context, block="results")


def _detail_page(
    request: Request,
    detail: UserDetail,
    *,
    confirm: UserAction | None = None,
    form: dict[str, str] | None = None,
    error: str | None = None,
    toasts: list[Toast] | None = None,
    block: str = "user_detail",
    status_code: int = 200,
    issued_link: str | None = None,
) -> HTMLResponse:
    context = {
        "user": detail.user,
        "detail": detail,
        "issued_link": issued_link,
        "confirm": confirm,
        "form": form or FORMS.get(confirm or "", {}),
        "error": error,
        "toasts": toasts or [],
        **_labels(),
    }
    return render(request, DETAIL_TEMPLATE, context, block=block, status_code=status_code)


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user_detail(
    request: Request,
    session: DbSession,
    principal: Reader,
    user_id: UserId,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    detail = await admin_users.detail(session, principal, user_id)
    toasts = [Toast(DONE[done])] if done in DONE else []
    return _detail_page(request, detail, toasts=toasts)


async def _confirm(
    request: Request, session: AsyncSession, principal: Principal, user_id: int, action: UserAction
) -> HTMLResponse:
    """The confirmation form for ``action``: htmx swaps it into the actions panel."""
    detail = await admin_users.detail(session, principal, user_id)
    return _detail_page(request, detail, confirm=action, block="user_actions")


async def _refused_form(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    user_id: int,
    action: UserAction,
    form: dict[str, str],
    error: ValidationError,
) -> HTMLResponse:
    """The form again, with what was typed and the problem next to the field (422)."""
    detail = await admin_users.detail(session, principal, user_id)
    fields = {str(item["loc"][0]) for item in error.errors() if item.get("loc")}
    message = REASON_HINT if "reason" in fields else "Choose one of the roles."
    response = _detail_page(
        request, detail, confirm=action, form=form, error=message, block="user_actions", status_code=422
    )
    if wants_fragment(request):
        # htmx does not swap a 422 unless configured to; the toast says what to fix either way, and
        # the retarget keeps the fragment in the actions panel when it is swapped.
        response.headers["HX-Retarget"] = "#user-actions"
        response.headers["HX-Reswap"] = "outerHTML"
        toast(response, message, "error")
    return response


async def _after_action(
    request: Request, session: AsyncSession, principal: Principal, user_id: int, done: str
) -> Response:
    if not wants_fragment(request):
        return RedirectResponse(f"/admin/users/{user_id}?done={done}", status_code=303)
    detail = await admin_users.detail(session, principal, user_id)
    return toast(_detail_page(request, detail), DONE[done])


@router.get("/users/{user_id}/block", response_class=HTMLResponse)
async def block_form(
    request: Request, session: DbSession, principal: Blocker, user_id: UserId
) -> HTMLResponse:
    return await _confirm(request, session, principal, user_id, "block")


@router.post("/users/{user_id}/block")
async def block_user(
    request: Request, session: DbSession, principal: Blocker, user_id: UserId, reason: FormText = ""
) -> Response:
    try:
        data = UserBlock(reason=reason)
    except ValidationError as error:
        return await _refused_form(request, session, principal, user_id, "block", {"reason": reason}, error)
    await admin_users.block(session, principal, user_id, data)
    return await _after_action(request, session, principal, user_id, "blocked")


@router.get("/users/{user_id}/unblock", response_class=HTMLResponse)
async def unblock_form(
    request: Request, session: DbSession, principal: Blocker, user_id: UserId
) -> HTMLResponse:
    return await _confirm(request, session, principal, user_id, "unblock")


@router.post("/users/{user_id}/unblock")
async def unblock_user(
    request: Request, session: DbSession, principal: Blocker, user_id: UserId, reason: FormText = ""
) -> Response:
    try:
        data = UserUnblock(reason=reason)
    except ValidationError as error:
        return await _refused_form(request, session, principal, user_id, "unblock", {"reason": reason}, error)
    await admin_users.unblock(session, principal, user_id, data)
    return await _after_action(request, session, principal, user_id, "unblocked")


@router.get("/users/{user_id}/role", response_class=HTMLResponse)
async def role_form(
    request: Request, session: DbSession, principal: RoleSetter, user_id: UserId
) -> HTMLResponse:
    return await _confirm(request, session, principal, user_id, "role")


@router.post("/users/{user_id}/role")
async def change_role(
    request: Request,
    session: DbSession,
    principal: RoleSetter,
    user_id: UserId,
    role: FormText = "",
    reason: FormText = "",
) -> Response:
    form = {"role": role, "reason": reason}
    try:
        data = RoleChange.model_validate(form)
    except ValidationError as error:
        return await _refused_form(request, session, principal, user_id, "role", form, error)
    await admin_users.change_role(session, principal, user_id, data)
    detail = await admin_users.detail(session, principal, user_id)
    return await _after_action(request, session, principal, user_id, _role_done(detail))


def _role_done(detail: UserDetail) -> str:
    """The toast after a role change: says whether the promoted account was sent its passkey link."""
    enrolment = detail.enrolment
    if enrolment is None or not enrolment.needed:
        return "role"
    link = enrolment.live_link
    if link is not None and link.delivery == EnrolmentDelivery.EMAIL:
        return "role_link_emailed"
    return "role_link_not_sent"


@router.post("/users/{user_id}/approve")
async def approve_user(
    request: Request,
    session: DbSession,
    principal: Approver,
    user_id: UserId,
    view: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """Approve from the user's page, or from a row of the list (``?view=row``: the row comes back)."""
    user = await admin_users.approve(session, principal, user_id)
    if view == "row" and wants_fragment(request):
        context = {"user": user, **_labels()}
        return toast(render(request, ROW_TEMPLATE, context), DONE["approved"])
    return await _after_action(request, session, principal, user_id, "approved")


@router.post("/users/{user_id}/verify-email")
async def mark_email_verified(
    request: Request, session: DbSession, principal: Approver, user_id: UserId
) -> Response:
    """Vouch for the account's address; a no-op (saying so) when it is already verified."""
    done = await admin_users.mark_email_verified(session, principal, user_id)
    return await _after_action(request, session, principal, user_id, done.outcome)


@router.post("/users/{user_id}/resend-verification")
async def resend_verification(
    request: Request, session: DbSession, principal: Approver, user_id: UserId
) -> Response:
    done = await admin_users.resend_verification(session, principal, user_id)
    return await _after_action(request, session, principal, user_id, done.outcome)


@router.post("/users/{user_id}/enrolment-link", response_class=HTMLResponse)
async def issue_enrolment_link(
    request: Request,
    session: DbSession,
    principal: RoleSetter,
    user_id: UserId,
    delivery: FormText = "",
) -> Response:
    """A passkey enrolment link for a staff account without a passkey: emailed to its verified
    address, or shown here once for the super admin to hand over (never stored in clear)."""
    try:
        chosen = EnrolmentDelivery(delivery)
    except ValueError:
        chosen = None
    if chosen not in (EnrolmentDelivery.EMAIL, EnrolmentDelivery.HANDOVER):
        raise ValidationFailed("Choose whether to email the link or show it to hand over.")
    issued = await admin_users.issue_enrolment_link(session, principal, user_id, chosen)
    if chosen == EnrolmentDelivery.EMAIL:
        return await _after_action(request, session, principal, user_id, "enrolment_emailed")
    detail = await admin_users.detail(session, principal, user_id)
    message = "Enrolment link issued: hand it over now, it is shown only once. Earlier links stop working."
    # The page carries a live link: no cache, proxy or back button may keep a copy.
    response = _detail_page(request, detail, issued_link=issued.link, toasts=[Toast(message)])
    response.headers["Cache-Control"] = "no-store"
    return toast(response, message) if wants_fragment(request) else response
