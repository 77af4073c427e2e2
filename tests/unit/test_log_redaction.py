"""Secrets never reach the logs: by key name, and inside URLs."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from corral.config import Settings
from corral.kit.logging import REDACTED, configure_logging, get_logger, redact_mapping


def test_secret_keys_are_redacted_at_any_depth() -> None:
    event = {
        "user": "ann",
        "password": "hunter2hunter2",
        "nested": {"api_key": "abc", "Authorization": "Bearer xyz", "count": 3},
        "items": [{"session_id": "s1"}],
    }
    cleaned = redact_mapping(event)
    assert cleaned["user"] == "ann"
    assert cleaned["password"] == REDACTED
    assert cleaned["nested"] == {"api_key": REDACTED, "Authorization": REDACTED, "count": 3}
    assert cleaned["items"] == [{"session_id": REDACTED}]


def test_counts_of_sessions_are_not_secrets() -> None:
    cleaned = redact_mapping({"session": "s", "sessionid": "s", "sessions_ended": 3, "user_session": "s"})
    assert cleaned == {
        "session": REDACTED,
        "sessionid": REDACTED,
        "sessions_ended": 3,
        "user_session": REDACTED,
    }


def test_passwords_inside_urls_are_redacted() -> None:
    cleaned = redact_mapping({"database": "postgresql://corral:s3cr3t-pw@db:5432/corral"})
    assert cleaned["database"] == f"postgresql://corral:{REDACTED}@db:5432/corral"


def test_json_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(Settings(log={"level": "INFO", "format": "json"}))  # type: ignore[arg-type]
    try:
        get_logger("test").info("connecting", url="postgresql://u:topsecret@h/db", token="tkn-123")
        logging.getLogger("thirdparty").warning("plain stdlib line")
        lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.reset_defaults()
        root.handlers, root.level = saved_handlers, saved_level
    first = lines[0]
    assert first["event"] == "connecting"
    assert "topsecret" not in json.dumps(lines)
    assert first["token"] == REDACTED
    assert lines[1]["event"] == "plain stdlib line"
    assert lines[1]["level"] == "warning"
