"""Passkeys (WebAuthn): the server side of the registration and authentication ceremonies.

    options = await passkeys.registration_options(session, principal)   # -> navigator.credentials.create
    key = await passkeys.finish_registration(session, principal, response_json, name="Laptop")
    options = await passkeys.authentication_options(session)            # -> navigator.credentials.get
    user = await passkeys.finish_authentication(session, response_json)

The relying party id and the expected origin come from ``settings.web.public_url``, never from the
request, so a proxy or a forged Host header cannot make the panel accept another site's responses.
Challenges are stored only as sha256 hashes, live five minutes and are consumed by the first
response that names them, whether it verifies or not.

An operator's or super-admin's *first* passkey is refused unless it comes with a live enrolment
link of theirs (``auth.enrolment``): a password, even stepped up, must never become staff access.
Every added or removed passkey emails the account's owner (``auth.factor_notices``).

A failed ``finish_authentication`` records a failure audit event and consumes the challenge before
raising; the caller must commit that work (catch ``PasskeyRejected``, commit, re-raise) or an
attacker's failures leave no trace.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from corral.audit import Target, audit
from corral.auth import repository
from corral.auth.factor_notices import FactorChange, notify_factor_change
from corral.auth.passkey_errors import (
    PasskeyAlreadyRegistered,
    PasskeyChallengeInvalid,
    PasskeyCloneSuspected,
    PasskeyEnrolmentLinkRequired,
    PasskeyNotFound,
    PasskeyRejected,
)
from corral.auth.principal import Principal
from corral.config import Settings
from corral.db.session import settings_of
from corral.kit.actors import Actor
from corral.kit.clock import utcnow
from corral.models.mfa import Passkey, PasskeyEnrolmentLink, WebAuthnChallenge
from corral.models.users import User
from corral.rbac.permissions import PASSKEY_ONLY_ROLES

CHALLENGE_TTL = timedelta(minutes=5)
# The browser's own timeout; shorter than the stored challenge's life so the prompt ends first.
CEREMONY_TIMEOUT_MS = 4 * 60 * 1000
RP_NAME = "Corral"
MAX_NAME = 100
_KNOWN_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}


def relying_party(settings: Settings) -> tuple[str, str]:
    """(rp id, expected origin) from the configured public URL."""
    parts = urlsplit(settings.web.public_url)
    if not parts.hostname:
        raise RuntimeError("web.public_url has no host; passkeys need one")
    return parts.hostname, f"{parts.scheme}://{parts.netloc}"


def user_handle(settings: Settings, user_id: int) -> bytes:
    """The opaque WebAuthn user id: stable for a user, reveals neither the id nor the email."""
    key = settings.security.secret_key.get_secret_value().encode()
    return hmac.new(key, f"webauthn-user-handle:{user_id}".encode(), hashlib.sha256).digest()


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _challenge_hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _response_challenge(response_json: dict[str, Any]) -> bytes:
    """The challenge the browser signed, read from clientDataJSON (verified again by py_webauthn)."""
    try:
        client_data = json.loads(_b64url_decode(response_json["response"]["clientDataJSON"]))
        challenge = _b64url_decode(client_data["challenge"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise PasskeyRejected(details={"reason": "malformed_response"}) from exc
    return challenge


def _credential_id(response_json: dict[str, Any]) -> bytes:
    try:
        raw_id = response_json["rawId"]
        if not isinstance(raw_id, str):
            raise TypeError("rawId is not a string")
        return _b64url_decode(raw_id)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise PasskeyRejected(details={"reason": "malformed_response"}) from exc


def _transports(response_json: dict[str, Any]) -> list[str]:
    """The browser's getTransports(), kept only as hints; unknown values are dropped."""
    inner = response_json.get("response")
    raw = inner.get("transports", []) if isinstance(inner, dict) else []
    if not isinstance(raw, list):
        return []
    return [t for t in raw if isinstance(t, str) and t in _KNOWN_TRANSPORTS]


def _live_for(link: PasskeyEnrolmentLink, user_id: int) -> bool:
    return (
        link.user_id == user_id
        and link.used_at is None
        and link.revoked_at is None
        and link.expires_at > utcnow()
    )


