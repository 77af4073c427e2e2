"""Admin pages for nodes: the list, a node's page, the add/edit form and its "Test connection".

Forms post normally and work without script. "Test connection" is an htmx post of the form's
current values that answers with a result fragment (the host's CPUs, memory, storage and versions,
or the driver's message) plus out-of-band capacity fields filled with what the node reported, when
they were left empty. A refused save (unreachable node, taken name, bad field) comes back as the
form with what was typed (never the password) and the problem next to the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.drivers.base import Transport
from corral.drivers.registry import driver_kinds
from corral.kit.errors import PanelError, ValidationFailed
from corral.locations.service import locations
from corral.node_keys.service import node_keys
from corral.nodes.errors import CapacityUnknown, NodeInUse, NodeNameTaken, NodeUnreachable, UnknownLocation
from corral.nodes.schemas import (
    ENDPOINT_FIELDS,
    MAX_ID,
    TRANSPORT_LABELS,
    ConnectionTestResult,
    NodeConnectionTest,
    NodeCreate,
    NodeUpdate,
)
from corral.nodes.service import nodes
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession
from corral.web.forms import Done, done_toasts
from corral.web.rendering import redirect, render

router = APIRouter(prefix="/admin/nodes", include_in_schema=False)

NodeId = Annotated[int, Path(ge=1, le=MAX_ID)]
Reader = Annotated[Principal, require(Permission.NODES_READ)]
Manager = Annotated[Principal, require(Permission.NODES_MANAGE)]

LIST_TEMPLATE = "nodes/list.html"
DETAIL_TEMPLATE = "nodes/detail.html"
FORM_TEMPLATE = "nodes/form.html"
TEST_TEMPLATE = "nodes/_connection_test.html"
DONE: dict[str, str] = {
    "created": "Node added.",
    "created_offline": (
        "Node saved offline: it did not answer. The health check brings it online when it does."
    ),
    "saved": "Node saved.",
    "maintenance_on": "Node is in maintenance: no new servers are placed on it.",
    "maintenance_off": "Node is out of maintenance.",
    "checked": "Health check done.",
    "deleted": "Node deleted.",
}
CONNECTION_FIELDS = ("driver", *ENDPOINT_FIELDS, "storage_pool", "network", "domain_type")
TEXT_FIELDS = ("name", "location_id", *CONNECTION_FIELDS)
NUMBER_FIELDS = (
    "cpu_total",
    "memory_total_mib",
    "disk_total_gib",
    "cpu_oversell",
    "memory_oversell",
    "disk_oversell",
)
FLAGS = ("maintenance", "allow_unreachable", "clear_credentials")
_NOT_FOR_TRANSPORT: dict[str, tuple[str, ...]] = {
    Transport.TEST: ENDPOINT_FIELDS[1:],
    Transport.LOCAL: ENDPOINT_FIELDS[1:],
    Transport.TLS: ("ssh_user", "ssh_key_id", "ssh_host_key"),
}
# What to say next to a field, instead of pydantic's wording.
HINTS: dict[str, str] = {
    "name": "1-100 letters, digits, dots, dashes or underscores.",
    "location_id": "Choose a location.",
    "transport": "Choose how the panel reaches the node.",
    "host": "The node's DNS name or IP address only: no user, port, path or options.",
    "port": "A port from 1 to 65535, or empty for the default.",
    "ssh_user": "The login on the node: lowercase letters, digits, dashes or underscores.",
    "ssh_key_id": "Choose one of the panel's node SSH keys.",
    "ssh_host_key": "One line such as ssh-ed25519 AAAA…: the node's /etc/ssh/ssh_host_ed25519_key.pub.",
    "storage_pool": "A storage pool name on the node, e.g. default.",
    "network": "A network or bridge name on the node, e.g. default.",
    "cpu_total": "A whole number of CPU threads above 0, or empty to use what the node reports.",
    "memory_total_mib": "MiB above 0, or empty to use what the node reports.",
    "disk_total_gib": "GiB above 0, or empty to use the storage pool's size.",
    "cpu_oversell": "A ratio from 1.0 to 10.",
    "memory_oversell": "A ratio from 1.0 to 10.",
    "disk_oversell": "A ratio from 1.0 to 10.",
}


def _text(form: FormData, name: str) -> str:
    # Spaces only: a control character (a newline, a NUL) is left for the schema to refuse, not
    # quietly trimmed away.
    value = form.get(name)
    return value.strip(" ")[:4000] if isinstance(value, str) else ""


def read_form(form: FormData) -> dict[str, Any]:
    """The node form as typed: text, flags, and the credentials (the password is never shown back)."""
    values: dict[str, Any] = {name: _text(form, name) for name in (*TEXT_FIELDS, *NUMBER_FIELDS, "username")}
    values.update({flag: form.get(flag) == "on" for flag in FLAGS})
    values["password"] = form.get("password") if isinstance(form.get("password"), str) else ""
    return values


def _payload(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Schema input from form values: empty text means "not given". The form shows every
    connection field at once, so those that do not go with the chosen transport are left out
    (switching an ssh node to local needs no clearing); the API, by contrast, refuses them."""
    skipped = set(_NOT_FOR_TRANSPORT.get(str(values.get("transport")), ()))
    payload = {
        name: values[name] for name in names if values.get(name) not in ("", None) and name not in skipped
    }
    if values.get("username") or values.get("password"):
        payload["credentials"] = {
            "username": values.get("username") or None,
            "password": values.get("password"),
        }
    return payload


