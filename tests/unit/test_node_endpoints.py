"""Node addresses are built from validated fields (issue 10, point 1).

The libvirt URI is the panel's own output: whatever valid fields go in, libvirt's parser (which
splits parameters on ``&`` *and* ``;``) sees only the panel's own parameters, and the host and login
come back out unchanged. Invalid fields never make an ``Endpoint`` at all.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.drivers import Endpoint, Transport
from corral.drivers.base import check_host, check_host_key, check_login
from corral.drivers.libvirt.connection import SshFiles, known_hosts_line, uri_for
from corral.node_keys.service import make_key_pair
from corral.nodes.probe import MESSAGE_LIMIT, shown

PAIR = make_key_pair("test")
HOST_KEY = " ".join(make_key_pair("host").public_key.split()[:2])
MIGRATION = (
    Path(__file__).resolve().parents[2] / "src/corral/db/migrations/versions/0008_node_connection_fields.py"
)

# Labels start with a letter: all-digit names are read as (invalid) IPv4 addresses.
labels = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
host_names = st.lists(labels, min_size=1, max_size=4).map(".".join)
addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
logins = st.from_regex(r"[a-z_][a-z0-9_-]{0,31}", fullmatch=True)
ports = st.one_of(st.none(), st.integers(1, 65535))


def libvirt_params(uri: str) -> list[tuple[str, str]]:
    """The query as libvirt reads it: split on both `&` and `;`, then unescaped."""
    query = urlsplit(uri).query
    pairs = [part.split("=", 1) for part in re.split(r"[&;]", query) if part]
    return [(unquote(name), unquote(value)) for name, value in pairs]


@given(host=st.one_of(host_names, addresses), user=logins, port=ports)
def test_ssh_uris_carry_only_the_panels_parameters(host: str, user: str, port: int | None) -> None:
    endpoint = Endpoint(
        Transport.SSH,
        host=check_host(host),
        port=port,
        user=user,
        private_key=PAIR.private_key,
        host_key=HOST_KEY,
    )
    files = SshFiles(endpoint)
    try:
        uri = uri_for(endpoint, files)
        known_hosts = files.known_hosts.read_text()
    finally:
        files.remove()

    parts = urlsplit(uri)
    assert parts.scheme == "qemu+libssh"
    assert parts.hostname == endpoint.host
    assert parts.username == user
    assert parts.port == port
    assert parts.path == "/system"
    assert libvirt_params(uri) == [
        ("known_hosts_verify", "normal"),
        ("sshauth", "privkey"),
        ("keyfile", str(files.key)),
        ("known_hosts", str(files.known_hosts)),
    ]
    # The pinned key is the file's only line, for this host and port.
    assert known_hosts == known_hosts_line(endpoint)
    name = endpoint.host if (port or 22) == 22 else f"[{endpoint.host}]:{port}"
    assert known_hosts == f"{name} {HOST_KEY}\n"


@given(host=st.one_of(host_names, addresses), port=ports)
def test_tls_uris_have_no_parameters_at_all(host: str, port: int | None) -> None:
    uri = uri_for(Endpoint(Transport.TLS, host=check_host(host), port=port))
    assert urlsplit(uri).query == ""
    assert urlsplit(uri).hostname == check_host(host)


def test_local_and_test_transports_name_fixed_uris() -> None:
    assert uri_for(Endpoint(Transport.LOCAL)) == "qemu:///system"
    assert uri_for(Endpoint(Transport.TEST)) == "test:///default"


@given(text=st.text(max_size=60))
def test_no_host_check_passes_uri_syntax(text: str) -> None:
    try:
        host = check_host(text)
    except ValueError:
        return
    assert not set(host) & set(";&?#/@%\\ \t\r\n\x00=[]'\"`$")


@pytest.mark.parametrize(
    "value",
    ["a;b", "a&b", "a\x00b", "a%00", "-oProxyCommand=x", "a b", "a/b", "a@b", "a:b", "fe80::1%eth0", ""],
)
def test_hosts_with_syntax_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"host name|IP address|IPv6 zone|control characters"):
        check_host(value)


@pytest.mark.parametrize("value", ["root;x", "root&x", "ro\x00ot", "-o", "Root", "a" * 33, "", "root@x"])
def test_logins_with_syntax_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="a login name is"):
        check_login(value)


@pytest.mark.parametrize(
    "fields",
    [
        {"transport": Transport.SSH, "host": "hv", "host_key": HOST_KEY},  # no login
        {"transport": Transport.SSH, "host": "hv", "user": "root"},  # no host key
        {"transport": Transport.SSH, "user": "root", "host_key": HOST_KEY},  # no host
        {"transport": Transport.LOCAL, "host": "hv"},
        {"transport": Transport.TEST, "port": 22},
        {"transport": Transport.TLS, "host": "hv", "user": "root"},
        {"transport": Transport.TLS, "host": "HV.example.net"},  # not in normal form
        {"transport": Transport.SSH, "host": "hv;x", "user": "root", "host_key": HOST_KEY},
        {"transport": Transport.SSH, "host": "hv", "user": "root", "host_key": HOST_KEY + ";x"},
        {"transport": Transport.TLS, "host": "hv", "host_key": HOST_KEY},
        {"transport": Transport.LOCAL, "private_key": "k"},
    ],
)
def test_an_endpoint_cannot_be_made_from_fields_that_do_not_fit(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"transport|host|port|login|key|name|address"):
        Endpoint(**fields)  # type: ignore[arg-type]


def test_the_ssh_files_are_private_and_removed() -> None:
    endpoint = Endpoint(
        Transport.SSH, host="hv", user="root", private_key=PAIR.private_key.rstrip("\n"), host_key=HOST_KEY
    )
    files = SshFiles(endpoint)
    assert files.key.read_text() == PAIR.private_key  # newline-terminated, as OpenSSH wrote it
    for path in (files.key, files.known_hosts):
        assert path.stat().st_mode & 0o777 == 0o600
    assert files.key.parent.stat().st_mode & 0o777 == 0o700
    files.remove()
    assert not files.key.parent.exists()


@pytest.mark.parametrize(
    "value",
    [
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",  # not a type we take
        "ssh-ed25519",
        "ssh-ed25519 not*base64",
        "ssh-rsa " + HOST_KEY.split()[1],  # an ed25519 blob labelled rsa
        "ssh-ed25519 " + HOST_KEY.split()[1][:24],  # cut short
    ],
)
def test_host_keys_must_be_whole_keys_of_their_type(value: str) -> None:
    with pytest.raises(ValueError, match="host key"):
        check_host_key(value)


def test_a_host_key_comment_is_dropped() -> None:
    assert check_host_key(f"  {HOST_KEY} root@hv01  ") == HOST_KEY


def test_driver_messages_shown_to_staff_are_one_short_line() -> None:
    quoted_file = (
        "failed to parse: root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin\x00\x1b[31m" + "y" * 900
    )
    message = shown(quoted_file)
    assert "\n" not in message
    assert "\x00" not in message
    assert "\x1b" not in message
    assert len(message) <= MESSAGE_LIMIT
    assert shown("Connection refused") == "Connection refused"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0008", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("uri", "fields"),
    [
        ("test:///default", {"transport": "test"}),
        ("qemu:///system", {"transport": "local"}),
        ("qemu+unix:///system", {"transport": "local"}),
        (
            "qemu+ssh://corral@hv1.example.net:2222/system",
            {"transport": "ssh", "host": "hv1.example.net", "port": 2222, "ssh_user": "corral"},
        ),
        ("qemu+tls://10.0.0.5/system", {"transport": "tls", "host": "10.0.0.5", "port": None}),
        ("qemu+ssh://root@hv/system?keyfile=/k;command=id", None),
        ("qemu+ssh://root@hv/system?no_verify=1", None),
        ("test:///etc/passwd%00.xml", None),
        ("test:///tmp/fixture.xml", None),
        ("qemu+ssh://root:pw@hv/system", None),
        ("qemu:///session", None),
        ("qemu+ext:///system?command=/bin/sh", None),
    ],
)
def test_old_uris_convert_only_when_nothing_is_lost(uri: str, fields: dict[str, object] | None) -> None:
    assert _migration().convert(uri) == fields
