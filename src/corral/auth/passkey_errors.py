"""Errors of the passkey (WebAuthn) ceremonies, each with a stable code for the browser script."""

from __future__ import annotations

from corral.kit.errors import Conflict, Forbidden, NotFound, PanelError


class PasskeyRejected(PanelError):
    """The browser's response did not verify; ``details["reason"]`` says why (for logs, not users)."""

    status_code = 400
    code = "passkey_rejected"
    default_message = "That passkey could not be verified. Try again."


class PasskeyChallengeInvalid(PasskeyRejected):
    code = "passkey_challenge_invalid"
    default_message = "This passkey prompt has expired or was already used. Start again."


class PasskeyCloneSuspected(PasskeyRejected):
    code = "passkey_clone_suspected"
    default_message = (
        "This passkey's signature counter went backwards, which suggests it was copied. "
        "It was refused; remove it and register a new one."
    )


class PasskeyAlreadyRegistered(Conflict):
    code = "passkey_already_registered"
    default_message = "That passkey is already registered."


class PasskeyNotFound(NotFound):
    code = "passkey_not_found"
    default_message = "That passkey does not exist."


class PasskeyEnrolmentLinkRequired(Forbidden):
    """A privileged account without a passkey tried the ordinary "add a passkey" route."""

    code = "passkey_enrolment_link_required"
    default_message = (
        "Operator and super-admin accounts add their first passkey only through the single-use "
        "enrolment link sent to their verified email (or handed over by a super-admin): a password "
        "alone must never be enough for staff access. Open that link while signed in, or ask a "
        "super-admin for a new one."
    )


class EnrolmentLinkInvalid(PanelError):
    status_code = 400
    code = "enrolment_link_invalid"
    default_message = (
        "This passkey enrolment link is invalid, has expired (links work for one hour), was already "
        "used or was replaced by a newer one. Ask a super-admin for a new link."
    )


class EnrolmentLinkForAnotherAccount(Forbidden):
    code = "enrolment_link_other_account"
    default_message = (
        "This passkey enrolment link belongs to another account. Sign out, sign in with the "
        "password of the account it was sent to, and open the link again."
    )


class EnrolmentNotNeeded(Conflict):
    code = "enrolment_not_needed"
    default_message = (
        "This account already has a passkey: more are added under Account → Security → Passkeys, "
        "confirmed with an existing passkey."
    )


class EnrolmentNotApplicable(Conflict):
    code = "enrolment_not_applicable"
    default_message = (
        "Enrolment links are only for active operator and super-admin accounts that have no "
        "passkey yet; everyone else adds passkeys under Account → Security → Passkeys."
    )


class EnrolmentEmailUnverified(Conflict):
    code = "enrolment_email_unverified"
    default_message = (
        "This account's email address is not verified, so no enrolment link was emailed. Issue a "
        "link to hand over in person instead."
    )
