"""The console's close codes have one table of messages (corral.consoles.errors.CLOSE_MESSAGES),
and every close the panel sends uses a code from it with a reason a close frame can carry."""

from __future__ import annotations

import ast
from pathlib import Path

from corral.consoles import errors
from corral.consoles.errors import MAX_CLOSE_REASON_BYTES, ConsoleRefused, close_reason

CONSOLES = Path(errors.__file__).parent


def _close_constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(errors).items()
        if name.startswith("CLOSE_") and isinstance(value, int) and not isinstance(value, bool)
    }


def test_every_close_code_has_a_message() -> None:
    constants = _close_constants()
    assert set(constants.values()) == set(errors.CLOSE_MESSAGES)
    assert all(message.strip() for message in errors.CLOSE_MESSAGES.values())


def test_every_close_the_console_sends_uses_a_code_of_the_table() -> None:
    """Each ``ConsoleRefused(...)`` in the console package names one of the CLOSE_ constants (a bare
    number would have no message on the page)."""
    constants = set(_close_constants())
    seen = 0
    for path in CONSOLES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ConsoleRefused":
                code = node.args[0]
                where = f"{path.name}:{node.lineno}"
                assert isinstance(code, ast.Name), where
                assert code.id in constants, where
                seen += 1
    assert seen >= 10


def test_a_reason_is_cut_on_a_character_boundary() -> None:
    assert close_reason("short") == "short"
    for text in ("a" * 300, "é" * 300, "日本" * 100, "x" + "🙂" * 100):
        cut = close_reason(text)
        assert len(cut.encode()) <= MAX_CLOSE_REASON_BYTES
        assert text.startswith(cut)
        assert len(cut.encode()) > MAX_CLOSE_REASON_BYTES - 4  # no more than one character lost
    assert len(ConsoleRefused(4502, "driver_error", "é" * 200).message.encode()) <= MAX_CLOSE_REASON_BYTES
