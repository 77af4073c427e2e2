"""Settings: environment mapping, secret checks that name the variable, demo secrets that persist."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from corral.config import ConfigError, Settings, require_secrets, secret_problems
from corral.demo.secrets import SECRETS_FILE, with_demo_secrets
from corral.kit.crypto import generate_key_spec
from corral.ops.doctor import env_name

STRONG = "x" * 8 + "3f9a7c1e5b2d4f6a8c0e2b4d6f8a0c1e"


def settings_with(secret_key: str, audit_key: str, **extra: object) -> Settings:
    keys = generate_key_spec()
    return Settings(
        security={"secret_key": secret_key, "audit_key": audit_key, "encryption_keys": keys},  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def test_nested_sections_come_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_WEB__PORT", "9123")
    monkeypatch.setenv("CORRAL_DATABASE_URL", "postgresql://u:p@db.internal/corral")
    monkeypatch.setenv("CORRAL_SECURITY__AUDIT_KEY", STRONG)
    settings = Settings()
    assert settings.web.port == 9123
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith("/corral")
    assert settings.security.audit_key.get_secret_value() == STRONG
    assert not settings.uses_embedded_database


def test_blank_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", "  ")
    assert Settings().uses_embedded_database


def test_invalid_value_is_a_validation_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_WEB__PORT", "eighty")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert env_name(caught.value.errors()[0]["loc"]) == "CORRAL_WEB__PORT"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "is not set"),
        ("changeme", "placeholder"),
        ("CHANGE-ME", "placeholder"),
        ("<your secret here>", "placeholder"),
        ("short-but-random-9f", "too short"),
    ],
)
def test_unusable_secret_stops_startup_naming_the_variable(value: str, complaint: str) -> None:
    settings = settings_with(secret_key=STRONG, audit_key=value)
    problems = secret_problems(settings)
    assert len(problems) == 1
    assert problems[0].startswith("CORRAL_SECURITY__AUDIT_KEY")
    assert complaint in problems[0]
    with pytest.raises(ConfigError) as caught:
        require_secrets(settings)
    assert "CORRAL_SECURITY__AUDIT_KEY" in str(caught.value)


def test_strong_secrets_pass() -> None:
    require_secrets(settings_with(secret_key=STRONG, audit_key=STRONG[::-1]))


def test_demo_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(demo=True, data_dir=tmp_path)
    first = with_demo_secrets(settings)
    second = with_demo_secrets(settings)
    assert secret_problems(first) == []
    assert first.security.audit_key.get_secret_value() == second.security.audit_key.get_secret_value()
    mode = stat.S_IMODE((tmp_path / SECRETS_FILE).stat().st_mode)
    assert mode == 0o600


def test_demo_keeps_a_secret_the_operator_set(tmp_path: Path) -> None:
    settings = Settings(demo=True, data_dir=tmp_path).model_copy()
    security = settings.security.model_copy(update={"audit_key": SecretStr(STRONG)})
    chosen = with_demo_secrets(settings.model_copy(update={"security": security}))
    assert chosen.security.audit_key.get_secret_value() == STRONG


def test_malformed_encryption_keys_are_named() -> None:
    settings = Settings(
        security={  # type: ignore[arg-type]
            "secret_key": STRONG,
            "audit_key": STRONG[::-1],
            "encryption_keys": "k1:" + "x" * 40,
        }
    )
    [problem] = secret_problems(settings)
    assert problem.startswith("CORRAL_SECURITY__ENCRYPTION_KEYS: key 'k1' must be 32 bytes")


def test_cancellation_delays_are_worded_as_configured() -> None:
    from corral.config import ServersSettings

    default = ServersSettings()
    assert (default.grace_period_text, default.immediate_delay_text) == ("30 days", "5 minutes")
    short = ServersSettings(grace_days=1, immediate_delay_seconds=90)
    assert (short.grace_period_text, short.immediate_delay_text) == ("1 day", "90 seconds")
    assert ServersSettings(immediate_delay_seconds=0).immediate_delay_text == "0 seconds"
