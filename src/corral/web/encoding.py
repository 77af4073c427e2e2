"""Text arrives as UTF-8 or not at all.

Starlette never refuses bytes that are not UTF-8: a form value's percent-escapes are decoded with
``errors="replace"``, its raw bytes and a multipart field as Latin-1, and a query string with
``errors="replace"``, so ``name=%FF%FE`` reached the services as mojibake and was stored. Rather
than second-guess decoded text (an honest "ÿþ" looks the same), :class:`Utf8InputMiddleware`
checks the bytes themselves, for every route at once: the query string before the app runs, and a
form body (URL-encoded or multipart text fields) while the app reads it, chunk by chunk, without
holding it. A field that is not UTF-8 is a 422 ``validation_failed`` naming the field, raised
before any handler sees the form, so nothing is written.

JSON bodies need nothing here: they are decoded strictly, and one that is not UTF-8 is already a
422 (web.protocol).
"""

from __future__ import annotations

import codecs
import re
from urllib.parse import unquote_to_bytes

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.kit.errors import ValidationFailed
from corral.web.errors import ErrorInfo, FieldError, InputRefused, error_response

NOT_UTF8 = "invalid_utf8"
NOT_UTF8_MESSAGE = "This is not valid UTF-8 text. Send text encoded as UTF-8."
_URLENCODED = b"application/x-www-form-urlencoded"
_MULTIPART = b"multipart/form-data"
_SEPARATOR = re.compile(rb"([&=])")
_NAME_LIMIT = 200  # a field name longer than this is reported as the body's fault


def not_utf8(field: str | None, location: str) -> ErrorInfo:
    """The 422 for text that is not UTF-8 in ``field`` (None when the field cannot be named)."""
    error = FieldError(field or location, NOT_UTF8_MESSAGE, NOT_UTF8, location)
    return ErrorInfo(422, ValidationFailed.code, ValidationFailed.default_message, errors=[error])


class _Invalid(Exception):
    def __init__(self, field: str | None) -> None:
        self.field = field


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _name(raw: bytes | bytearray) -> str | None:
    try:
        name = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if name.isprintable() and len(name) <= _NAME_LIMIT else None


class UrlencodedCheck:
    """Checks that every name and value of an ``a=1&b=2`` stream percent-decodes to UTF-8.

    Fed in chunks of any size: an escape or a multi-byte character split between two chunks is
    completed by the next one. Raises ``_Invalid`` at the first field that is not UTF-8.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._held = b""  # the start of a %XX escape cut off at the end of the last chunk
        self._in_value = False
        self._name = bytearray()

    def feed(self, chunk: bytes) -> None:
        data = self._held + chunk
        cut = data.rfind(b"%", max(0, len(data) - 2))
        self._held, data = (data[cut:], data[:cut]) if cut != -1 else (b"", data)
        for piece in _SEPARATOR.split(data):
            if piece == b"&":
                self._end_part()
                self._in_value, self._name = False, bytearray()
            elif piece == b"=" and not self._in_value:
                self._end_part()
                self._in_value = True
            else:
                self._feed(unquote_to_bytes(piece))

    def finish(self) -> None:
        held, self._held = self._held, b""
        self._feed(held)  # a stray "%" at the very end stays a literal "%"
        self._end_part()

    def _feed(self, data: bytes) -> None:
        if not self._in_value and len(self._name) <= _NAME_LIMIT:
            self._name += data.replace(b"+", b" ")
        try:
            self._decoder.decode(data)
        except UnicodeDecodeError:
            raise _Invalid(_name(self._name) if self._in_value else None) from None

    def _end_part(self) -> None:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _Invalid(_name(self._name) if self._in_value else None) from None
        finally:
            self._decoder.reset()


class MultipartCheck:
    """Checks that the names and text fields (not files) of a multipart body are UTF-8.

    A body the parser cannot follow is left alone: Starlette's own parser refuses it with a 400.
    """

    def __init__(self, boundary: bytes) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._field: str | None = None
        self._text = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_data,
                "on_part_end": self._on_end,
            },
        )
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._parser.write(chunk)
        except _Invalid:
            raise
        except Exception:
            self._broken = True  # malformed: Starlette's parser says so in its own words

    def finish(self) -> None:
        if not self._broken:
            try:
                self._parser.finalize()
            except _Invalid:
                raise
            except Exception:
                self._broken = True

    def _begin(self) -> None:
        self._disposition, self._field, self._text = b"", None, False
        self._decoder.reset()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        raw_name = options.get(b"name", b"")
        if not _is_utf8(raw_name):
            raise _Invalid(None)
        self._field = _name(raw_name)
        self._text = b"filename" not in options

    def _on_data(self, data: bytes, start: int, end: int) -> None:
        if self._text:
            try:
                self._decoder.decode(data[start:end])
            except UnicodeDecodeError:
                raise _Invalid(self._field) from None

    def _on_end(self) -> None:
        if self._text:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise _Invalid(self._field) from None


def query_problem(query_string: bytes) -> ErrorInfo | None:
    check = UrlencodedCheck()
    try:
        check.feed(query_string)
        check.finish()
    except _Invalid as invalid:
        return not_utf8(invalid.field, "query")
    return None


def _body_check(headers: Headers) -> UrlencodedCheck | MultipartCheck | None:
    content_type, options = parse_options_header(headers.get("content-type"))
    if content_type == _URLENCODED:
        return UrlencodedCheck()
    charset = options.get(b"charset", b"utf-8").lower()
    if content_type == _MULTIPART and charset in (b"utf-8", b"utf8") and options.get(b"boundary"):
        # A body that declares another charset is decoded by it, correctly; only UTF-8 is checked.
        return MultipartCheck(options[b"boundary"])
    return None


class Utf8InputMiddleware:
    """Refuses a query string or a form field that is not UTF-8 with a 422 (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = query_problem(scope.get("query_string", b""))
        if problem is not None:
            await error_response(Request(scope), problem)(scope, receive, send)
            return
        check = _body_check(Headers(scope=scope))
        if check is None:
            await self.app(scope, receive, send)
            return

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                try:
                    check.feed(message.get("body", b""))
                    if not message.get("more_body", False):
                        check.finish()
                except _Invalid as invalid:
                    # Raised inside the app's form parsing: FastAPI passes an HTTPException on
                    # untouched, so the handler never runs and the answer is the 422 below.
                    raise InputRefused(not_utf8(invalid.field, "body")) from None
            return message

        await self.app(scope, checked_receive, send)
