from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


def safe_next(target: str | None, default: str = "/dashboard") -> str:
    """Where to go after signing in: only a path on this site, never another host.

    ``//evil.example`` and ``/\\evil.example`` are paths to a browser's eye but another host in
    practice, so anything but a plain absolute path falls back to the default.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(character in target for character in ("\r", "\n", "\\")):
        return default
    return target


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    auth_method: str
    current: bool = False
