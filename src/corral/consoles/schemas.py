"""What the console service gives its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from corral.models.servers import Server

TICKET_LIFETIME_S = 60


@dataclass(frozen=True)
class IssuedTicket:
    """A fresh ticket for one server. ``ticket`` is the only copy of the secret: it goes into the
    page for its script and is never stored."""

    server: Server
    ticket: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class ConsoleTarget:
    """Where the proxy connects for a redeemed ticket. ``password`` never leaves the panel."""

    server_id: int
    host: str
    port: int
    password: str | None = field(repr=False)
