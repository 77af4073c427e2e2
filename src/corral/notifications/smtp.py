"""The SMTP client: one message over one connection, as ``SmtpSettings`` say, with every failure
sorted into "try again later" or "give up".

Security choices:

- ``starttls`` *requires* the upgrade: a server that does not offer STARTTLS (or a man in the
  middle stripping it) gets nothing, rather than the message and the password in clear.
- Certificates are verified against the system's CAs (``SSL_CERT_FILE`` points elsewhere).
- Credentials are never sent over an unencrypted connection.
- Addresses are checked here as well as when queued: nothing with CR, LF, a comma or brackets can
  reach a header or the envelope, so a user-supplied address cannot add recipients or headers.

Which failures are permanent: only a 5xx reply to MAIL, RCPT or DATA, i.e. the server refused
*this* message. Everything else (no connection, timeouts, 4xx, a TLS or login problem) is either
passing or an operator's configuration to fix, so the message waits for a later attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from email.message import EmailMessage as MimeMessage
from email.utils import parseaddr

import aiosmtplib

from corral.config import SmtpSettings
from corral.notifications.errors import InvalidEmailAddress, PermanentSmtpError, TransientSmtpError

# RFC 5321: 64 octets of local part, 255 of domain, and a 256-octet path including the brackets.
MAX_ADDRESS_LENGTH = 254
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A dot-atom local part at an ASCII domain whose last label is not numeric (so "root@localhost", the
# default sender, passes and "a@127.0.0.1" does not).
# Deliberately narrower than RFC 5322 (no quoted strings, comments or display names): what is not
# here cannot smuggle a second recipient or a header line.
_ADDRESS = re.compile(
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>(?:{_LABEL}\.)*(?!\d+$){_LABEL})",
    re.ASCII,
)
# Whole-session deadline on top of aiosmtplib's per-command timeout: a server that drips one byte
# at a time must not hold a worker slot for ever.
_SESSION_TIMEOUT_FACTOR = 4


def validate_address(value: object) -> str:
    """``value`` if it is one plain address (``name@example.com``), else ``InvalidEmailAddress``."""
    if not isinstance(value, str) or len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidEmailAddress()
    match = _ADDRESS.fullmatch(value)  # fullmatch: a trailing "\n" does not slip past "$"
    if match is None or len(match["local"]) > 64:
        raise InvalidEmailAddress()
    return value


def envelope_sender(from_address: str) -> str:
    """The bare address of ``SmtpSettings.from_address`` ("Corral <no-reply@x>" → "no-reply@x")."""
    if "\r" in from_address or "\n" in from_address:
        raise TransientSmtpError("CORRAL_SMTP__FROM_ADDRESS must be a single line")
    _, address = parseaddr(from_address)
    try:
        return validate_address(address)
    except InvalidEmailAddress:
        raise TransientSmtpError(
            "CORRAL_SMTP__FROM_ADDRESS is not a valid address such as 'Corral <no-reply@example.com>'"
        ) from None


def _reply(error: aiosmtplib.SMTPResponseException) -> str:
    return f"{error.code} {error.message}".strip()


def _classify(error: Exception, *, where: str) -> TransientSmtpError | PermanentSmtpError:
    """Turn what aiosmtplib raised into our two kinds, with a message fit for a page."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refusals = error.recipients
        text = "; ".join(_reply(refusal) for refusal in refusals) or "no recipient accepted"
        codes = [refusal.code for refusal in refusals]
        if codes and all(code >= 500 for code in codes):
            return PermanentSmtpError(f"recipient refused by {where}: {text}", code=codes[0])
        return TransientSmtpError(f"recipient deferred by {where}: {text}")
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        # The reply only: the password is never part of an error message.
        return TransientSmtpError(f"{where} refused the login: {_reply(error)}; check CORRAL_SMTP__USERNAME")
    if isinstance(
        error, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError
    ):
        stage = {
            aiosmtplib.SMTPSenderRefused: "sender",
            aiosmtplib.SMTPRecipientRefused: "recipient",
            aiosmtplib.SMTPDataError: "message",
        }[type(error)]
        if error.code >= 500:
            return PermanentSmtpError(f"{stage} refused by {where}: {_reply(error)}", code=error.code)
        return TransientSmtpError(f"{stage} deferred by {where}: {_reply(error)}")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return TransientSmtpError(f"{where} answered {_reply(error)}")
    if isinstance(error, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return TransientSmtpError(f"timed out talking to {where}: {error}".rstrip(": "))
    if isinstance(error, aiosmtplib.SMTPException | OSError):  # refused, reset, TLS, no STARTTLS …
        return TransientSmtpError(f"could not deliver to {where}: {error}")
    if isinstance(error, ValueError):  # aiosmtplib refuses an address it cannot encode
        return PermanentSmtpError(f"the message cannot be sent as it is: {error}")
    return TransientSmtpError(f"unexpected error talking to {where}: {type(error).__name__}")


def _client(settings: SmtpSettings, *, local_hostname: str | None) -> aiosmtplib.SMTP:
    if settings.username and settings.security == "none":
        raise TransientSmtpError(
            "refusing to send the SMTP password over an unencrypted connection: "
            "set CORRAL_SMTP__SECURITY to starttls or tls"
        )
    password = settings.password.get_secret_value() if settings.password is not None else None
    if settings.username and not password:
        raise TransientSmtpError("CORRAL_SMTP__USERNAME is set but CORRAL_SMTP__PASSWORD is not")
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        timeout=settings.timeout_seconds,
        use_tls=settings.security == "tls",
        # True, not None: None would fall back to clear text when the server does not offer it.
        start_tls=settings.security == "starttls",
        validate_certs=True,
        username=settings.username or None,
        password=password if settings.username else None,
        # Given, so aiosmtplib does not ask the resolver for this host's FQDN on every message.
        local_hostname=local_hostname or "localhost",
    )


async def send_message(
    settings: SmtpSettings,
    message: MimeMessage,
    *,
    recipient: str,
    local_hostname: str | None = None,
) -> None:
    """Deliver ``message`` to ``recipient`` through the configured server.

    Raises ``TransientSmtpError`` (try again later) or ``PermanentSmtpError`` (give up). Returns
    once the server has accepted the message (250 after DATA); a failing QUIT after that does not
    count as a failure, since the message has been taken.
    """
    sender = envelope_sender(settings.from_address)
    recipient = validate_address(recipient)
    where = f"{settings.host}:{settings.port}"
    client = _client(settings, local_hostname=local_hostname)
    try:
        async with asyncio.timeout(settings.timeout_seconds * _SESSION_TIMEOUT_FACTOR):
            await client.connect()
            await client.send_message(message, sender=sender, recipients=[recipient])
    except BaseException as error:
        client.close()  # also on cancellation (a worker shutting down), so no socket is left open
        if isinstance(error, Exception):
            raise _classify(error, where=where) from error
        raise
    # Accepted: a slow or broken goodbye is not worth a duplicate email.
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await client.quit(timeout=min(settings.timeout_seconds, 5.0))
    client.close()
