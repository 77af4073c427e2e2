"""What a customer may call a server: its hostname (goes into the guest) and display name (the panel).

Hostname (RFC 1123 as amended for hostnames, RFC 952/1123/3696): at most 253 characters, dot-separated
labels of 1-63 letters, digits or hyphens that neither start nor end with a hyphen. It is stored
lower-cased. The last label may not be all digits, so nothing that looks like an IPv4 address
passes ("10.0.0.1" is not a hostname). A trailing dot (the DNS root) is refused rather than
silently dropped: the guest would write it into /etc/hostname.

Display name (seed 000 9.2, "server names: length limits, content filtering"): 1-64 characters
after trimming, and a deliberately modest filter:

- no control or invisible formatting characters (newlines, NUL, bidi overrides, zero-width
  joiners): they break layouts and can disguise what a name says in lists staff read;
- no URLs (``scheme://`` or ``www.``): names show up in staff pages and emails, and a link there is
  a phishing lure. A plain domain-like name ("db1.example.com") stays allowed, because people name
  servers after their hostnames;
- no word from a short list of slurs and abuse, matched as whole words after folding case, common
  letter-for-digit swaps and separators, so "Sc*nthorpe"-style false positives stay rare.

A filter like this cannot catch everything and is not meant to: it keeps the obvious out of shared
views without refusing ordinary names. Staff can still rename a server that slips through.
"""

from __future__ import annotations

import re
import unicodedata

MAX_HOSTNAME = 253
MAX_LABEL = 63
MAX_NAME = 64

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://|\bwww\.|\bhttps?:", re.IGNORECASE)
# Letter-for-digit/symbol swaps people use to get a word past a filter.
_FOLD = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_WORD_SPLIT = re.compile(r"[^a-z]+")
# Kept short on purpose (see the module docstring): slurs and the most common abuse in English.
BLOCKED_WORDS: frozenset[str] = frozenset(
    {
        "nigger",
        "nigga",
        "faggot",
        "fag",
        "retard",
        "kike",
        "spic",
        "chink",
        "tranny",
        "cunt",
        "whore",
        "slut",
        "rapist",
        "nazi",
        "heil",
        "kys",
    }
)


class NameRefused(ValueError):
    """A hostname or display name broke one of the rules; the message says which, for the form."""


def normalise_hostname(value: str) -> str:
    """The hostname lower-cased and checked; raises NameRefused with a message for the customer."""
    hostname = value.strip().lower()
    if not hostname:
        raise NameRefused("Give the server a hostname, e.g. web-1 or web-1.example.com.")
    if len(hostname) > MAX_HOSTNAME:
        raise NameRefused(f"A hostname is at most {MAX_HOSTNAME} characters long.")
    if hostname.endswith("."):
        raise NameRefused("Leave out the final dot.")
    labels = hostname.split(".")
    for label in labels:
        if not label:
            raise NameRefused("A hostname cannot have two dots in a row or start with a dot.")
        if len(label) > MAX_LABEL:
            raise NameRefused(f"Each part between dots is at most {MAX_LABEL} characters long.")
        if not _LABEL.match(label):
            raise NameRefused(
                "Use only letters, digits and hyphens, with no hyphen at the start or end of a part."
            )
    if labels[-1].isdigit():
        raise NameRefused("A hostname cannot end in a number-only part (it would look like an IP address).")
    return hostname


def _is_hidden(character: str) -> bool:
    # Cc: control characters (newline, NUL…); Cf: invisible formatting (bidi overrides, zero-width).
    return unicodedata.category(character) in {"Cc", "Cf"}


def _words(value: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", value).casefold().translate(_FOLD)
    # Combining marks go, so "ñ" matches "n"; separators split words.
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return [word for word in _WORD_SPLIT.split(plain) if word]


def normalise_display_name(value: str) -> str:
    """The display name trimmed and checked; raises NameRefused with a message for the customer."""
    if any(_is_hidden(character) for character in value):
        raise NameRefused("Remove line breaks and invisible characters from the name.")
    name = " ".join(value.split())  # trims, and runs of spaces become one
    if not name:
        raise NameRefused("Give the server a name.")
    if len(name) > MAX_NAME:
        raise NameRefused(f"A server name is at most {MAX_NAME} characters long.")
    if _URL.search(name):
        raise NameRefused("A server name cannot contain a web address.")
    words = _words(name)
    # Also the name with its separators removed, so "n.i.g.g.e.r" or "f a g" is caught too; only
    # whole-name matches there, so an innocent name that happens to contain a word is not refused.
    if any(word in BLOCKED_WORDS for word in words) or "".join(words) in BLOCKED_WORDS:
        raise NameRefused("Choose a different name: this one contains a word we do not allow.")
    return name
