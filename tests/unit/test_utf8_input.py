"""web.encoding's checkers read a body in chunks of any size: an escape or a character cut between
two chunks is judged whole, and the verdict never depends on where the cuts fall."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.web.encoding import MultipartCheck, UrlencodedCheck, query_problem


def _verdict(check: UrlencodedCheck | MultipartCheck, body: bytes, cuts: list[int]) -> str | None:
    """None when the body is accepted, else the field it names ("" for an unnamed one)."""
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    pieces = [body[start:end] for start, end in zip([0, *points], [*points, len(body)], strict=True)]
    try:
        for piece in pieces:
            check.feed(piece)
        check.finish()
    except Exception as refused:
        return getattr(refused, "field", None) or ""
    return None


URLENCODED = [
    (b"name=Zo%C3%AB+%E6%9D%B1&csrf_token=abc", None),
    (b"name=Zo\xc3\xab&x=%41%", None),  # raw UTF-8 and a stray "%" are fine
    (b"a=1&name=%FF%FE", "name"),
    (b"name=ok%C3&b=2", "name"),  # a character cut off by the next field
    (b"name=%ED%A0%80", "name"),  # an encoded surrogate
    (b"%FF=1", ""),  # a name that is not UTF-8 cannot be named
]


@pytest.mark.parametrize(("body", "field"), URLENCODED)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_an_urlencoded_body_is_judged_the_same_however_it_is_cut(
    body: bytes, field: str | None, cuts: list[int]
) -> None:
    assert _verdict(UrlencodedCheck(), body, cuts) == field


@given(text=st.text(max_size=40))
def test_any_text_a_browser_encodes_is_accepted(text: str) -> None:
    from urllib.parse import quote_plus

    assert query_problem(f"q={quote_plus(text)}&x={quote_plus(text)}".encode()) is None


@given(raw=st.binary(max_size=30), cuts=st.lists(st.integers(min_value=0, max_value=100), max_size=4))
def test_any_bytes_are_refused_exactly_when_they_are_not_utf8(raw: bytes, cuts: list[int]) -> None:
    escaped = "".join(f"%{byte:02X}" for byte in raw).encode()
    try:
        unquote_to_bytes(escaped).decode("utf-8")
        expected = None
    except UnicodeDecodeError:
        expected = "v"
    assert _verdict(UrlencodedCheck(), b"v=" + escaped, cuts) == expected


def _multipart(value: bytes, *, filename: bool = False) -> bytes:
    disposition = b'form-data; name="name"' + (b'; filename="a.bin"' if filename else b"")
    return (
        b'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\nabc\r\n'
        b"--B\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n--B--\r\n"
    )


@given(cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_a_multipart_text_field_is_judged_however_it_is_cut(cuts: list[int]) -> None:
    assert _verdict(MultipartCheck(b"B"), _multipart("Zoë 東京".encode()), cuts) is None
    assert _verdict(MultipartCheck(b"B"), _multipart(b"ok\xc3"), cuts) == "name"
    # A file's bytes are its own business.
    assert _verdict(MultipartCheck(b"B"), _multipart(b"\xff\xfe", filename=True), cuts) is None


def test_a_malformed_multipart_body_is_left_to_the_form_parser() -> None:
    assert _verdict(MultipartCheck(b"B"), b"--X\r\ngarbage\xff", []) is None
