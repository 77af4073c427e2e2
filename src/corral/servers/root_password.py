"""The optional root password of a new or reinstalled server, as cloud-init wants it.

cloud-init's ``hashed_passwd`` is a crypt(3) string that the guest's /etc/shadow takes as is; every
current Linux distribution accepts SHA-512 crypt (``$6$``). Python's ``crypt`` module is deprecated
and gone in 3.13, so this is the algorithm as Ulrich Drepper specified it ("Unix crypt using
SHA-256 and SHA-512", the text glibc implements), checked against glibc's own test vectors. Only the
hash ever leaves this module: the password itself is neither stored nor put in a job's arguments.
"""

from __future__ import annotations

import hashlib
import secrets

MIN_LENGTH = 12
MAX_LENGTH = 128
DEFAULT_ROUNDS = 5000  # the spec's default; "rounds=" is then left out of the string
_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def _encode(digest: bytes) -> str:
    out: list[str] = []

    def put(b2: int, b1: int, b0: int, count: int) -> None:
        word = (b2 << 16) | (b1 << 8) | b0
        for _ in range(count):
            out.append(_ALPHABET[word & 0x3F])
            word >>= 6

    for k in range(21):
        a, b, c = digest[k], digest[k + 21], digest[k + 42]
        # The spec's byte order rotates by one place for each group of three.
        put(*((a, b, c), (b, c, a), (c, a, b))[k % 3], 4)
    put(0, 0, digest[63], 2)
    return "".join(out)


def sha512_crypt(password: str, salt: str | None = None, rounds: int = DEFAULT_ROUNDS) -> str:
    """``$6$<salt>$<hash>`` (or ``$6$rounds=N$…``) for ``password``; a random 16-character salt by
    default."""
    if salt is None:
        salt = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    key = password.encode()
    salt_bytes = salt.encode()[:16]
    rounds = max(1000, min(rounds, 999_999_999))

    alternate = hashlib.sha512(key + salt_bytes + key).digest()
    context = hashlib.sha512(key + salt_bytes)
    context.update(_repeat(alternate, len(key)) if key else b"")
    length = len(key)
    while length > 0:
        context.update(alternate if length & 1 else key)
        length >>= 1
    result = context.digest()

    p_bytes = _repeat(hashlib.sha512(key * len(key)).digest(), len(key)) if key else b""
    s_bytes = _repeat(hashlib.sha512(salt_bytes * (16 + result[0])).digest(), len(salt_bytes))
    for i in range(rounds):
        step = hashlib.sha512(p_bytes if i & 1 else result)
        if i % 3:
            step.update(s_bytes)
        if i % 7:
            step.update(p_bytes)
        step.update(result if i & 1 else p_bytes)
        result = step.digest()

    prefix = "$6$" if rounds == DEFAULT_ROUNDS else f"$6$rounds={rounds}$"
    return f"{prefix}{salt_bytes.decode()}${_encode(result)}"
