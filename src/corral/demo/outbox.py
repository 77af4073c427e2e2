"""The demo's mail catcher: an SMTP server on 127.0.0.1 inside the panel's own process, and the
last messages it took, shown at ``/demo/outbox``.

A demo has no mail server, so without this every email (the sign-up verification link first of
all) was refused and retried for minutes, and a new account could never sign in. The panel's
SMTP settings point here instead, so mail takes the same path as in production (queued in the
transaction, sent by the ``notifications.send_email`` job over real SMTP) and ends up readable.

Why in memory, and only the last :data:`CAPACITY`: the messages carry live sign-in secrets (the
verification and password-reset links); memory keeps them off the disk and lets them go with the
process, and the links they hold expire anyway. ``email_messages`` still records every message.

Who may read it (:func:`readable_outbox`): it exists only in demo mode; then any browser on the
demo's own machine when the demo listens on loopback only (a person trying the demo is not yet
anyone the panel knows, and the demo's super-admin has no passkey yet), and otherwise only
signed-in staff who can see users.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import TYPE_CHECKING, Any

from corral.config import Settings
from corral.kit.clock import utcnow
from corral.kit.errors import Forbidden, NotFound
from corral.rbac.permissions import Permission

if TYPE_CHECKING:
    from fastapi import Request

    from corral.auth.principal import Principal

OUTBOX_PATH = "/demo/outbox"
HOST = "127.0.0.1"
CAPACITY = 200
# Panel email is a few kilobytes; anything near this is not ours.
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_TEXT_CHARS = 100_000
# Set by a reverse proxy: a request through one is not a person at this machine's own browser.
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_URL = re.compile(r"https?://[^\s<>\"'\\]+")
# Sentence punctuation after a link is not part of it.
_TRAILING = ".,;:!?)]}"


@dataclass(frozen=True)
class CaughtMail:
    id: int
    received_at: datetime
    mail_from: str
    recipients: tuple[str, ...]
    subject: str
    # The plain-text part, which every panel email has; the HTML part is not shown.
    text: str


@dataclass(frozen=True)
class TextPiece:
    """A run of a message's text; ``link`` when it is a link to this panel, shown clickable."""

    text: str
    link: bool = False


def pieces(text: str, public_url: str) -> list[TextPiece]:
    """``text`` cut into plain runs and links. Only links to the panel's own public URL become
    clickable: a message could carry any URL, and the outbox must not become a launch pad."""
    found: list[TextPiece] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        if not _is_panel_link(url, public_url):
            continue
        if match.start() > position:
            found.append(TextPiece(text[position : match.start()]))
        found.append(TextPiece(url, link=True))
        position = match.start() + len(url)
    if position < len(text):
        found.append(TextPiece(text[position:]))
    return found


def _is_panel_link(url: str, public_url: str) -> bool:
    # "http://localhost:8000@evil.example/" or "…8000.evil.example" do not start with base + "/".
    return url == public_url or url.startswith((f"{public_url}/", f"{public_url}?"))


def _plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return "(This message has no plain-text part.)"
    try:
        text = str(body.get_content())
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        return "(The plain-text part of this message cannot be decoded.)"
    if len(text) > MAX_TEXT_CHARS:
        return text[:MAX_TEXT_CHARS] + "\n… (cut short)"
    return text


class DemoOutbox:
    """The catcher: bound at construction (so its port is known before the settings that name it
    are built, and nothing can take the port in between), served by :meth:`start` on the panel's
    event loop, stopped by :meth:`stop`."""

    def __init__(self, *, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._messages: deque[CaughtMail] = deque(maxlen=capacity)
        # Written on the event loop's thread and read by requests; a lock keeps that true even if
        # a worker ever sends from another thread.
        self._lock = threading.Lock()
        self._next_id = 1
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((HOST, 0))
        self.port = int(self._socket.getsockname()[1])
        self._server: asyncio.Server | None = None

    def settings(self, base: Settings) -> Settings:
        """``base`` with its SMTP section pointed here: plain SMTP on loopback, no login."""
        smtp = base.smtp.model_copy(
            update={"host": HOST, "port": self.port, "security": "none", "username": None, "password": None}
        )
        return base.model_copy(update={"smtp": smtp})

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP  # only the demo needs an SMTP server

        # aiosmtpd logs every connection and command at INFO: noise in a demo's terminal.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            # hostname given: aiosmtpd would otherwise ask the resolver for this host's FQDN.
            lambda: SMTP(handler, hostname="corral-demo-outbox", data_size_limit=MAX_MESSAGE_BYTES),
            sock=self._socket,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._socket.close()

    def keep(self, raw: bytes, *, mail_from: str, recipients: tuple[str, ...]) -> CaughtMail:
        message = BytesParser(policy=default_policy).parsebytes(raw)
        assert isinstance(message, EmailMessage)  # the default policy's message class
        subject = " ".join(str(message.get("Subject", "")).split()) or "(no subject)"
        with self._lock:
            caught = CaughtMail(
                id=self._next_id,
                received_at=utcnow(),
                mail_from=mail_from,
                recipients=recipients,
                subject=subject,
                text=_plain_text(message),
            )
            self._next_id += 1
            self._messages.append(caught)
        return caught

    def messages(self) -> list[CaughtMail]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._messages))

    def get(self, message_id: int) -> CaughtMail:
        with self._lock:
            for message in self._messages:
                if message.id == message_id:
                    return message
        raise NotFound(f"That message is not in the outbox, which keeps the last {self.capacity}.")


class _Handler:
    """aiosmtpd's hooks: accept every message and keep it."""

    def __init__(self, outbox: DemoOutbox) -> None:
        self._outbox = outbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        self._outbox.keep(raw, mail_from=str(envelope.mail_from), recipients=tuple(envelope.rcpt_tos))
        return "250 2.0.0 Kept in the demo outbox"


def catch_demo_mail(settings: Settings) -> tuple[Settings, DemoOutbox | None]:
    """In demo mode, unless CORRAL_SMTP__HOST or CORRAL_SMTP__PORT names a mail server, a new
    outbox and the settings that send email to it; otherwise the settings unchanged and None."""
    if not settings.demo or {"host", "port"} & settings.smtp.model_fields_set:
        return settings, None
    outbox = DemoOutbox()
    return outbox.settings(settings), outbox


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_this_machine(request: Request, settings: Settings) -> bool:
    """A browser on the demo's own machine: the demo listens on loopback only, the connection
    comes from loopback, and no proxy relayed it (a proxy on the same machine would make the
    whole network look local)."""
    if not _is_loopback(settings.web.host):
        return False
    if request.client is None or not _is_loopback(request.client.host):
        return False
    return not any(name in request.headers for name in _FORWARDING_HEADERS)


def readable_outbox(request: Request, principal: Principal | None) -> DemoOutbox:
    """The outbox, if this request may read it. 404 outside demo mode, whoever asks (the page
    does not exist there); 403 in a demo for anyone neither at the machine nor staff."""
    settings: Settings = request.app.state.settings
    outbox: DemoOutbox | None = getattr(request.app.state, "demo_outbox", None)
    if not settings.demo or outbox is None:
        raise NotFound()
    if principal is not None and principal.can(Permission.USERS_READ):
        return outbox
    if _from_this_machine(request, settings):
        return outbox
    raise Forbidden(
        "The demo outbox opens in a browser on the demo's own machine, or for staff who can see users."
    )
