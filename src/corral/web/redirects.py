"""The one check for every redirect target that comes from a request (``next``, a Referer …).

A browser does not follow the string we send: it parses it as a WHATWG URL first. That parser
drops ASCII tabs and newlines anywhere, trims leading and trailing C0 controls and spaces, and
reads ``\\`` as ``/`` in http(s) URLs. So ``/\\t/evil.example`` (``next=/%09/evil.example``),
``/\\evil.example`` and `` //evil.example`` all reach the browser as ``//evil.example``: another
host. We normalise the same way and then accept only a path on this site: one leading ``/``, never
``//``, hence no scheme and no authority.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT_TARGET = "/dashboard"

# What the URL parser removes before it looks at anything (WHATWG URL, "basic URL parser").
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_C0_OR_SPACE = "".join(chr(code) for code in range(0x21))
# Anything still a control character after that is refused outright: it has no business in a link.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def local_path(target: str | None) -> str | None:
    """``target`` as a browser would read it, if that is a path on this site; else None."""
    if not target:
        return None
    normalised = _TAB_OR_NEWLINE.sub("", target.strip(_C0_OR_SPACE)).replace("\\", "/")
    if not normalised.startswith("/") or normalised.startswith("//"):
        return None
    if _CONTROL.search(normalised):
        return None
    return normalised


def safe_redirect(target: str | None, default: str = DEFAULT_TARGET) -> str:
    """Where to send the browser: ``target`` if it is a path on this site, else ``default``."""
    return local_path(target) or default


def path_of_url(url: str | None) -> str | None:
    """The path and query of an absolute or relative URL (a Referer), if that is a local path.

    The host is dropped on purpose: the result is always a path on this site.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip(_C0_OR_SPACE))
    except ValueError:
        return None
    path = parts.path or "/"
    return local_path(path + (f"?{parts.query}" if parts.query else ""))
