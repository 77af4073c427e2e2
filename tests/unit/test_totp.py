"""TOTP codes: the ±1 step window, replay and rollback refusal, recovery-code hashing, the QR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp

from corral.auth.totp import (
    PERIOD_SECONDS,
    hash_recovery_code,
    matching_step,
    normalise_recovery_code,
    qr_svg,
)

SECRET = pyotp.random_base32()
NOW = datetime(2026, 11, 22, 12, 0, 10, tzinfo=UTC)
STEP = int(NOW.timestamp()) // PERIOD_SECONDS


def code_at(step: int) -> str:
    return pyotp.TOTP(SECRET).at(step * PERIOD_SECONDS)


def test_codes_one_step_either_side_are_accepted() -> None:
    for offset in (-1, 0, 1):
        assert matching_step(SECRET, code_at(STEP + offset), None, NOW) == STEP + offset


def test_codes_two_steps_away_are_refused() -> None:
    for offset in (-2, 2):
        candidate = code_at(STEP + offset)
        # A code that happens to repeat inside the window would be valid; don't count that.
        if candidate in {code_at(STEP + near) for near in (-1, 0, 1)}:
            continue
        assert matching_step(SECRET, candidate, None, NOW) is None


def test_a_used_step_and_older_ones_are_refused() -> None:
    assert matching_step(SECRET, code_at(STEP), STEP, NOW) is None
    assert matching_step(SECRET, code_at(STEP - 1), STEP, NOW) is None
    assert matching_step(SECRET, code_at(STEP + 1), STEP, NOW) == STEP + 1


def test_malformed_codes_are_refused_and_spaces_are_ignored() -> None:
    code = code_at(STEP)
    assert matching_step(SECRET, f"{code[:3]} {code[3:]}", None, NOW) == STEP
    assert matching_step(SECRET, "", None, NOW) is None
    assert matching_step(SECRET, "abcdef", None, NOW) is None
    assert matching_step(SECRET, code + "0", None, NOW) is None


def test_the_clock_moving_on_expires_a_code() -> None:
    later = NOW + timedelta(seconds=2 * PERIOD_SECONDS)
    assert matching_step(SECRET, code_at(STEP - 1), None, later) is None


def test_recovery_codes_hash_the_same_however_typed() -> None:
    assert normalise_recovery_code(" abcde-fghjk ") == "ABCDEFGHJK"
    assert hash_recovery_code("abcde-fghjk") == hash_recovery_code("ABCDEFGHJK")
    digest = hash_recovery_code("ABCDE-FGHJK")
    assert len(digest) == 64
    assert "ABCDE" not in digest


def test_qr_is_inline_svg_without_style_attributes() -> None:
    svg = qr_svg("otpauth://totp/Corral:a%40example.com?secret=" + SECRET + "&issuer=Corral")
    assert svg.startswith("<svg")
    assert "style=" not in svg
    assert "<?xml" not in svg
