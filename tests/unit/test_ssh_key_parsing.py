"""Reading pasted OpenSSH public keys: real keys made by ssh-keygen, fingerprints checked against
``ssh-keygen -lf``, and every kind of bad paste refused with a message that says what to do."""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.ssh_keys.errors import InvalidSshKey
from corral.ssh_keys.parsing import PRIVATE_KEY_MESSAGE, parse_public_key

SSH_KEYGEN = shutil.which("ssh-keygen")


def _keygen() -> str:
    # Installed by scripts/install-system-deps.sh --test (openssh-client); no skip: the fingerprints
    # must be checked against the real tool.
    assert SSH_KEYGEN is not None, "ssh-keygen is missing: apt-get install openssh-client"
    return SSH_KEYGEN


def make_key(directory: Path, key_type: str, bits: int | None = None, comment: str = "me@laptop") -> Path:
    """A fresh key pair made by ssh-keygen; returns the private key's path (the .pub is beside it)."""
    path = directory / f"id_{key_type}_{bits or 0}_{len(list(directory.iterdir()))}"
    command = [_keygen(), "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)]
    if bits is not None:
        command += ["-b", str(bits)]
    subprocess.run(command, check=True, capture_output=True)
    return path


def public_line(private_path: Path) -> str:
    return Path(f"{private_path}.pub").read_text()


def keygen_fingerprint(public_path: Path) -> str:
    """What ``ssh-keygen -lf`` prints for the file: "256 SHA256:… comment (ED25519)"."""
    output = subprocess.run([_keygen(), "-lf", str(public_path)], check=True, capture_output=True, text=True)
    return output.stdout.split()[1]


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def security_key_line(kind: str) -> str:
    """A FIDO (sk-) public key line; ssh-keygen needs a hardware token to make one, so it is
    assembled from a real key in the wire format of OpenSSH's PROTOCOL.u2f."""
    if kind == "ed25519":
        raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        key_type = "sk-ssh-ed25519@openssh.com"
        blob = _string(key_type.encode()) + _string(raw) + _string(b"ssh:")
    else:
        point = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        key_type = "sk-ecdsa-sha2-nistp256@openssh.com"
        blob = _string(key_type.encode()) + _string(b"nistp256") + _string(point) + _string(b"ssh:")
    return f"{key_type} {base64.b64encode(blob).decode()} yubikey"


@pytest.mark.parametrize(
    ("key_type", "bits", "declared"),
    [
        ("ed25519", None, "ssh-ed25519"),
        ("ecdsa", 256, "ecdsa-sha2-nistp256"),
        ("ecdsa", 384, "ecdsa-sha2-nistp384"),
        ("ecdsa", 521, "ecdsa-sha2-nistp521"),
        ("rsa", 2048, "ssh-rsa"),
        ("rsa", 3072, "ssh-rsa"),
    ],
)
def test_keys_made_by_ssh_keygen_parse_with_its_fingerprint(
    tmp_path: Path, key_type: str, bits: int | None, declared: str
) -> None:
    private = make_key(tmp_path, key_type, bits)
    line = public_line(private)

    parsed = parse_public_key(line)

    assert parsed.key_type == declared
    assert parsed.fingerprint == keygen_fingerprint(Path(f"{private}.pub"))
    assert parsed.comment == "me@laptop"
    assert parsed.public_key == line.strip()  # already canonical: one line, nothing changed


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_security_keys_parse_with_the_fingerprint_ssh_keygen_gives(tmp_path: Path, kind: str) -> None:
    line = security_key_line(kind)
    path = tmp_path / "sk.pub"
    path.write_text(line + "\n")

    parsed = parse_public_key(line)

    assert parsed.key_type == line.split()[0]
    assert parsed.fingerprint == keygen_fingerprint(path)
    assert parsed.comment == "yubikey"


def test_surrounding_blank_lines_and_spaces_are_ignored(tmp_path: Path) -> None:
    line = public_line(make_key(tmp_path, "ed25519")).strip()

    parsed = parse_public_key(f"\n\n   {line}   \r\n\n")

    assert parsed.public_key == line


def test_the_comment_is_cleaned_and_shortened(tmp_path: Path) -> None:
    key_type, data = public_line(make_key(tmp_path, "ed25519")).split()[:2]

    parsed = parse_public_key(f"{key_type} {data}   work\x1b[31m laptop\x07  ")
    long = parse_public_key(f"{key_type} {data} " + "x" * 300)
    bare = parse_public_key(f"{key_type} {data}")

    assert parsed.comment == "work[31m laptop"
    assert parsed.public_key == f"{key_type} {data} work[31m laptop"
    assert long.comment == "x" * 100
    assert (bare.comment, bare.public_key) == ("", f"{key_type} {data}")


def _refusal(text: str) -> str:
    with pytest.raises(InvalidSshKey) as raised:
        parse_public_key(text)
    assert raised.value.status_code == 422
    assert raised.value.details["field"] == "public_key"
    return raised.value.message


def test_a_private_key_is_refused_with_a_pointer_to_the_pub_file(tmp_path: Path) -> None:
    private = make_key(tmp_path, "ed25519")

    assert _refusal(private.read_text()) == PRIVATE_KEY_MESSAGE
    rsa_pem = make_key(tmp_path, "rsa", 2048)
    subprocess.run(
        [_keygen(), "-q", "-p", "-N", "", "-m", "PEM", "-f", str(rsa_pem)], check=True, capture_output=True
    )
    assert "BEGIN RSA PRIVATE KEY" in rsa_pem.read_text()
    assert _refusal(rsa_pem.read_text()) == PRIVATE_KEY_MESSAGE


def test_rsa_keys_under_2048_bits_are_refused(tmp_path: Path) -> None:
    message = _refusal(public_line(make_key(tmp_path, "rsa", 1024)))

    assert "at least 2048 bits" in message
    assert "1024" in message


def test_two_keys_at_once_are_refused(tmp_path: Path) -> None:
    first = public_line(make_key(tmp_path, "ed25519"))
    second = public_line(make_key(tmp_path, "ed25519"))

    assert "one key at a time" in _refusal(first + second)


def test_authorized_keys_options_in_front_are_refused(tmp_path: Path) -> None:
    line = public_line(make_key(tmp_path, "ed25519"))

    assert "Remove the options" in _refusal(f'from="10.0.0.0/8",no-pty {line}')
    assert "Remove the options" in _refusal(f'command="echo hi there" {line}')


def test_over_long_input_is_refused(tmp_path: Path) -> None:
    line = public_line(make_key(tmp_path, "ed25519")).strip()

    assert "16 KiB" in _refusal(line + " " + "c" * (16 * 1024))


def test_the_declared_type_must_match_the_key_inside(tmp_path: Path) -> None:
    ed_data = public_line(make_key(tmp_path, "ed25519")).split()[1]
    p384_data = public_line(make_key(tmp_path, "ecdsa", 384)).split()[1]

    assert "not a ssh-rsa key" in _refusal(f"ssh-rsa {ed_data}")
    assert "not a ecdsa-sha2-nistp256 key" in _refusal(f"ecdsa-sha2-nistp256 {p384_data}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "Paste a public key"),
        ("   \n\t ", "Paste a public key"),
        ("hello world", "must start with its type"),
        ("ssh-ed25519", "missing"),
        ("ssh-ed25519 not*base64!", "not valid base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA", "not valid base64"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys are no longer accepted"),
        ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----", "ssh-keygen -i"),
    ],
)
def test_malformed_text_is_refused_with_a_reason(text: str, expected: str) -> None:
    assert expected in _refusal(text)


def test_truncated_or_padded_key_data_is_refused(tmp_path: Path) -> None:
    key_type, data = public_line(make_key(tmp_path, "ed25519")).split()[:2]
    blob = base64.b64decode(data)

    short = base64.b64encode(blob[:-4]).decode()
    extra = base64.b64encode(blob + b"\x00\x00\x00\x01x").decode()
    assert "valid public key" in _refusal(f"{key_type} {short}")
    assert "cut short" in _refusal(f"{key_type} {base64.b64encode(blob[:6]).decode()}")
    assert "valid public key" in _refusal(f"{key_type} {extra}")


def test_a_bad_security_key_is_refused() -> None:
    key_type = "sk-ssh-ed25519@openssh.com"
    no_application = _string(key_type.encode()) + _string(b"\x01" * 32) + _string(b"")
    wrong_size = _string(key_type.encode()) + _string(b"\x01" * 31) + _string(b"ssh:")

    assert "application" in _refusal(f"{key_type} {base64.b64encode(no_application).decode()}")
    assert "valid public key" in _refusal(f"{key_type} {base64.b64encode(wrong_size).decode()}")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_either_a_key_or_a_clear_refusal(text: str) -> None:
    try:
        parse_public_key(text)
    except InvalidSshKey as error:
        refusal = error.message
    else:
        refusal = "accepted"
    assert refusal  # never another exception type, never an empty message
