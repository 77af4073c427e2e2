"""Secrets for demo mode, generated once and kept in the data directory.

They must survive restarts: a new audit key on every start would make the existing audit chain
fail verification.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from corral.config import SECRET_FIELDS, Settings, secret_problem
from corral.kit.crypto import generate_key_spec

SECRETS_FILE = "demo-secrets.json"


def _write_private(path: Path, data: dict[str, str]) -> None:
    """Write a file only its owner can read, without a window where it is world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def load_private_json(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(key): str(value) for key, value in data.items()}


def with_demo_secrets(settings: Settings) -> Settings:
    """Settings whose unset secrets are filled from (or generated into) the data directory."""
    path = settings.data_dir / SECRETS_FILE
    stored = load_private_json(path)
    changed = False
    values: dict[str, SecretStr] = {}
    for field, variable in SECRET_FIELDS.items():
        configured: SecretStr = getattr(settings.security, field)
        if secret_problem(variable, configured.get_secret_value()) is None:
            continue  # the operator set a real one; keep it
        if field not in stored:
            stored[field] = (
                generate_key_spec("demo") if field == "encryption_keys" else secrets.token_urlsafe(48)
            )
            changed = True
        values[field] = SecretStr(stored[field])
    if changed:
        _write_private(path, stored)
    security = settings.security.model_copy(update=values)
    return settings.model_copy(update={"security": security})


def write_private_json(path: Path, data: dict[str, str]) -> None:
    _write_private(path, data)
