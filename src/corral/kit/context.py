"""Per-request facts (request id, client IP) carried in a context variable.

Set by the request middleware; read by the audit log and the logger so callers need not thread
them through every function.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    ip: str | None = None
    user_agent: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("corral_request_context", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


def set_request(context: RequestContext | None) -> object:
    return _current.set(context)


def reset_request(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
