from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field, field_validator

from corral.kit.text import SingleLine
from corral.rbac.permissions import Permission

# The error body belongs to the web layer, which renders it; re-exported for the API modules.
from corral.web.openapi import ErrorRead as ErrorRead
from corral.web.openapi import FieldErrorRead as FieldErrorRead


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


# ---------- Account security: sessions and personal access tokens ----------

API_TOKEN_NAME_MAX = 100
API_TOKEN_MAX_DAYS = 365
API_TOKEN_DEFAULT_DAYS = 30


# Ordered most specific first: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS: tuple[tuple[str, str], ...] = (
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
)
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def describe_device(user_agent: str | None) -> str:
    """A user agent in plain words: "Firefox on Windows", "Safari on iPhone", "curl".

    Only for people to recognise their own devices; never used for a security decision.
    """
    agent = (user_agent or "").strip()
    if not agent:
        return "Unknown device"
    browser = next((name for marker, name in _BROWSERS if marker in agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in agent), None)
    if browser is None and not agent.startswith("Mozilla/"):
        # A tool rather than a browser ("curl/8.5.0", "python-httpx/0.28"): its product name.
        return agent.split("/", 1)[0].split(" ", 1)[0][:40] or "Unknown device"
    if browser is None:
        return f"Web browser on {system}" if system else "Web browser"
    return f"{browser} on {system}" if system else browser


class AccountSessionRead(SessionRead):
    """One of the caller's own sign-in sessions. ``current`` marks the one making this request."""

    @field_validator("ip", mode="before")
    @classmethod
    def _ip_as_text(cls, value: object) -> object:
        # The column is INET: psycopg hands back ipaddress objects.
        return None if value is None else str(value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def device(self) -> str:
        return describe_device(self.user_agent)


class SessionsRevoked(BaseModel):
    revoked: int = Field(description="How many sessions were ended.")


TokenName = Annotated[
    SingleLine, StringConstraints(strip_whitespace=True, min_length=1, max_length=API_TOKEN_NAME_MAX)
]


class ApiTokenCreate(BaseModel):
    name: TokenName = Field(description="What the token is for, so you can tell tokens apart later.")
    scopes: list[Permission] = Field(
        min_length=1,
        max_length=64,
        description="What the token may do; each must be a permission your account holds now.",
    )
    expires_in_days: int | None = Field(
        default=API_TOKEN_DEFAULT_DAYS,
        ge=1,
        le=API_TOKEN_MAX_DAYS,
        description="Days until the token stops working; null for a token that never expires.",
    )

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, scopes: list[Permission]) -> list[Permission]:
        return sorted(set(scopes))


class ApiTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it; not usable alone.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenRead):
    token: str = Field(
        description="The secret, for `Authorization: Bearer`. Shown only in this response: store it now."
    )