class PasskeyService:
    # -- challenges ---------------------------------------------------------------------------

    async def _new_challenge(self, session: AsyncSession, purpose: str, user_id: int | None) -> bytes:
        challenge = secrets.token_bytes(32)
        session.add(
            WebAuthnChallenge(
                challenge_hash=_challenge_hash(challenge),
                purpose=purpose,
                user_id=user_id,
                expires_at=utcnow() + CHALLENGE_TTL,
            )
        )
        await session.flush()
        return challenge

    async def _consume_challenge(
        self, session: AsyncSession, challenge: bytes, purpose: str, user_id: int | None
    ) -> WebAuthnChallenge:
        """Mark the challenge used, atomically, or refuse: single use even under concurrent posts."""
        now = utcnow()
        conditions = [
            WebAuthnChallenge.challenge_hash == _challenge_hash(challenge),
            WebAuthnChallenge.purpose == purpose,
            WebAuthnChallenge.used_at.is_(None),
            WebAuthnChallenge.expires_at > now,
        ]
        if user_id is not None:
            # A registration challenge is bound to the account that asked for it.
            conditions.append(WebAuthnChallenge.user_id == user_id)
        consumed = await session.execute(
            update(WebAuthnChallenge)
            .where(*conditions)
            .values(used_at=now)
            .returning(WebAuthnChallenge)
            .execution_options(synchronize_session=False)
        )
        row = consumed.scalar_one_or_none()
        if row is None:
            raise PasskeyChallengeInvalid(details={"reason": "challenge_invalid"})
        return row

    # -- registration -------------------------------------------------------------------------

    async def _may_register(
        self, session: AsyncSession, principal: Principal, enrolment_link: PasskeyEnrolmentLink | None
    ) -> None:
        """Refuse an operator's or super-admin's *first* passkey unless it comes with a live
        enrolment link of theirs (seed 003: a password, even with a password step-up, must never
        turn into staff access). Later passkeys need a passkey step-up, checked by the route.

        The refusal is audited and flushed before raising; callers return it as an answer so the
        request commits the record.
        """
        if principal.role not in PASSKEY_ONLY_ROLES:
            return
        if enrolment_link is not None and _live_for(enrolment_link, principal.user_id):
            return
        if await repository.passkey_count(session, principal.user_id) > 0:
            return
        await audit.record(
            session,
            principal.actor,
            "auth.passkey.register",
            target=Target(type="user", id=principal.user_id),
            payload={"user_id": principal.user_id},
            result="failure",
            reason="enrolment_link_required",
        )
        raise PasskeyEnrolmentLinkRequired()

    async def registration_options(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        enrolment_link: PasskeyEnrolmentLink | None = None,
    ) -> dict[str, Any]:
        """Options for navigator.credentials.create. An operator's or super-admin's first passkey
        needs ``enrolment_link`` (a live link of theirs, see auth.enrolment)."""
        await self._may_register(session, principal, enrolment_link)
        settings = settings_of(session)
        rp_id, _ = relying_party(settings)
        existing = await self._credentials_of(session, principal.user_id)
        challenge = await self._new_challenge(session, "register", principal.user_id)
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=RP_NAME,
            user_id=user_handle(settings, principal.user_id),
            user_name=principal.email,
            user_display_name=principal.name or principal.email,
            challenge=challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                require_resident_key=True,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            # Stops the browser from registering the same authenticator twice.
            exclude_credentials=[
                PublicKeyCredentialDescriptor(
                    id=key.credential_id,
                    transports=[AuthenticatorTransport(t) for t in key.transports if t in _KNOWN_TRANSPORTS],
                )
                for key in existing
            ],
        )
        return dict(options_to_json_dict(options))

    async def finish_registration(
        self,
        session: AsyncSession,
        principal: Principal,
        response_json: dict[str, Any],
        name: str,
        *,
        enrolment_link: PasskeyEnrolmentLink | None = None,
    ) -> Passkey:
        """Verify the browser's new credential and store it; the owner is emailed about it.

        The enrolment link (if any) is the caller's to spend, in the same transaction.
        """
        await self._may_register(session, principal, enrolment_link)
        settings = settings_of(session)
        rp_id, origin = relying_party(settings)
        name = name.strip()[:MAX_NAME] or "Passkey"
        challenge = _response_challenge(response_json)
        await self._consume_challenge(session, challenge, "register", principal.user_id)
        try:
            verified = verify_registration_response(
                credential=response_json,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            raise PasskeyRejected(details={"reason": str(exc)}) from exc

        taken = await session.scalar(
            select(Passkey.id).where(Passkey.credential_id == verified.credential_id)
        )
        if taken is not None:
            raise PasskeyAlreadyRegistered()
        key = Passkey(
            user_id=principal.user_id,
            name=name,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=_transports(response_json),
            aaguid=verified.aaguid,
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        )
        try:
            # A savepoint, so a concurrent registration of the same credential is a clean 409.
            async with session.begin_nested():
                session.add(key)
                await session.flush()
        except IntegrityError as exc:
            raise PasskeyAlreadyRegistered() from exc
        await audit.record(
            session,
            principal.actor,
            "auth.passkey.register",
            target=Target(type="passkey", id=key.id),
            payload={
                "name": key.name,
                "aaguid": key.aaguid,
                "user_id": principal.user_id,
                "enrolment_link": enrolment_link.id if enrolment_link is not None else None,
            },
        )
        await notify_factor_change(session, principal.user, FactorChange.PASSKEY_ADDED, detail=key.name)
        return key

    # -- authentication -----------------------------------------------------------------------

    async def authentication_options(
        self, session: AsyncSession, *, user_id: int | None = None, purpose: str = "authenticate"
    ) -> dict[str, Any]:
        """Options for navigator.credentials.get.

        Without ``user_id`` the ceremony is discoverable (empty allowCredentials): the browser
        offers the passkeys it holds for this site and the credential says who the user is.
        ``purpose="step_up"`` with a ``user_id`` is for re-confirming a signed-in user.
        """
        if purpose not in ("authenticate", "step_up"):
            raise ValueError(f"unknown passkey ceremony purpose {purpose!r}")
        if purpose == "step_up" and user_id is None:
            raise ValueError("a step-up ceremony is for one signed-in user; pass user_id")
        rp_id, _ = relying_party(settings_of(session))
        allow: list[PublicKeyCredentialDescriptor] = []
        if user_id is not None:
            allow = [
                PublicKeyCredentialDescriptor(
                    id=key.credential_id,
                    transports=[AuthenticatorTransport(t) for t in key.transports if t in _KNOWN_TRANSPORTS],
                )
                for key in await self._credentials_of(session, user_id)
            ]
        challenge = await self._new_challenge(session, purpose, user_id)
        options = generate_authentication_options(
            rp_id=rp_id,
            challenge=challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            allow_credentials=allow,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return dict(options_to_json_dict(options))

    async def finish_authentication(
        self, session: AsyncSession, response_json: dict[str, Any], *, purpose: str = "authenticate"
    ) -> User:
        """The user whose passkey signed the challenge; ``PasskeyRejected`` (or a subclass) if not.

        The failure audit event and the consumed challenge are flushed before the error is raised.
        """
        if purpose not in ("authenticate", "step_up"):
            raise ValueError(f"unknown passkey ceremony purpose {purpose!r}")
        key: Passkey | None = None
        try:
            credential_id = _credential_id(response_json)
            key = await session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))
            challenge = _response_challenge(response_json)
            issued = await self._consume_challenge(session, challenge, purpose, None)
            if key is None:
                raise PasskeyRejected(details={"reason": "unknown_credential"})
            # Options issued for one user (step-up, or a sign-in that named the account) accept only
            # that user's credentials; discoverable options (no user) accept any registered one.
            if issued.user_id is not None and issued.user_id != key.user_id:
                raise PasskeyRejected(details={"reason": "credential_not_for_user"})
            user = await self._verify_assertion(session, key, response_json, challenge)
        except PasskeyRejected as exc:
            await self._audit_authentication(session, key, result="failure", reason=exc.details.get("reason"))
            raise
        await self._audit_authentication(session, key, result="success", reason=None)
        return user

    async def _verify_assertion(
        self, session: AsyncSession, key: Passkey, response_json: dict[str, Any], challenge: bytes
    ) -> User:
        settings = settings_of(session)
        rp_id, origin = relying_party(settings)
        user = await session.get(User, key.user_id)
        if user is None:  # pragma: no cover - the foreign key cascades
            raise PasskeyRejected(details={"reason": "unknown_credential"})
        # A discoverable credential returns the handle it was created with; it must be this user's.
        try:
            handle = response_json["response"].get("userHandle")
            handle_bytes = _b64url_decode(handle) if handle else None
        except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise PasskeyRejected(details={"reason": "malformed_response"}) from exc
        if handle_bytes is not None and not hmac.compare_digest(handle_bytes, user_handle(settings, user.id)):
            raise PasskeyRejected(details={"reason": "user_handle_mismatch"})
        try:
            # The counter is checked below rather than by py_webauthn (current count 0 disables its
            # check) so a cloned authenticator gets its own error, after the signature verified.
            verified = verify_authentication_response(
                credential=response_json,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=key.public_key,
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            raise PasskeyRejected(details={"reason": str(exc)}) from exc
        # Authenticators without a counter (most synced passkeys) always report 0; once a credential
        # has counted, a count that does not increase means two copies of the key exist.
        if key.sign_count > 0 and verified.new_sign_count <= key.sign_count:
            raise PasskeyCloneSuspected(
                details={
                    "reason": "sign_count_not_increased",
                    "stored": key.sign_count,
                    "received": verified.new_sign_count,
                }
            )
        key.sign_count = verified.new_sign_count
        key.last_used_at = utcnow()
        await session.flush()
        return user

    async def _audit_authentication(
        self, session: AsyncSession, key: Passkey | None, *, result: str, reason: object
    ) -> None:
        user = await session.get(User, key.user_id) if key is not None else None
        actor = (
            Actor.user(user.id, user.email, user.role)
            if user is not None
            else Actor(kind="user", label="unknown:passkey")
        )
        payload: dict[str, Any] = {"passkey_id": key.id if key is not None else None}
        await audit.record(
            session,
            actor,
            "auth.passkey.authenticate",
            target=Target(type="user", id=user.id) if user is not None else None,
            payload=payload,
            result="success" if result == "success" else "failure",
            reason=str(reason)[:500] if reason is not None else None,
        )

    # -- management ---------------------------------------------------------------------------

    async def _credentials_of(self, session: AsyncSession, user_id: int) -> list[Passkey]:
        rows = await session.scalars(
            select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at, Passkey.id)
        )
        return list(rows)

    async def list(self, session: AsyncSession, principal: Principal) -> list[Passkey]:
        return await self._credentials_of(session, principal.user_id)

    async def _owned(self, session: AsyncSession, principal: Principal, passkey_id: int) -> Passkey:
        key = await session.scalar(
            select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == principal.user_id)
        )
        if key is None:
            # Another user's passkey looks exactly like a missing one.
            raise PasskeyNotFound()
        return key

    async def rename(
        self, session: AsyncSession, principal: Principal, passkey_id: int, name: str
    ) -> Passkey:
        key = await self._owned(session, principal, passkey_id)
        old = key.name
        key.name = name.strip()[:MAX_NAME] or old
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "auth.passkey.rename",
            target=Target(type="passkey", id=key.id),
            payload={"from": old, "to": key.name},
        )
        return key

    async def delete(self, session: AsyncSession, principal: Principal, passkey_id: int) -> None:
        key = await self._owned(session, principal, passkey_id)
        await audit.record(
            session,
            principal.actor,
            "auth.passkey.delete",
            target=Target(type="passkey", id=key.id),
            payload={"name": key.name},
        )
        name = key.name
        await session.delete(key)
        await session.flush()
        await notify_factor_change(session, principal.user, FactorChange.PASSKEY_REMOVED, detail=name)


passkeys = PasskeyService()
