"""The panel settings: their names, types, limits and defaults, in one place.

Each field of :class:`PanelSettings` is one row of ``panel_settings`` (key = field name, value =
JSON). A missing row, or one whose stored value no longer fits the field, reads as the default,
so adding a setting needs no migration and a bad row never stops the panel.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

MIN_SERVER_LIMIT = 1
MAX_SERVER_LIMIT = 1000
MIN_UNFINISHED_DAYS = 1
MAX_UNFINISHED_DAYS = 365

ServerLimit = Annotated[
    int,
    Field(
        ge=MIN_SERVER_LIMIT,
        le=MAX_SERVER_LIMIT,
        description="How many servers one customer may have at a time (1-1000).",
    ),
]
UnfinishedOrderDays = Annotated[
    int,
    Field(
        ge=MIN_UNFINISHED_DAYS,
        le=MAX_UNFINISHED_DAYS,
        description=(
            "Days a server may wait for its setup (OS choice) before its order is released: its "
            "resources and IP addresses go back to the pool and the server is deleted (1-365). The "
            "owner is emailed 24 hours before (half the period, if that is shorter), and an order "
            "is never released less than that long after the email."
        ),
    ),
]


class PanelSettings(BaseModel):
    """The settings in force. Read with ``panel_settings.current(session)``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    require_customer_2fa: bool = Field(
        default=False, description="Customers must set up two-step sign-in before using the panel."
    )
    customer_server_limit: ServerLimit = 5
    unfinished_order_days: UnfinishedOrderDays = 7


class PanelSettingsUpdate(BaseModel):
    """Settings to change; a field left out (or null) keeps its value."""

    model_config = ConfigDict(extra="forbid")

    # Strict: JSON `"yes"`, `1` or `"true"` is an error, not a yes (the form maps its checkbox first).
    require_customer_2fa: StrictBool | None = None
    customer_server_limit: ServerLimit | None = None
    unfinished_order_days: UnfinishedOrderDays | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


SETTING_KEYS: tuple[str, ...] = tuple(PanelSettings.model_fields)
