"""Expected refusals of the panel settings operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import ValidationFailed


class InvalidPanelSettings(ValidationFailed):
    code = "invalid_panel_settings"
    default_message = "Those settings are not valid."
