"""Reading one pasted OpenSSH public key line, as ``ssh-keygen`` and ``authorized_keys`` write it.

``parse_public_key`` saves nothing: the server wizard calls it to check a key pasted there, and
the account key list calls it before storing one. Every refusal is an :class:`InvalidSshKey` whose
message tells the person what to paste instead.

The key is checked, not just pattern-matched: the base64 data must decode, the key type written
inside it must be the one declared in front of it, and the key itself must load (an RSA modulus,
an elliptic-curve point on the named curve, a 32-byte Ed25519 key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from corral.ssh_keys.errors import InvalidSshKey

MAX_INPUT_BYTES = 16 * 1024
MAX_COMMENT = 100
MIN_RSA_BITS = 2048

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
ECDSA_TYPES = ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
KEY_TYPES: tuple[str, ...] = (ED25519, *ECDSA_TYPES, RSA, SK_ED25519, SK_ECDSA)

# Types people still have lying around, with what to do about them.
_RETIRED = {
    "ssh-dss": "DSA keys are no longer accepted by OpenSSH; make an ed25519 key with ssh-keygen -t ed25519.",
}
_PRIVATE_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File")
PRIVATE_KEY_MESSAGE = "That is a private key — paste the .pub file"
SUPPORTED_LIST = (
    "ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (2048 bits or more) or a security-key type"
)


@dataclass(frozen=True)
class ParsedKey:
    key_type: str
    # Normalised to one line: "<type> <base64>" plus " <comment>" when there is one.
    public_key: str
    # "SHA256:<unpadded base64>", exactly as ``ssh-keygen -lf`` prints it.
    fingerprint: str
    comment: str


def fingerprint(blob: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def clean_comment(text: str) -> str:
    """Control characters (newlines, escapes, NULs) removed, trimmed, at most 100 characters."""
    printable = "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf"))
    return printable.strip()[:MAX_COMMENT].strip()


class _Reader:
    """The SSH wire format (RFC 4251): each field is a 4-byte big-endian length and that many bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def string(self) -> bytes:
        if self.offset + 4 > len(self.data):
            raise InvalidSshKey("The key data is cut short; copy the whole line from the .pub file.")
        (length,) = struct.unpack_from(">I", self.data, self.offset)
        start = self.offset + 4
        if start + length > len(self.data):
            raise InvalidSshKey("The key data is cut short; copy the whole line from the .pub file.")
        self.offset = start + length
        return self.data[start : self.offset]

    def done(self) -> None:
        if self.offset != len(self.data):
            raise InvalidSshKey("The key data has extra bytes after the key; it is not a valid public key.")


def _single_line(text: str) -> str:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise InvalidSshKey("That is far too long for a public key (16 KiB at most); paste one .pub line.")
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise InvalidSshKey(PRIVATE_KEY_MESSAGE)
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise InvalidSshKey(
            "That key is in the SSH2 (RFC 4716) format; convert it with ssh-keygen -i -f <file> "
            "and paste the line it prints."
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidSshKey("Paste a public key: the one line in your .pub file, e.g. ~/.ssh/id_ed25519.pub.")
    if len(lines) > 1:
        raise InvalidSshKey("Paste one key at a time: the text has more than one line.")
    return lines[0]


def _split(line: str) -> tuple[str, str, str]:
    parts = line.split(None, 2)
    key_type = parts[0]
    if key_type not in KEY_TYPES:
        if key_type in _RETIRED:
            raise InvalidSshKey(_RETIRED[key_type])
        if any(token in KEY_TYPES for token in line.split()[1:]):
            raise InvalidSshKey(
                "Remove the options in front of the key type (such as command=… or from=…): "
                "paste the key as the .pub file has it."
            )
        raise InvalidSshKey(f"The key must start with its type: {SUPPORTED_LIST}.")
    if len(parts) < 2:
        raise InvalidSshKey("The key data is missing after the key type; copy the whole line.")
    return key_type, parts[1], parts[2] if len(parts) > 2 else ""


def _decode(data: str) -> bytes:
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidSshKey(
            "The key data is not valid base64; copy the whole line from the .pub file."
        ) from None


def _check_sk(key_type: str, reader: _Reader) -> None:
    """Security-key (FIDO) keys: the public part plus the application string, e.g. "ssh:"."""
    try:
        if key_type == SK_ED25519:
            ed25519.Ed25519PublicKey.from_public_bytes(reader.string())
        else:
            if reader.string() != b"nistp256":
                raise InvalidSshKey("The key's curve does not match its type.")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reader.string())
    except ValueError:
        raise InvalidSshKey("The key data does not hold a valid public key.") from None
    if not reader.string():
        raise InvalidSshKey("The security-key data has no application name; it is not a valid key.")
    reader.done()


def _check_loaded(key_type: str, data: str) -> None:
    try:
        key = load_ssh_public_key(f"{key_type} {data}".encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidSshKey("The key data does not hold a valid public key.") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidSshKey(
            f"RSA keys must have at least {MIN_RSA_BITS} bits; this one has {key.key_size}. "
            "Make a new key with ssh-keygen -t ed25519."
        )


def parse_public_key(text: str) -> ParsedKey:
    """Check one pasted public key line and return it normalised, with its fingerprint."""
    if not isinstance(text, str):
        raise InvalidSshKey("Paste a public key as text.")
    key_type, data, comment = _split(_single_line(text))
    blob = _decode(data)
    reader = _Reader(blob)
    if reader.string() != key_type.encode("ascii"):
        raise InvalidSshKey(f"The key data is not a {key_type} key; the type in front does not match it.")
    if key_type in (SK_ED25519, SK_ECDSA):
        _check_sk(key_type, reader)
    else:
        _check_loaded(key_type, data)
    # Re-encoding makes the stored text canonical whatever padding or case quirks were pasted.
    canonical = base64.b64encode(blob).decode("ascii")
    comment = clean_comment(comment)
    public_key = f"{key_type} {canonical}" + (f" {comment}" if comment else "")
    return ParsedKey(key_type=key_type, public_key=public_key, fingerprint=fingerprint(blob), comment=comment)