def field_errors(error: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        name = (
            location[-1]
            if location and location[0] == "credentials"
            else (location[0] if location else "form")
        )
        message = str(item.get("msg", "Invalid value")).removeprefix("Value error, ")
        errors.setdefault(name, HINTS.get(name, message))
    return errors


def _panel_error_field(error: PanelError) -> str:
    field = error.details.get("field")
    if isinstance(field, str):
        return field
    if isinstance(error, NodeNameTaken):
        return "name"
    if isinstance(error, UnknownLocation):
        return "location_id"
    if isinstance(error, CapacityUnknown):
        return "cpu_total"
    if isinstance(error, NodeUnreachable):
        return "host"
    return "form"


@router.get("", response_class=HTMLResponse)
async def node_list(
    request: Request, session: DbSession, principal: Reader, done: Done = None
) -> HTMLResponse:
    rows = await nodes.list(session, principal)
    return render(request, LIST_TEMPLATE, {"rows": rows, "toasts": done_toasts(done, DONE)})


async def _form_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    node_id: int | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    unreachable: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    node = await nodes.get(session, principal, node_id) if node_id is not None else None
    if values is None:
        values = _values_of(node)
    context = {
        "node": node,
        "form": values,
        "errors": errors or {},
        "unreachable": unreachable,
        "locations": await locations.choices(session, principal),
        "drivers": driver_kinds(),
        "transports": list(TRANSPORT_LABELS.items()),
        "keys": await node_keys.choices(session, principal),
    }
    return render(request, FORM_TEMPLATE, context, status_code=status_code)


def _values_of(node: Any) -> dict[str, Any]:
    if node is None:
        return {
            "driver": "libvirt",
            "transport": "ssh",
            "storage_pool": "default",
            "network": "default",
            "domain_type": "kvm",
            "cpu_oversell": "1.0",
            "memory_oversell": "1.0",
            "disk_oversell": "1.0",
        }
    return {name: getattr(node, name) for name in (*TEXT_FIELDS, *NUMBER_FIELDS)}


@router.get("/new", response_class=HTMLResponse)
async def new_node(request: Request, session: DbSession, principal: Manager) -> HTMLResponse:
    return await _form_page(request, session, principal)


@router.post("", response_class=HTMLResponse)
async def create_node(request: Request, session: DbSession, principal: Manager) -> Response:
    values = read_form(await request.form())
    try:
        data = NodeCreate.model_validate(
            _payload(values, (*TEXT_FIELDS, *NUMBER_FIELDS, "maintenance", "allow_unreachable"))
        )
        node = await nodes.create(session, principal, data)
    except ValidationError as error:
        return await _form_page(
            request, session, principal, values=values, errors=field_errors(error), status_code=422
        )
    except (NodeNameTaken, ValidationFailed) as error:
        # Refusals about what was typed (name taken, unreachable, unknown capacity or location).
        return await _refused(request, session, principal, None, values, error)
    done = "created" if node.last_error is None else "created_offline"
    return RedirectResponse(f"/admin/nodes/{node.id}?done={done}", status_code=303)


async def _refused(
    request: Request,
    session: DbSession,
    principal: Principal,
    node_id: int | None,
    values: dict[str, Any],
    error: PanelError,
) -> HTMLResponse:
    """The form again after the service refused it; nothing was saved (the request rolls back)."""
    unreachable = error.details.get("error") if isinstance(error, NodeUnreachable) else None
    return await _form_page(
        request,
        session,
        principal,
        node_id=node_id,
        values=values,
        errors={_panel_error_field(error): error.message},
        unreachable=str(unreachable) if unreachable else None,
        status_code=error.status_code,
    )


@router.post("/test-connection", response_class=HTMLResponse)
async def test_connection(request: Request, session: DbSession, principal: Manager) -> HTMLResponse:
    """Test the form's values; answers the result fragment (always 200: a failure is a result)."""
    form = await request.form()
    values = read_form(form)
    node_id = _text(form, "node_id")
    payload = _payload(values, CONNECTION_FIELDS)
    if node_id.isdigit():
        payload["node_id"] = int(node_id)
    result: ConnectionTestResult | None = None
    errors: dict[str, str] = {}
    try:
        result = await nodes.test_connection(session, principal, NodeConnectionTest.model_validate(payload))
    except ValidationError as error:
        errors = field_errors(error)
    context = {"result": result, "errors": errors, "form": values}
    return render(request, TEST_TEMPLATE, context)


@router.get("/{node_id}", response_class=HTMLResponse)
async def node_page(
    request: Request, session: DbSession, principal: Reader, node_id: NodeId, done: Done = None
) -> HTMLResponse:
    detail = await nodes.detail(session, principal, node_id)
    return render(
        request, DETAIL_TEMPLATE, {"detail": detail, "node": detail.node, "toasts": done_toasts(done, DONE)}
    )


@router.get("/{node_id}/edit", response_class=HTMLResponse)
async def edit_node(
    request: Request, session: DbSession, principal: Manager, node_id: NodeId
) -> HTMLResponse:
    return await _form_page(request, session, principal, node_id=node_id)


@router.post("/{node_id}", response_class=HTMLResponse)
async def update_node(request: Request, session: DbSession, principal: Manager, node_id: NodeId) -> Response:
    values = read_form(await request.form())
    try:
        data = NodeUpdate.model_validate(
            _payload(values, (*TEXT_FIELDS, *NUMBER_FIELDS, "allow_unreachable", "clear_credentials"))
        )
        await nodes.update(session, principal, node_id, data)
    except ValidationError as error:
        return await _form_page(
            request,
            session,
            principal,
            node_id=node_id,
            values=values,
            errors=field_errors(error),
            status_code=422,
        )
    except (NodeNameTaken, NodeInUse, ValidationFailed) as error:
        return await _refused(request, session, principal, node_id, values, error)
    return RedirectResponse(f"/admin/nodes/{node_id}?done=saved", status_code=303)


@router.post("/{node_id}/maintenance")
async def set_maintenance(
    request: Request, session: DbSession, principal: Manager, node_id: NodeId
) -> Response:
    enabled = (await request.form()).get("enabled") == "on"
    await nodes.set_maintenance(session, principal, node_id, enabled)
    return redirect(
        request, f"/admin/nodes/{node_id}?done={'maintenance_on' if enabled else 'maintenance_off'}"
    )


@router.post("/{node_id}/check")
async def check_node(request: Request, session: DbSession, principal: Manager, node_id: NodeId) -> Response:
    await nodes.check_now(session, principal, node_id)
    return redirect(request, f"/admin/nodes/{node_id}?done=checked")


@router.post("/{node_id}/delete")
async def delete_node(request: Request, session: DbSession, principal: Manager, node_id: NodeId) -> Response:
    await nodes.delete(session, principal, node_id)
    return redirect(request, "/admin/nodes?done=deleted")
