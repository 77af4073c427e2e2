"""Panel settings as JSON, under /api/v1/admin/settings. Same service as the page.

Only ``settings:manage`` (super admins) may read or change them here; other code reads the
settings in force through ``panel_settings.current``. Errors are ``{"code", "message",
"request_id"}``; an out-of-range value is a 422 ``validation_failed`` with field ``errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from corral.auth.api import api_router
from corral.auth.deps import require
from corral.auth.principal import Principal
from corral.auth.schemas import ErrorRead
from corral.panel_settings.schemas import PanelSettings, PanelSettingsUpdate
from corral.panel_settings.service import panel_settings
from corral.rbac.permissions import Permission
from corral.web.deps import DbSession

_ERROR: dict[str, Any] = {"model": ErrorRead}
router = api_router("/api/v1/admin/settings", tag="settings", operation_prefix="settings")

Manager = Annotated[Principal, require(Permission.SETTINGS_MANAGE)]


@router.get("", response_model=PanelSettings)
async def get_settings(session: DbSession, principal: Manager) -> PanelSettings:
    """The settings in force (defaults for any never set)."""
    return await panel_settings.current(session)


@router.patch("", response_model=PanelSettings, responses={422: _ERROR})
async def update_settings(session: DbSession, principal: Manager, data: PanelSettingsUpdate) -> PanelSettings:
    """Change some settings; fields left out keep their value. Returns the settings now in force."""
    return await panel_settings.update(session, principal, data)
