"""Passkey ceremonies end to end against real PostgreSQL, with a software authenticator as the browser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from corral.auth.passkey_errors import (
    PasskeyAlreadyRegistered,
    PasskeyChallengeInvalid,
    PasskeyCloneSuspected,
    PasskeyNotFound,
    PasskeyRejected,
)
from corral.auth.passkeys import passkeys, user_handle
from corral.auth.principal import Principal
from corral.db.session import settings_of
from corral.kit.clock import utcnow
from corral.models.audit import AuditEvent
from corral.models.mfa import Passkey, WebAuthnChallenge
from corral.models.users import User
from corral.rbac.permissions import permissions_for
from tests.factories.users import create_user
from tests.support.authenticator import SoftwareAuthenticator, b64url, b64url_decode


def principal_of(user: User) -> Principal:
    return Principal.of(user, permissions_for(user.role))


async def register(
    db: AsyncSession, authenticator: SoftwareAuthenticator, user: User, **knobs: Any
) -> Passkey:
    options = await passkeys.registration_options(db, principal_of(user))
    response = authenticator.create(options, **knobs)
    return await passkeys.finish_registration(db, principal_of(user), response, name="Laptop")


async def audit_rows(db: AsyncSession, action: str) -> list[AuditEvent]:
    rows = await db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
    return list(rows)


async def test_registration_options_are_for_the_configured_site(db: AsyncSession) -> None:
    user = await create_user(db)
    options = await passkeys.registration_options(db, principal_of(user))

    assert options["rp"] == {"id": "panel.test", "name": "Corral"}
    handle = b64url_decode(options["user"]["id"])
    assert handle == user_handle(settings_of(db), user.id)
    assert user.email.encode() not in handle
    assert str(user.id).encode() != handle
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []
    # Only the hash of the challenge is kept.
    stored = await db.scalar(select(WebAuthnChallenge).where(WebAuthnChallenge.user_id == user.id))
    assert stored is not None
    assert stored.purpose == "register"
    assert options["challenge"] not in stored.challenge_hash
    assert timedelta(minutes=4) < stored.expires_at - utcnow() <= timedelta(minutes=5)


async def test_register_then_sign_in_with_the_passkey_alone(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    key = await register(db, authenticator, user)

    assert key.user_id == user.id
    assert key.name == "Laptop"
    assert key.sign_count == 0
    assert key.transports == ["internal", "hybrid"]
    assert key.aaguid == "00000000-0000-0000-0000-000000000000"

    # A second registration lists the first as excluded.
    again = await passkeys.registration_options(db, principal_of(user))
    assert [c["id"] for c in again["excludeCredentials"]] == [b64url(key.credential_id)]

    # Discoverable: no user is named; the credential says who it is.
    options = await passkeys.authentication_options(db)
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert options["rpId"] == "panel.test"
    signed_in = await passkeys.finish_authentication(db, authenticator.get(options))

    assert signed_in.id == user.id
    await db.refresh(key)
    assert key.sign_count == 1
    assert key.last_used_at is not None

    [registered] = await audit_rows(db, "auth.passkey.register")
    assert registered.actor_id == user.id
    assert registered.target_id == str(key.id)
    [authenticated] = await audit_rows(db, "auth.passkey.authenticate")
    assert authenticated.result == "success"
    assert authenticated.actor_id == user.id


async def test_authentication_options_for_a_known_user_list_their_credentials(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    key = await register(db, authenticator, user)

    options = await passkeys.authentication_options(db, user_id=user.id)

    assert [c["id"] for c in options["allowCredentials"]] == [b64url(key.credential_id)]
    assert (await passkeys.finish_authentication(db, authenticator.get(options))).id == user.id


async def test_counterless_authenticators_may_keep_reporting_zero(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator(backup_eligible=True)
    key = await register(db, authenticator, user)
    assert key.backup_eligible is True

    for _ in range(2):
        options = await passkeys.authentication_options(db)
        assert (
            await passkeys.finish_authentication(db, authenticator.get(options, sign_count=0))
        ).id == user.id


async def test_registration_from_another_origin_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    with pytest.raises(PasskeyRejected):
        await register(db, SoftwareAuthenticator(origin="https://evil.test"), user)
    assert await db.scalar(select(Passkey).where(Passkey.user_id == user.id)) is None


async def test_registration_without_user_verification_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    with pytest.raises(PasskeyRejected):
        await register(db, SoftwareAuthenticator(), user, user_verified=False)


async def test_registration_challenge_belongs_to_the_user_who_asked(db: AsyncSession) -> None:
    alice = await create_user(db)
    mallory = await create_user(db)
    options = await passkeys.registration_options(db, principal_of(alice))
    response = SoftwareAuthenticator().create(options)

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_registration(db, principal_of(mallory), response, name="x")


async def test_a_replayed_registration_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_registration(db, principal_of(user), authenticator.replay(), name="again")


async def test_a_credential_registered_to_someone_else_is_a_conflict(db: AsyncSession) -> None:
    alice = await create_user(db)
    bob = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, alice)
    # The same credential (a hostile client can send any bytes) presented on a fresh challenge.
    options = await passkeys.registration_options(db, principal_of(bob))
    response = authenticator.replay()
    fresh = SoftwareAuthenticator()
    fresh_response = fresh.create(options)
    response["response"]["clientDataJSON"] = fresh_response["response"]["clientDataJSON"]

    with pytest.raises(PasskeyAlreadyRegistered):
        await passkeys.finish_registration(db, principal_of(bob), response, name="stolen")


async def test_authentication_from_another_origin_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)

    with pytest.raises(PasskeyRejected) as refused:
        await passkeys.finish_authentication(db, authenticator.get(options, origin="https://evil.test"))

    assert "origin" in str(refused.value.details["reason"])
    [failure] = await audit_rows(db, "auth.passkey.authenticate")
    assert failure.result == "failure"
    assert failure.actor_id == user.id
    assert failure.reason is not None
    assert "origin" in failure.reason


async def test_a_replayed_assertion_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)
    await passkeys.finish_authentication(db, authenticator.get(options))

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_authentication(db, authenticator.replay())

    results = [row.result for row in await audit_rows(db, "auth.passkey.authenticate")]
    assert results == ["success", "failure"]


async def test_a_failed_attempt_still_uses_up_the_challenge(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)
    with pytest.raises(PasskeyRejected):
        await passkeys.finish_authentication(db, authenticator.get(options, user_verified=False))

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_authentication(db, authenticator.get(options))


@pytest.mark.parametrize("reported", [5, 4])
async def test_a_sign_count_that_does_not_increase_is_refused_as_a_clone(
    db: AsyncSession, reported: int
) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    key = await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)
    await passkeys.finish_authentication(db, authenticator.get(options, sign_count=5))

    options = await passkeys.authentication_options(db)
    with pytest.raises(PasskeyCloneSuspected) as refused:
        await passkeys.finish_authentication(db, authenticator.get(options, sign_count=reported))

    assert refused.value.details == {"reason": "sign_count_not_increased", "stored": 5, "received": reported}
    await db.refresh(key)
    assert key.sign_count == 5
    failure = (await audit_rows(db, "auth.passkey.authenticate"))[-1]
    assert failure.result == "failure"
    assert failure.reason == "sign_count_not_increased"


async def test_authentication_without_user_verification_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)

    with pytest.raises(PasskeyRejected) as refused:
        await passkeys.finish_authentication(db, authenticator.get(options, user_verified=False))
    assert "verification" in str(refused.value.details["reason"])


async def test_an_expired_challenge_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)
    # Age every outstanding challenge past its five minutes instead of waiting.
    await db.execute(update(WebAuthnChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_authentication(db, authenticator.get(options))


async def test_an_expired_registration_challenge_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    options = await passkeys.registration_options(db, principal_of(user))
    await db.execute(update(WebAuthnChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_registration(
            db, principal_of(user), SoftwareAuthenticator().create(options), name="late"
        )


async def test_an_unknown_credential_is_refused_and_audited(db: AsyncSession) -> None:
    user = await create_user(db)
    stranger = SoftwareAuthenticator()
    stranger.create(await passkeys.registration_options(db, principal_of(user)))  # never finished
    options = await passkeys.authentication_options(db)

    with pytest.raises(PasskeyRejected):
        await passkeys.finish_authentication(db, stranger.get(options))

    [failure] = await audit_rows(db, "auth.passkey.authenticate")
    assert failure.result == "failure"
    assert failure.reason == "unknown_credential"
    assert failure.actor_id is None


async def test_a_challenge_for_registration_cannot_be_used_to_sign_in(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.registration_options(db, principal_of(user))
    # Sign the registration challenge with the existing credential.
    assertion = authenticator.get({"rpId": "panel.test", "challenge": options["challenge"]})

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_authentication(db, assertion)


async def test_owners_list_rename_and_delete_their_passkeys(db: AsyncSession) -> None:
    user = await create_user(db)
    key = await register(db, SoftwareAuthenticator(), user)
    principal = principal_of(user)

    assert [k.id for k in await passkeys.list(db, principal)] == [key.id]
    renamed = await passkeys.rename(db, principal, key.id, "  Work phone  ")
    assert renamed.name == "Work phone"
    await passkeys.delete(db, principal, key.id)
    assert await passkeys.list(db, principal) == []

    assert [r.target_id for r in await audit_rows(db, "auth.passkey.rename")] == [str(key.id)]
    assert [r.target_id for r in await audit_rows(db, "auth.passkey.delete")] == [str(key.id)]


async def test_another_users_passkey_is_not_found(db: AsyncSession) -> None:
    alice = await create_user(db)
    mallory = await create_user(db)
    key = await register(db, SoftwareAuthenticator(), alice)

    with pytest.raises(PasskeyNotFound):
        await passkeys.rename(db, principal_of(mallory), key.id, "mine now")
    with pytest.raises(PasskeyNotFound):
        await passkeys.delete(db, principal_of(mallory), key.id)
    assert await passkeys.list(db, principal_of(mallory)) == []
    await db.refresh(key)
    assert key.name == "Laptop"
    assert PasskeyNotFound.status_code == 404


async def test_step_up_accepts_only_the_signed_in_users_passkey(db: AsyncSession) -> None:
    alice = await create_user(db)
    bob = await create_user(db)
    alices = SoftwareAuthenticator()
    bobs = SoftwareAuthenticator()
    await register(db, alices, alice)
    await register(db, bobs, bob)

    options = await passkeys.authentication_options(db, user_id=alice.id, purpose="step_up")
    confirmed = await passkeys.finish_authentication(db, alices.get(options), purpose="step_up")
    assert confirmed.id == alice.id

    # Bob's authenticator ignores allowCredentials and signs Alice's step-up challenge.
    options = await passkeys.authentication_options(db, user_id=alice.id, purpose="step_up")
    with pytest.raises(PasskeyRejected) as refused:
        await passkeys.finish_authentication(
            db, bobs.get({**options, "allowCredentials": []}), purpose="step_up"
        )
    assert refused.value.details["reason"] == "credential_not_for_user"


async def test_a_step_up_challenge_cannot_sign_in(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db, user_id=user.id, purpose="step_up")

    with pytest.raises(PasskeyChallengeInvalid):
        await passkeys.finish_authentication(db, authenticator.get(options))


async def test_a_user_handle_that_does_not_match_the_credential_is_refused(db: AsyncSession) -> None:
    user = await create_user(db)
    authenticator = SoftwareAuthenticator()
    await register(db, authenticator, user)
    options = await passkeys.authentication_options(db)
    assertion = authenticator.get(options)
    assertion["response"]["userHandle"] = b64url(b"someone else")

    with pytest.raises(PasskeyRejected) as refused:
        await passkeys.finish_authentication(db, assertion)
    assert refused.value.details["reason"] == "user_handle_mismatch"


async def test_a_malformed_response_is_refused_cleanly(db: AsyncSession) -> None:
    with pytest.raises(PasskeyRejected) as refused:
        await passkeys.finish_authentication(db, {"rawId": "AAAA", "response": {"clientDataJSON": "!!"}})
    assert refused.value.details["reason"] == "malformed_response"
