"""The demo outbox's store and text: bounded, newest first, links to the panel only."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from corral.demo.outbox import DemoOutbox, TextPiece, pieces
from corral.kit.errors import NotFound

PANEL = "http://localhost:8000"


@pytest.fixture
def outbox() -> Iterator[DemoOutbox]:
    box = DemoOutbox(capacity=3)
    yield box
    box._socket.close()  # never started: only its bound socket to let go


def raw(subject: str, text: str = "Hello") -> bytes:
    message = EmailMessage()
    message["From"] = "no-reply@localhost"
    message["To"] = "ada@example.com"
    message["Subject"] = subject
    message.set_content(text)
    return message.as_bytes()


def test_it_keeps_the_last_messages_newest_first(outbox: DemoOutbox) -> None:
    for number in range(1, 6):
        outbox.keep(raw(f"Message {number}"), mail_from="no-reply@localhost", recipients=("ada@example.com",))

    assert [message.subject for message in outbox.messages()] == ["Message 5", "Message 4", "Message 3"]
    assert outbox.get(3).subject == "Message 3"
    with pytest.raises(NotFound, match="keeps the last 3"):
        outbox.get(2)


def test_a_message_without_a_text_part_or_subject_still_shows(outbox: DemoOutbox) -> None:
    message = EmailMessage()
    message.set_content("<p>Hi</p>", subtype="html")
    kept = outbox.keep(message.as_bytes(), mail_from="x@localhost", recipients=("a@example.com",))

    assert kept.subject == "(no subject)"
    assert kept.text == "(This message has no plain-text part.)"


def test_a_folded_subject_reads_as_one_line(outbox: DemoOutbox) -> None:
    folded = b"From: x@localhost\r\nSubject: Confirm\r\n your\t  address\r\n\r\nHello\r\n"
    kept = outbox.keep(folded, mail_from="x@localhost", recipients=("a@example.com",))
    assert kept.subject == "Confirm your address"


def test_links_to_the_panel_become_links_and_nothing_else_does() -> None:
    text = (
        f"Open {PANEL}/verify?token=a_b-c. Or {PANEL}.\n"
        f"{PANEL}.evil.example/verify {PANEL}@evil.example/ https://evil.example/ "
        f"javascript:alert(1) {PANEL}/x\\y"
    )
    found = pieces(text, PANEL)

    # A backslash ends a link (browsers read it as "/"): what comes before it is still the panel's.
    links = [piece.text for piece in found if piece.link]
    assert links == [f"{PANEL}/verify?token=a_b-c", PANEL, f"{PANEL}/x"]
    assert "".join(piece.text for piece in found) == text  # nothing lost, nothing added
    assert pieces("", PANEL) == []
    assert pieces("no links", PANEL) == [TextPiece("no links")]
