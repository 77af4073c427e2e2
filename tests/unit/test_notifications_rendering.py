"""Email templates, context rules, links, addresses and the MIME message, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage as MimeMessage
from email.policy import default as default_policy
from typing import Any

import pytest

from corral.config import Settings
from corral.models.email import EmailMessage
from corral.notifications.errors import (
    InvalidEmailAddress,
    InvalidEmailContext,
    InvalidEmailSubject,
    TransientSmtpError,
    UnknownEmailTemplate,
)
from corral.notifications.schemas import TEMPLATES, RenderedEmail
from corral.notifications.service import (
    EMAIL_FOLDER,
    TEMPLATES_DIR,
    absolute_url,
    build_mime,
    render,
    template_spec,
    validate_context,
)
from corral.notifications.smtp import envelope_sender, validate_address
from corral.notifications.tasks import SEND_RETRY

SETTINGS = Settings(web={"public_url": "https://panel.example.com"})
LINK = "https://panel.example.com/account/confirm?token=tok-123"
UNTIL = "2031-05-06T07:08:00+02:00"

# One valid context per template, every optional key included.
SAMPLES: dict[str, dict[str, Any]] = {
    "verify_email": {"link": LINK, "name": "Ada", "valid_minutes": 1440},
    "reset_password": {"link": LINK, "name": "Ada", "valid_minutes": 30},
    "account_locked": {"name": "Ada", "until": UNTIL, "reset_link": LINK},
    "change_email": {"link": LINK, "name": "Ada", "new_email": "new@example.com", "valid_minutes": 60},
    "password_changed": {"name": "Ada", "changed_at": UNTIL, "reset_link": LINK},
    "email_changed": {"name": "Ada", "new_email": "new@example.com", "changed_at": UNTIL},
    "welcome": {"name": "Ada"},
    "unfinished_order": {
        "link": LINK,
        "name": "Ada",
        "server_name": "web-1",
        "ordered_at": UNTIL,
        "release_at": UNTIL,
    },
    "passkey_enrolment": {"link": LINK, "name": "Ada", "role": "operator", "valid_minutes": 60},
    "second_factor_changed": {
        "name": "Ada",
        "change": "passkey_added",
        "detail": "Work laptop",
        "changed_at": UNTIL,
        "ip": "203.0.113.9",
        "security_link": "https://panel.example.com/account/security",
        "reset_link": LINK,
    },
}


def _render(template: str, /, **changes: Any) -> RenderedEmail:
    spec = template_spec(template)
    context = {**SAMPLES[template], **changes}
    return render(spec, validate_context(spec, context, SETTINGS), SETTINGS)


def test_every_template_has_its_three_files_and_a_sample() -> None:
    folder = TEMPLATES_DIR / EMAIL_FOLDER
    assert set(SAMPLES) == set(TEMPLATES)
    for name in TEMPLATES:
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (folder / f"{name}{suffix}").is_file(), f"{name}{suffix} is missing"
    layout = {"base.html", "base.txt", "macros.html"}
    stray = {
        path.name
        for path in folder.iterdir()
        # "_name" files are partials that templates import.
        if path.name not in layout
        and not path.name.startswith("_")
        and path.name.split(".")[0] not in TEMPLATES
    }
    assert stray == set(), "a template file that no TEMPLATES entry declares"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_template_renders_a_one_line_subject_and_complete_parts(name: str) -> None:
    rendered = _render(name)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert "Corral" in rendered.subject
    assert "Hello Ada," in rendered.text
    assert "Hello Ada," in rendered.html
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")
    assert "https://panel.example.com" in rendered.text  # the footer names the panel
    for key in ("link", "reset_link"):
        if key in SAMPLES[name]:
            assert LINK in rendered.text
            assert 'href="https://panel.example.com/account/confirm?token=tok-123"' in rendered.html
    assert "{{" not in rendered.text
    assert "{%" not in rendered.html


def test_subjects_per_template() -> None:
    assert {name: _render(name).subject for name in TEMPLATES} == {
        "verify_email": "Confirm your email address for Corral",
        "reset_password": "Reset your Corral password",
        "account_locked": "Your Corral account is temporarily locked",
        "change_email": "Confirm your new email address for Corral",
        "password_changed": "Your Corral password was changed",
        "email_changed": "The email address of your Corral account was changed",
        "welcome": "Welcome to Corral",
        "unfinished_order": (
            "Finish setting up web-1 on Corral: its order is released on 6 May 2031 at 05:08 UTC"
        ),
        "passkey_enrolment": "Add the passkey for your Corral staff account",
        "second_factor_changed": "Security notice from Corral: a passkey was added",
    }


def test_user_values_are_escaped_in_html_and_left_plain_in_text() -> None:
    hostile = '<script>alert("x")</script> & <b>'
    rendered = _render("change_email", name=hostile, new_email="new@example.com")
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;" in rendered.html
    assert f"Hello {hostile}," in rendered.text  # plain text is never interpreted


def test_a_link_cannot_break_out_of_its_attribute() -> None:
    link = 'https://panel.example.com/x?a="><script>1</script>'
    rendered = _render("verify_email", link=link)
    assert "<script>" not in rendered.html
    assert 'href="https://panel.example.com/x?a=&#34;&gt;&lt;script&gt;1&lt;/script&gt;"' in rendered.html


def test_a_missing_name_greets_without_one() -> None:
    for name in (None, ""):
        rendered = _render("welcome", name=name)
        assert "Hello," in rendered.text
        assert "Hello," in rendered.html


def test_times_and_durations_are_written_for_people() -> None:
    locked = _render("account_locked")
    assert "6 May 2031 at 05:08 UTC" in locked.text
    assert "6 May 2031 at 05:08 UTC" in locked.html
    assert "for 30 minutes" in _render("reset_password").text
    assert "for 1 hour." in _render("reset_password", valid_minutes=60).text
    assert "for 1 hour 30 minutes" in _render("reset_password", valid_minutes=90).text
    assert "for 24 hours" in _render("verify_email").text
    assert "for 7 days" in _render("verify_email", valid_minutes=7 * 1440).text


def test_optional_parts_disappear_when_absent() -> None:
    spec = template_spec("account_locked")
    context = validate_context(spec, {"name": "Ada", "until": UNTIL}, SETTINGS)
    rendered = render(spec, context, SETTINGS)
    assert "Choose a new password" not in rendered.html
    assert "from the sign-in page" in rendered.text
    assert "works for" not in _render("verify_email", valid_minutes=None).text


@pytest.mark.parametrize(
    ("name", "context", "complaint"),
    [
        ("verify_email", {"name": "Ada"}, "missing keys ['link']"),
        ("verify_email", {"link": LINK, "name": "Ada", "nmae": "typo"}, "unknown keys ['nmae']"),
        ("welcome", {"name": "Ada", "panel_url": "https://evil.test"}, "reserved keys ['panel_url']"),
        ("welcome", {"name": datetime.now(UTC)}, "must be JSON"),
        ("welcome", {"name": float("nan")}, "must be JSON"),
        ("welcome", ["name"], "must be a dict"),
        ("verify_email", {"link": "https://evil.test/confirm", "name": "Ada"}, "absolute_url"),
        ("verify_email", {"link": "https://panel.example.com.evil.test/x", "name": "A"}, "absolute_url"),
        ("verify_email", {"link": "/account/confirm", "name": "Ada"}, "absolute_url"),
        ("verify_email", {"link": "javascript:alert(1)", "name": "Ada"}, "absolute_url"),
        ("verify_email", {"link": LINK + "\r\nX: y", "name": "Ada"}, "absolute_url"),
        ("verify_email", {"link": None, "name": "Ada"}, "absolute_url"),
        (
            "account_locked",
            {"name": "Ada", "reset_link": "http://panel.example.com/x", "until": UNTIL},
            "absolute",
        ),
    ],
)
def test_contexts_that_do_not_fit_are_refused(name: str, context: Any, complaint: str) -> None:
    with pytest.raises(InvalidEmailContext) as refused:
        validate_context(template_spec(name), context, SETTINGS)
    assert complaint in str(refused.value)
    assert "tok-123" not in str(refused.value)  # errors name keys, never values


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("account_locked", {"until": "2031-05-06T07:08:00"}),  # no time zone
        ("account_locked", {"until": "next tuesday"}),
        ("reset_password", {"valid_minutes": 0}),
        ("reset_password", {"valid_minutes": "30"}),
        ("reset_password", {"valid_minutes": None}),
    ],
)
def test_values_the_templates_cannot_format_are_refused(name: str, change: dict[str, Any]) -> None:
    with pytest.raises(InvalidEmailContext):
        _render(name, **change)


def test_unknown_templates_are_refused() -> None:
    for name in ("nope", "../base", "base", "macros", "", None):
        with pytest.raises(UnknownEmailTemplate):
            template_spec(name)


def test_absolute_url_builds_from_public_url_only() -> None:
    assert absolute_url(SETTINGS, "/account/confirm") == "https://panel.example.com/account/confirm"
    assert (
        absolute_url(SETTINGS, "/account/confirm", query={"token": "a b&c"})
        == "https://panel.example.com/account/confirm?token=a+b%26c"
    )
    assert absolute_url(SETTINGS, "/x?y=1", query={"z": "2"}) == "https://panel.example.com/x?y=1&z=2"
    for bad in ("account", "//evil.test/x", "https://evil.test/x", "/a\r\nb", "/a b", "/\\evil.test", ""):
        with pytest.raises(ValueError, match="absolute_url"):
            absolute_url(SETTINGS, bad)


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com",
        "root@localhost",
        "a.b+tag@mail.example.co.uk",
        "o'brien@example.ie",
        "x_y-z@sub-1.example.org",
    ],
)
def test_plain_addresses_are_accepted(address: str) -> None:
    assert validate_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: victim@example.com",
        "ada@example.com\nBcc: victim@example.com",
        "ada@example.com\n",
        "ada@example.com, eve@example.com",
        "ada@example.com;eve@example.com",
        "Ada <ada@example.com>",
        "<ada@example.com>",
        '"ada"@example.com',
        "ada @example.com",
        " ada@example.com",
        "ada@127.0.0.1",
        "ada@[127.0.0.1]",
        "ada@-example.com",
        "ada..b@example.com",
        "@example.com",
        "ada@",
        "adá@example.com",
        "a" * 65 + "@example.com",
        "ada@" + "a" * 250 + ".com",
        "",
    ],
)
def test_anything_but_one_plain_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidEmailAddress):
        validate_address(address)


def test_the_envelope_sender_comes_from_the_from_setting() -> None:
    assert envelope_sender("Corral <no-reply@panel.example.com>") == "no-reply@panel.example.com"
    assert envelope_sender("no-reply@panel.example.com") == "no-reply@panel.example.com"
    for bad in ("Corral", "Corral <no-reply@panel.example.com>\r\nBcc: x@example.com"):
        with pytest.raises(TransientSmtpError, match="FROM_ADDRESS"):
            envelope_sender(bad)


def _row(**changes: Any) -> EmailMessage:
    values: dict[str, Any] = {
        "id": 42,
        "to_address": "ada@example.com",
        "template": "verify_email",
        "context": SAMPLES["verify_email"],
        "subject": "Confirm your email address for Corral",
        "status": "queued",
        "attempts": 0,
        "created_at": datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    }
    values.update(changes)
    return EmailMessage(**values)


def test_the_mime_message_is_multipart_alternative_with_stable_ids() -> None:
    settings = SETTINGS.model_copy(
        update={"smtp": SETTINGS.smtp.model_copy(update={"from_address": "Corral <no-reply@mail.test>"})}
    )
    row = _row()
    mime = build_mime(row, _render("verify_email"), settings)
    parsed = message_from_bytes(mime.as_bytes(), policy=default_policy)
    assert isinstance(parsed, MimeMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["From"] == "Corral <no-reply@mail.test>"
    assert parsed["To"] == "ada@example.com"
    assert parsed["Subject"] == "Confirm your email address for Corral"
    assert parsed["Date"] == "Tue, 06 May 2031 07:08:09 +0000"
    assert parsed["Message-ID"] == "<corral.42.20310506070809123456@mail.test>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    # The same row gives the same ids on every attempt.
    again = build_mime(row, _render("verify_email"), settings)
    assert again["Message-ID"] == mime["Message-ID"]
    assert b"\r\n" in mime.as_bytes()


def test_headers_cannot_be_injected_through_a_stored_row() -> None:
    with pytest.raises(InvalidEmailAddress):
        build_mime(_row(to_address="ada@example.com\r\nBcc: x@example.com"), _render("welcome"), SETTINGS)
    with pytest.raises(InvalidEmailSubject):
        build_mime(_row(subject="Hi\r\nBcc: x@example.com"), _render("welcome"), SETTINGS)


def test_the_retry_policy_spans_about_half_an_hour_in_six_attempts() -> None:
    assert SEND_RETRY.attempts == 6
    waits = [SEND_RETRY.delay(attempt) for attempt in range(1, SEND_RETRY.attempts)]
    assert waits == [60.0, 120.0, 240.0, 480.0, 960.0]


def test_the_second_factor_notice_words_each_change_and_escapes_the_passkey_name() -> None:
    words = {
        "passkey_added": "A passkey was added to your Corral account",
        "passkey_removed": "A passkey was removed from your Corral account",
        "totp_enabled": "An authenticator app was set up",
        "totp_disabled": "The authenticator app of your Corral account was turned off",
        "recovery_codes_regenerated": "New recovery codes were made",
    }
    for change, sentence in words.items():
        rendered = _render("second_factor_changed", change=change)
        assert sentence in rendered.text
        assert sentence in rendered.html
        assert "If it was not you" in rendered.text
    hostile = _render("second_factor_changed", detail='<img src=x onerror="1">')
    assert "<img" not in hostile.html
    assert "&lt;img src=x onerror=&#34;1&#34;&gt;" in hostile.html
    with pytest.raises(InvalidEmailContext):
        _render("second_factor_changed", change="passkey_stolen")
