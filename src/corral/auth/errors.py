from __future__ import annotations

from corral.kit.errors import Forbidden, NotFound, PanelError


class NotAuthenticated(PanelError):
    status_code = 401
    code = "not_authenticated"
    default_message = "Sign in to continue."


class InvalidBearerToken(NotAuthenticated):
    """An ``Authorization: Bearer`` token that matches no live token. Answered with a 401 on pages
    too (web/errors.py): a sign-in redirect cannot help while the client keeps sending the header."""

    code = "invalid_token"
    default_message = "The API token is invalid, expired or revoked."


class CsrfRejected(Forbidden):
    code = "csrf_rejected"
    default_message = "This form has expired or came from another site. Reload the page and try again."


class MissingPermission(Forbidden):
    code = "missing_permission"
    default_message = "Your account does not have permission to do that."


class SecondFactorRequired(MissingPermission):
    """The panel requires customers to have a second factor and this account has none yet: until it
    sets one up, its sessions and its API tokens reach only the account and security pages."""

    code = "second_factor_required"
    default_message = (
        "This panel requires two-step sign-in. Set up an authenticator app or a passkey under "
        "Account → Security first; until then only your account and security settings are available."
    )


class ElevationWithheld(MissingPermission):
    code = "passkey_sign_in_required"
    default_message = (
        "Staff tools need a sign-in with a passkey: you signed in with a password, so this session "
        "has customer access only. Sign out and sign in with your passkey."
    )


class SessionNotFound(NotFound):
    code = "session_not_found"
    default_message = "That session does not exist or has already ended."


class TokenInvalid(PanelError):
    status_code = 400
    code = "token_invalid"
    default_message = "This link is invalid, expired or has already been used."
