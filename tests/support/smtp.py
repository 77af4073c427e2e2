"""A real SMTP server for tests: aiosmtpd on a free 127.0.0.1 port, in its own thread.

Use the ``smtp_sink`` fixture (plain SMTP) or ``smtp_sink_factory`` (STARTTLS, implicit TLS,
AUTH)::

    async def test_it(smtp_sink: SmtpSink, settings: Settings) -> None:
        settings = smtp_sink.settings(settings)           # smtp section pointed at the sink
        ...                                               # something that sends one email
        [message] = await smtp_sink.wait_for(1)           # parsed email.message.EmailMessage
        assert message["To"] == "ada@example.test"

``answer("451 4.7.1 Try later", stage="RCPT")`` makes the sink give that reply to the next RCPT
(or MAIL, or DATA) instead of accepting it, to test retries and refusals. TLS sinks present a
certificate from a throw-away CA; ``trust_smtp_certificate`` makes this process trust it
(``SSL_CERT_FILE``), so the code under test verifies certificates exactly as in production.

The fixtures are registered by ``pytest_plugins = ("tests.support.smtp",)`` (in a test module or
in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.config import Settings, SmtpSettings
from tests.support.processes import free_port

Stage = Literal["MAIL", "RCPT", "DATA"]
Security = Literal["none", "starttls", "tls"]
HOST = "127.0.0.1"
DEFAULT_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Received:
    """One message the sink accepted, with what the SMTP session looked like."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    encrypted: bool
    login: str | None
    raw: bytes


@dataclass(frozen=True)
class SinkCertificate:
    """A throw-away CA and a server certificate it signed for localhost and 127.0.0.1."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def make_certificate(directory: Path) -> SinkCertificate:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corral test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = SinkCertificate(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _Handler:
    """aiosmtpd hooks; they run on the sink's own thread and event loop."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self._sink._scripted("MAIL")
        if scripted is not None:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self._sink._scripted("RCPT")
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        scripted = self._sink._scripted("DATA")
        if scripted is not None:
            return scripted
        raw = envelope.original_content or b""
        message = BytesParser(policy=default_policy).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        transport = server.transport
        encrypted = transport is not None and transport.get_extra_info("ssl_object") is not None
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self._sink._record(
            Received(
                message=message,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                encrypted=encrypted,
                login=login,
                raw=raw,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class SmtpSink:
    """An SMTP server that keeps what it receives. Start with ``start()``, end with ``stop()``."""

    def __init__(
        self,
        *,
        security: Security = "none",
        certificate: SinkCertificate | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        if security != "none" and certificate is None:
            raise ValueError("a TLS sink needs a certificate")
        self.security: Security = security
        self.host = HOST
        self.port = free_port()
        self.credentials = credentials
        self._received: list[Received] = []
        self._script: list[tuple[Stage, str]] = []
        self._replies: list[str] = []
        self._condition = threading.Condition()
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "ready_timeout": 10.0}
        if security == "starttls":
            assert certificate is not None
            kwargs.update(tls_context=certificate.server_context(), require_starttls=True)
        elif security == "tls":
            assert certificate is not None
            # The whole connection is TLS, which aiosmtpd's "AUTH only after STARTTLS" rule ignores.
            kwargs.update(ssl_context=certificate.server_context(), auth_require_tls=False)
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = Controller(_Handler(self), **kwargs)

    # -- life cycle
    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    # -- what tests look at
    @property
    def received(self) -> list[Received]:
        with self._condition:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [item.message for item in self.received]

    @property
    def scripted_replies_given(self) -> list[str]:
        """Every reply given by ``answer()``, in order."""
        with self._condition:
            return list(self._replies)

    async def wait_for(self, count: int, *, within: float = DEFAULT_WAIT_SECONDS) -> list[EmailMessage]:
        """The first ``count`` messages once that many have arrived; fails after ``within`` seconds."""

        def wait() -> bool:
            with self._condition:
                return self._condition.wait_for(lambda: len(self._received) >= count, timeout=within)

        # The server thread notifies the condition; waiting in a thread keeps the test's loop (and
        # the worker running on it) free.
        if not await asyncio.to_thread(wait):
            raise AssertionError(
                f"timed out after {within}s waiting for {count} message(s); got {len(self.received)}"
            )
        return [item.message for item in self.received[:count]]

    # -- steering
    def answer(self, reply: str, *, stage: Stage = "RCPT", times: int = 1) -> None:
        """Answer the next ``times`` commands of ``stage`` with ``reply`` (e.g. "451 4.7.1 Later")."""
        with self._condition:
            self._script.extend([(stage, reply)] * times)

    def settings(self, base: Settings, **smtp: Any) -> Settings:
        """``base`` with its smtp section pointed at this sink (plus any ``smtp`` overrides)."""
        return base.model_copy(update={"smtp": self.smtp_settings(**smtp)})

    def smtp_settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "from_address": "Corral <no-reply@panel.test>",
            "timeout_seconds": 5.0,
        }
        if self.credentials is not None:
            values.update(username=self.credentials[0], password=self.credentials[1])
        values.update(overrides)
        return SmtpSettings.model_validate(values)

    # -- called from the server thread
    def _scripted(self, stage: Stage) -> str | None:
        with self._condition:
            for index, (when, reply) in enumerate(self._script):
                if when == stage:
                    del self._script[index]
                    self._replies.append(reply)
                    return reply
        return None

    def _record(self, received: Received) -> None:
        with self._condition:
            self._received.append(received)
            self._condition.notify_all()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        assert self.credentials is not None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if (login, auth_data.password.decode()) == self.credentials:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, int]]:
    """A TCP server that accepts connections and never says a word (no SMTP greeting).

    Also the ``silent_smtp_server`` fixture, which yields its ``(host, port)``."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # kept open, silent, until the server closes

    server = await asyncio.start_server(accept, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield HOST, int(port)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def silent_smtp_server() -> AsyncIterator[tuple[str, int]]:
    async with silent_server() as address:
        yield address


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A plain-SMTP sink, running for the test."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> SinkCertificate:
    return make_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def trust_smtp_certificate(
    monkeypatch: pytest.MonkeyPatch, smtp_certificate: SinkCertificate
) -> SinkCertificate:
    """Make this process's default TLS contexts trust the sink's CA (and only it)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_certificate.ca_path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return smtp_certificate


@pytest.fixture
def smtp_sink_factory(smtp_certificate: SinkCertificate) -> Iterator[Callable[..., SmtpSink]]:
    """``make(security="starttls", credentials=("user", "pw"))``: more sinks, stopped after the test."""
    started: list[SmtpSink] = []

    def make(*, security: Security = "none", credentials: tuple[str, str] | None = None) -> SmtpSink:
        sink = SmtpSink(security=security, certificate=smtp_certificate, credentials=credentials).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()
