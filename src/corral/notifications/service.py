"""Outgoing email: queue a message in the caller's transaction, render and send it from a job.

::

    from corral.notifications.service import absolute_url, mailer

    link = absolute_url(settings_of(session), "/verify-email", query={"token": token})
    await mailer.queue(session, to=user.email, template="verify_email",
                       context={"link": link, "name": user.name})

The row and its ``notifications.send_email`` job are written in the caller's transaction, so the
email exists if and only if the change that caused it commits. Queueing renders the message once
to refuse, at the caller, a context that does not fit the template; the job renders it again to
send. Links in a context must be built with :func:`absolute_url` from ``settings.web.public_url``,
never from a request's Host header, and queueing refuses any other (see ``schemas.py``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from sqlalchemy.ext.asyncio import AsyncSession

from corral.config import Settings
from corral.db.session import settings_of
from corral.jobs.service import job_service
from corral.kit.errors import NotFound
from corral.kit.logging import get_logger
from corral.models.email import EmailMessage, EmailStatus
from corral.notifications import repository, smtp
from corral.notifications.errors import (
    InvalidEmailAddress,
    InvalidEmailContext,
    InvalidEmailSubject,
    PermanentSmtpError,
    TransientSmtpError,
    UnknownEmailTemplate,
)
from corral.notifications.schemas import (
    RESERVED_KEYS,
    TEMPLATES,
    DeliveryOutcome,
    EmailMessageRead,
    EmailTemplate,
    RenderedEmail,
)

SEND_TASK = "notifications.send_email"
APP_NAME = "Corral"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "web" / "templates"
EMAIL_FOLDER = "email"
MAX_SUBJECT_LENGTH = 300  # email_messages.subject
MAX_LINK_LENGTH = 2000
# The product's colours (web/static/css/corral.css, dark theme) as plain hex: email clients know
# neither CSS variables nor rgb() with alpha, and glass becomes a solid panel.
COLORS: Mapping[str, str] = {
    "bg": "#060a13",
    "panel": "#111a2b",
    "panel_border": "#1f2a40",
    "text": "#e7ecf5",
    "muted": "#9aa6bd",
    "faint": "#6b7891",
    "heading": "#f5f8fd",
    "brand": "#2dd4bf",
    "brand_2": "#38bdf8",
    "accent": "#818cf8",
    "on_brand": "#04111a",
    "warning": "#fbbf24",
    "danger": "#f87171",
}

log = get_logger("corral.notifications")

_UNSAFE_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f\\]")


def absolute_url(settings: Settings, path: str, *, query: Mapping[str, str] | None = None) -> str:
    """``settings.web.public_url`` + ``path`` (+ ``?query``): the only way to build a link for an email.

    ``path`` is an absolute path on the panel ("/verify-email"); a full URL, a scheme-relative
    "//host" or anything with whitespace or control characters is refused, so the link always
    points at the configured panel whatever the request that caused the email looked like.
    """
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise ValueError("absolute_url needs a path on the panel starting with a single '/'")
    if _UNSAFE_URL_CHARS.search(path):
        raise ValueError("absolute_url: the path holds whitespace, a control character or a backslash")
    url = settings.web.public_url + path
    if query:
        url += ("&" if "?" in path else "?") + urlencode(dict(query))
    return url


def _is_panel_link(value: object, settings: Settings) -> bool:
    if not isinstance(value, str) or len(value) > MAX_LINK_LENGTH or _UNSAFE_URL_CHARS.search(value):
        return False
    base = settings.web.public_url
    return value == base or value.startswith((f"{base}/", f"{base}?"))


# ---------------------------------------------------------------- rendering


def _format_when(value: object) -> str:
    """An ISO 8601 time with a zone as "14 March 2025 at 10:30 UTC"."""
    if not isinstance(value, str):
        raise TypeError("times are ISO 8601 strings: pass dt.isoformat()")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("times need a time zone: pass an aware datetime's isoformat()")
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%B %Y at %H:%M} UTC"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _format_duration(value: object) -> str:
    """Whole minutes as "30 minutes", "1 hour", "24 hours", "3 days" or "1 hour 30 minutes"."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("durations are a positive whole number of minutes")
    if value % 1440 == 0 and value > 2 * 1440:
        return _plural(value // 1440, "day")
    if value < 60:
        return _plural(value, "minute")
    hours, minutes = divmod(value, 60)
    return _plural(hours, "hour") + (f" {_plural(minutes, 'minute')}" if minutes else "")


@cache
def environment() -> jinja2.Environment:
    """The Jinja environment for email, separate from the pages' one: undefined values raise
    (a missing key must not send "Hello ,"), .html is escaped, .txt is plain text."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["when"] = _format_when
    env.filters["duration"] = _format_duration
    env.globals.update(app_name=APP_NAME, colors=COLORS)
    # A global rather than an import in each template, as the pages do with their macros.
    env.globals["ui"] = env.get_template(f"{EMAIL_FOLDER}/macros.html").module
    return env


def template_spec(name: object) -> EmailTemplate:
    spec = TEMPLATES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownEmailTemplate(str(name))
    return spec


def _one_line(value: str) -> str:
    # Whitespace, CR and LF included, collapses to single spaces: a subject is one header line.
    return " ".join(value.split())


def render(spec: EmailTemplate, context: Mapping[str, Any], settings: Settings) -> RenderedEmail:
    """Render the subject, text and HTML of ``spec`` (raises ``InvalidEmailContext`` when they cannot be)."""
    values: dict[str, Any] = dict.fromkeys(spec.optional)  # absent optional keys read as None
    values.update(context)
    values["panel_url"] = settings.web.public_url
    env = environment()
    base = f"{EMAIL_FOLDER}/{spec.name}"
    try:
        subject = _one_line(env.get_template(f"{base}.subject.txt").render(values))
        text = env.get_template(f"{base}.txt").render(values)
        html = env.get_template(f"{base}.html").render(values)
    except jinja2.TemplateNotFound as error:
        raise UnknownEmailTemplate(spec.name) from error
    except (jinja2.TemplateError, TypeError, ValueError) as error:
        # The message names the key or the filter, never a value (which may be a reset link).
        raise InvalidEmailContext(f"{spec.name}: {error}") from None
    if not subject:
        raise InvalidEmailContext(f"{spec.name}: the subject rendered empty")
    return RenderedEmail(subject=subject[:MAX_SUBJECT_LENGTH], text=text, html=html)


def validate_context(spec: EmailTemplate, context: object, settings: Settings) -> dict[str, Any]:
    """The context as it will be stored (through JSON), or ``InvalidEmailContext`` saying why not."""
    if not isinstance(context, Mapping):
        raise InvalidEmailContext(f"{spec.name}: the context must be a dict")
    keys = set(context)
    if not all(isinstance(key, str) for key in keys):
        raise InvalidEmailContext(f"{spec.name}: context keys must be strings")
    problems = []
    if reserved := sorted(keys & RESERVED_KEYS):
        problems.append(f"reserved keys {reserved}")
    if missing := sorted(spec.required - keys):
        problems.append(f"missing keys {missing}")
    if unknown := sorted(keys - spec.keys - RESERVED_KEYS):
        problems.append(f"unknown keys {unknown} (it takes {sorted(spec.keys)})")
    if problems:
        raise InvalidEmailContext(f"{spec.name}: " + "; ".join(problems))
    try:
        stored: dict[str, Any] = json.loads(json.dumps(dict(context), allow_nan=False))
    except (TypeError, ValueError):
        raise InvalidEmailContext(
            f"{spec.name}: context values must be JSON (str, int, float, bool, None, list, dict); "
            "pass times as dt.isoformat()"
        ) from None
    for key, value in stored.items():
        if (key == "link" or key.endswith("_link")) and not (
            (value is None and key in spec.optional) or _is_panel_link(value, settings)
        ):
            raise InvalidEmailContext(
                f"{spec.name}: {key!r} must be built with absolute_url() from settings.web.public_url"
            )
    return stored


def _checked_subject(subject: str) -> str:
    if not isinstance(subject, str) or "\r" in subject or "\n" in subject:
        raise InvalidEmailSubject("a subject is one line of text")
    cleaned = _one_line(subject)
    if not cleaned or len(cleaned) > MAX_SUBJECT_LENGTH:
        raise InvalidEmailSubject(f"a subject has 1 to {MAX_SUBJECT_LENGTH} characters")
    return cleaned


def build_mime(message: EmailMessage, rendered: RenderedEmail, settings: Settings) -> MimeMessage:
    """multipart/alternative with the text part first (the fallback) and the HTML part last."""
    sender = smtp.envelope_sender(settings.smtp.from_address)
    domain = sender.rpartition("@")[2]
    mime = MimeMessage(policy=SMTP_POLICY)  # CRLF line ends; refuses CR/LF inside header values
    mime["From"] = settings.smtp.from_address
    mime["To"] = smtp.validate_address(message.to_address)
    mime["Subject"] = _checked_subject(message.subject)
    # Both fixed per message, so an attempt repeated after a crash carries the same Message-ID and
    # the receiving side can recognise the duplicate.
    mime["Date"] = format_datetime(message.created_at.astimezone(UTC))
    mime["Message-ID"] = f"<corral.{message.id}.{message.created_at:%Y%m%d%H%M%S%f}@{domain}>"
    # RFC 3834: machine-sent; out-of-office replies should not answer it.
    mime["Auto-Submitted"] = "auto-generated"
    mime.set_content(rendered.text)
    mime.add_alternative(rendered.html, subtype="html")
    return mime


def _helo_name(settings: Settings) -> str:
    """The name we give in EHLO: the panel's host; an IP as an address literal ("[192.0.2.1]"),
    since strict servers refuse a bare IP there."""
    host = urlsplit(settings.web.public_url).hostname or "localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"


# ---------------------------------------------------------------- the service


class Mailer:
    async def queue(
        self,
        session: AsyncSession,
        *,
        to: str,
        template: str,
        context: Mapping[str, Any],
        subject: str | None = None,
    ) -> EmailMessage:
        """Write the message and defer its sending job, both in the caller's transaction.

        Refuses (writing nothing): ``InvalidEmailAddress`` unless ``to`` is one plain address,
        ``UnknownEmailTemplate``, ``InvalidEmailContext`` (keys, JSON, links, formatting) and
        ``InvalidEmailSubject`` for a bad ``subject`` override (default: the template's subject).
        """
        settings = settings_of(session)
        address = smtp.validate_address(to)
        spec = template_spec(template)
        stored = validate_context(spec, context, settings)
        rendered = render(spec, stored, settings)
        message = EmailMessage(
            to_address=address,
            template=spec.name,
            context=stored,
            subject=_checked_subject(subject) if subject is not None else rendered.subject,
            status=EmailStatus.QUEUED.value,
        )
        repository.add(session, message)
        await session.flush()
        await session.refresh(message, ["created_at", "attempts"])  # server defaults, for callers
        await job_service.defer(session, SEND_TASK, message_id=message.id)
        log.info("email_queued", message_id=message.id, template=spec.name)
        return message

    async def deliver(
        self, session: AsyncSession, message_id: int, *, final_attempt: bool
    ) -> DeliveryOutcome:
        """One sending attempt (the job's body); records it on the row, flushes, never commits.

        A sent message is not sent again. A transient failure leaves the row queued for the next
        attempt, unless ``final_attempt``; a permanent one marks it failed.
        """
        settings = settings_of(session)
        message = await repository.get_for_update(session, message_id)
        if message is None:
            return DeliveryOutcome("missing")
        if message.status == EmailStatus.SENT.value:
            return DeliveryOutcome("already_sent")
        message.attempts += 1
        outcome: DeliveryOutcome
        try:
            rendered = render(template_spec(message.template), message.context, settings)
            mime = build_mime(message, rendered, settings)
            await smtp.send_message(
                settings.smtp,
                mime,
                recipient=message.to_address,
                local_hostname=_helo_name(settings),
            )
        except TransientSmtpError as error:
            outcome = DeliveryOutcome("failed" if final_attempt else "retry", str(error))
        except PermanentSmtpError as error:
            outcome = DeliveryOutcome("failed", str(error))
        except (UnknownEmailTemplate, InvalidEmailContext, InvalidEmailAddress, InvalidEmailSubject) as error:
            outcome = DeliveryOutcome("failed", f"the stored message cannot be sent: {error}")
        except ValueError as error:  # a header the email package refuses
            outcome = DeliveryOutcome("failed", f"the stored message cannot be sent: {error}")
        else:
            outcome = DeliveryOutcome("sent")
        # last_error is kept after a success: it tells why attempts is more than 1.
        if outcome.status == "sent":
            message.status = EmailStatus.SENT.value
            message.sent_at = datetime.now(UTC)
        else:
            message.last_error = outcome.error
            if outcome.status == "failed":
                message.status = EmailStatus.FAILED.value
        await session.flush()
        # Never the context (it can hold a reset link) nor the address.
        log.info(
            "email_attempt",
            message_id=message.id,
            template=message.template,
            attempt=message.attempts,
            outcome=outcome.status,
            error=outcome.error,
        )
        return outcome

    async def get(self, session: AsyncSession, message_id: int) -> EmailMessageRead:
        message = await repository.get(session, message_id)
        if message is None:
            raise NotFound("That email does not exist.")
        return EmailMessageRead.model_validate(message)


mailer = Mailer()
