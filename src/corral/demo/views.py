"""The demo outbox: the email the demo panel sent, caught in-process (see ``demo.outbox``).

Both pages exist only in demo mode (a 404 otherwise) and answer ``Cache-Control: no-store``:
the messages hold live verification and password-reset links.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from corral.auth.deps import OptionalPrincipal
from corral.demo.outbox import OUTBOX_PATH, pieces, readable_outbox
from corral.web.rendering import render

router = APIRouter(include_in_schema=False)

MessageId = Annotated[int, Path(ge=1, le=2**62)]


def _no_store(response: HTMLResponse) -> HTMLResponse:
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(OUTBOX_PATH, response_class=HTMLResponse)
async def outbox_page(request: Request, principal: OptionalPrincipal) -> HTMLResponse:
    outbox = readable_outbox(request, principal)
    context = {"messages": outbox.messages(), "capacity": outbox.capacity, "outbox_path": OUTBOX_PATH}
    return _no_store(render(request, "demo/outbox.html", context))


@router.get(OUTBOX_PATH + "/{message_id}", response_class=HTMLResponse)
async def outbox_message(
    request: Request, principal: OptionalPrincipal, message_id: MessageId
) -> HTMLResponse:
    outbox = readable_outbox(request, principal)
    message = outbox.get(message_id)
    public_url: str = request.app.state.settings.web.public_url
    context = {"message": message, "pieces": pieces(message.text, public_url), "outbox_path": OUTBOX_PATH}
    return _no_store(render(request, "demo/message.html", context))
