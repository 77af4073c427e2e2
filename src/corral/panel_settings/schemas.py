"""The panel settings: their names, types, limits and defaults, in one place.

Each field of :class:`PanelSettings` is one row of ``panel_settings`` (key = field name, value =
JSON). A missing row, or one whose stored value no longer fits the field, reads as the default,
so adding a setting needs no migration and a bad row never stops the panel.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MIN_SERVER_LIMIT = 1
MAX_SERVER_LIMIT = 1000

ServerLimit = Annotated[
    int,
    Field(
        ge=MIN_SERVER_LIMIT,
        le=MAX_SERVER_LIMIT,
        description="How many servers one customer may have at a time (1-1000).",
    ),
]


class PanelSettings(BaseModel):
    """The settings in force. Read with ``panel_settings.current(session)``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    require_customer_2fa: bool = Field(
        default=False, description="Customers must set up two-step sign-in before using the panel."
    )
    customer_server_limit: ServerLimit = 5


class PanelSettingsUpdate(BaseModel):
    """Settings to change; a field left out (or null) keeps its value."""

    model_config = ConfigDict(extra="forbid")

    require_customer_2fa: bool | None = None
    customer_server_limit: ServerLimit | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


SETTING_KEYS: tuple[str, ...] = tuple(PanelSettings.model_fields)
