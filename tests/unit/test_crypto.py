"""Encryption at rest: round trips, key ids, rotation, and refusal of tampered or moved values."""

from __future__ import annotations

import pytest

from corral.kit.crypto import DecryptionFailed, Keyring, KeyringError, generate_key_spec


def test_round_trip_and_fresh_nonce_every_time() -> None:
    ring = Keyring.parse(generate_key_spec("k1"))
    first = ring.encrypt("ssh-key-material", context="node:1:credentials")
    second = ring.encrypt("ssh-key-material", context="node:1:credentials")
    assert first != second
    assert "ssh-key-material" not in first
    assert ring.decrypt(first, context="node:1:credentials") == "ssh-key-material"
    assert first.startswith("v1:k1:")


def test_a_value_moved_to_another_row_does_not_decrypt() -> None:
    ring = Keyring.parse(generate_key_spec())
    token = ring.encrypt("secret", context="node:1:credentials")
    with pytest.raises(DecryptionFailed):
        ring.decrypt(token, context="node:2:credentials")


def test_a_tampered_value_does_not_decrypt() -> None:
    ring = Keyring.parse(generate_key_spec())
    token = ring.encrypt("secret", context="c")
    head, sealed = token.rsplit(":", 1)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DecryptionFailed):
        ring.decrypt(f"{head}:{flipped}", context="c")


def test_rotation_keeps_old_values_readable_and_marks_them() -> None:
    old_spec = generate_key_spec("old")
    old_ring = Keyring.parse(old_spec)
    token = old_ring.encrypt("secret", context="c")
    rotated = Keyring.parse(f"{generate_key_spec('new')},{old_spec}")
    assert rotated.current_id == "new"
    assert rotated.decrypt(token, context="c") == "secret"
    assert rotated.needs_rotation(token)
    assert not rotated.needs_rotation(rotated.encrypt("secret", context="c"))
    with pytest.raises(DecryptionFailed, match="not configured"):
        Keyring.parse(generate_key_spec("new")).decrypt(token, context="c")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "no keys"),
        ("justakey", "id:base64key"),
        ("k1:c2hvcnQ", "32 bytes"),
        (f"{generate_key_spec('k1')},{generate_key_spec('k1')}", "twice"),
    ],
)
def test_malformed_key_lists_are_refused_without_echoing_keys(spec: str, problem: str) -> None:
    with pytest.raises(KeyringError, match=problem) as caught:
        Keyring.parse(spec)
    for part in spec.split(","):
        secret = part.partition(":")[2]
        if len(secret) > 8:
            assert secret not in str(caught.value)
