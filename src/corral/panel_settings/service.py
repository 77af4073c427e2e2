"""Panel settings: read what is in force, and let a super admin change it.

``current`` takes no principal: sign-in (the customer 2FA requirement) and server orders (the
limit) read it on behalf of whoever is asking. ``update`` needs ``settings:manage``, writes only
the keys whose value changes, and audits ``settings.update`` with the old and new values.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.kit.logging import get_logger
from corral.panel_settings import repository
from corral.panel_settings.errors import InvalidPanelSettings
from corral.panel_settings.schemas import SETTING_KEYS, PanelSettings, PanelSettingsUpdate
from corral.rbac.permissions import Permission

log = get_logger("corral.panel_settings")


def _settings(stored: dict[str, Any]) -> PanelSettings:
    """Stored values over the defaults, each checked on its own: one bad row falls back alone."""
    values: dict[str, Any] = {}
    for key, value in stored.items():
        try:
            PanelSettings.model_validate({key: value})
        except ValidationError:
            # Written by hand or by an older version: the default is safer than refusing to start.
            log.warning("panel_setting_ignored", key=key)
            continue
        values[key] = value
    return PanelSettings.model_validate(values)


class PanelSettingsService:
    async def current(self, session: AsyncSession) -> PanelSettings:
        return _settings(await repository.values(session, SETTING_KEYS))

    async def update(
        self, session: AsyncSession, principal: Principal, changes: PanelSettingsUpdate
    ) -> PanelSettings:
        if not principal.can(Permission.SETTINGS_MANAGE):
            raise MissingPermission()
        await repository.lock_for_update(session)
        before = await self.current(session)
        wanted = changes.changes()
        try:
            # Validated again as a whole, so a caller that built the update without validation
            # (model_construct) still cannot store an out-of-range value.
            after = PanelSettings.model_validate({**before.model_dump(), **wanted})
        except ValidationError as error:
            fields = sorted({str(item["loc"][0]) for item in error.errors() if item.get("loc")})
            raise InvalidPanelSettings(details={"fields": fields}) from None
        changed = {key: getattr(after, key) for key in wanted if getattr(before, key) != getattr(after, key)}
        if not changed:
            return before
        for key, value in changed.items():
            await repository.upsert(session, key, value, principal.user_id)
        await audit.record(
            session,
            principal.actor,
            "settings.update",
            payload={"before": {key: getattr(before, key) for key in changed}, "after": changed},
        )
        return after


panel_settings = PanelSettingsService()
