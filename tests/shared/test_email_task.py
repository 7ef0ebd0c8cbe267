"""The email task's handler, called directly against a real SMTP server in this process (aiosmtpd): what it
sends, how it logs in, and what it says when the server is missing, unreachable, silent or refuses."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.settings import Settings
from shared.task_types import RunContext, TaskFailed
from shared.tasks.email import SEND_EMAIL, message_id
from tests.conftest import free_port

# The relay tests log in without TLS on purpose (SMTP_SECURITY=none); aiosmtpd warns about that setting.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SLOT = dt.datetime(2026, 3, 30, 1, 0, tzinfo=dt.UTC)
PASSWORD = "hunter2-correct-horse"
KNOWN = "{{scheduledFor}}, {{runId}}, {{attempt}}, {{scheduleId}}"
CONFIG = {
    "to": "ann@example.com, Bob Jones <bob@example.com>",
    "cc": "carol@example.com",
    "replyTo": "team@example.com",
    "subject": "Weekly report, run {{runId}}",
    "body": "The report for {{scheduledFor}} (run {{runId}}) is ready.",
}


@dataclass
class Mailbox:
    """What the server received, and how it was asked to: one envelope per accepted message."""

    refuse: str = "nobody@"  # recipients starting with this are refused
    refusal: str = "550 5.1.1 no such user here"
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith(self.refuse):
            return self.refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTPServer, session: Session, envelope: Envelope
    ) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd answers a failure itself (535) rather than leaving the client waiting.
        return AuthResult(success=(login, password) == ("mailer", PASSWORD), handled=False)

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def message(self) -> EmailMessage:
        (message,) = self.messages()
        return message


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int

    def settings(self, **overrides: Any) -> Settings:
        base = Settings(
            smtp_host="127.0.0.1",
            smtp_port=self.port,
            smtp_security="none",
            smtp_from="Cronwork <cronwork@example.com>",
        )
        return replace(base, **overrides)


StartServer = Callable[..., SmtpServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts aiosmtpd servers on free ports (``smtp_parameters`` go to aiosmtpd's SMTP); stops them after."""
    controllers: list[Controller] = []

    def start(authenticated: bool = False, **smtp_parameters: Any) -> SmtpServer:
        mailbox = Mailbox()
        port = free_port()
        if authenticated:
            # Without a TLS context, AUTH in plain text: what a trusted relay does (SMTP_SECURITY=none).
            smtp_parameters.update(
                authenticator=mailbox.authenticate,
                auth_required=True,
                auth_require_tls="tls_context" in smtp_parameters,
            )
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **smtp_parameters)
        controller.start()
        controllers.append(controller)
        return SmtpServer(mailbox, port)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def server(start_server: StartServer) -> SmtpServer:
    return start_server()


def context(settings: Settings, config: dict[str, str] | None = None, **fields: Any) -> RunContext:
    values: dict[str, Any] = {
        "config": CONFIG if config is None else config,
        "run_id": 42,
        "attempt": 1,
        "schedule_id": 7,
        "scheduled_for": SLOT,
        "time_limit_s": 10,
        "settings": settings,
        **fields,
    }
    return RunContext(**values)


def send(settings: Settings, config: dict[str, str] | None = None, **fields: Any) -> str:
    result = SEND_EMAIL.handler(context(settings, config, **fields))
    assert result is not None
    return result


def failure(settings: Settings, config: dict[str, str] | None = None, **fields: Any) -> str:
    with pytest.raises(TaskFailed) as failed:
        SEND_EMAIL.handler(context(settings, config, **fields))
    reason = str(failed.value)
    assert PASSWORD not in reason
    return reason


# --- What is sent ----------------------------------------------------------------------------------------------


def test_sends_one_message_to_every_recipient_with_the_placeholders_filled(server: SmtpServer) -> None:
    result = send(server.settings())

    (envelope,) = server.mailbox.envelopes
    assert envelope.mail_from == "cronwork@example.com"
    assert envelope.rcpt_tos == ["ann@example.com", "bob@example.com", "carol@example.com"]
    message = server.mailbox.message()
    assert message["From"] == "Cronwork <cronwork@example.com>"
    assert message["To"] == "ann@example.com, Bob Jones <bob@example.com>"
    assert message["Cc"] == "carol@example.com"
    assert message["Reply-To"] == "team@example.com"
    assert message["Subject"] == "Weekly report, run 42"
    assert message.get_content().strip() == "The report for 2026-03-30T01:00:00.000Z (run 42) is ready."
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None
    assert result == f"sent to 3 recipient(s) (message id {message['Message-ID']})"


def test_the_message_id_names_the_run_and_the_attempt_and_is_the_same_when_sent_again(
    server: SmtpServer,
) -> None:
    settings = server.settings()
    send(settings)
    send(settings)
    send(settings, attempt=2)

    first, again, retry = (message["Message-ID"] for message in server.mailbox.messages())
    assert first == again == message_id(context(settings))
    assert first.startswith("<cronwork.run-42.attempt-1.") and first.endswith("@example.com>")
    assert retry.startswith("<cronwork.run-42.attempt-2.")
    # Another deployment (another database) gives its run 42 another id: mailboxes drop repeated ids.
    elsewhere = replace(settings, database_url="postgresql://db2/cronwork", broker_url="amqp://b")
    assert message_id(context(elsewhere)) != first


def test_a_recipient_named_twice_gets_one_copy(server: SmtpServer) -> None:
    result = send(server.settings(), {**CONFIG, "cc": "ann@example.com"})

    assert server.mailbox.envelopes[0].rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert result.startswith("sent to 2 recipient(s)")


def test_the_placeholders_are_the_http_tasks_and_a_run_now_has_no_slot(server: SmtpServer) -> None:
    config = {
        "to": "ann@example.com",
        "subject": "run {{runId}}",
        "body": "[{{scheduledFor}}] {{attempt}} {{scheduleId}}",
    }

    send(server.settings(), config, scheduled_for=None, attempt=2)

    message = server.mailbox.message()
    assert (message["Subject"], message.get_content().strip()) == ("run 42", "[] 2 7")


def test_logs_in_when_a_username_is_set(start_server: StartServer) -> None:
    server = start_server(authenticated=True)

    result = send(server.settings(smtp_username="mailer", smtp_password=PASSWORD))

    assert server.mailbox.logins == [("mailer", PASSWORD)]
    assert len(server.mailbox.envelopes) == 1
    assert result.startswith("sent to 3 recipient(s)")


# --- TLS ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture
def certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Certificates:
    """A throwaway CA, trusted by this process (``SSL_CERT_FILE``), and a server certificate for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name | None,
        signer: ec.EllipticCurvePrivateKey,
        is_ca: bool,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if not is_ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("cronwork test CA", ca_key, None, ca_key, is_ca=True)
    server = certificate("127.0.0.1", server_key, ca.subject, ca_key, is_ca=False)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    # OpenSSL reads SSL_CERT_FILE each time a default context loads its trust store: the handler's does.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return Certificates(ca_file, server_context)


def test_starttls_upgrades_before_logging_in(start_server: StartServer, certificates: Certificates) -> None:
    # The server takes neither a login nor mail before TLS.
    server = start_server(authenticated=True, tls_context=certificates.server_context, require_starttls=True)

    result = send(server.settings(smtp_security="starttls", smtp_username="mailer", smtp_password=PASSWORD))

    assert server.mailbox.logins == [("mailer", PASSWORD)]
    assert len(server.mailbox.envelopes) == 1
    assert result.startswith("sent to 3 recipient(s)")


def test_tls_from_the_start(start_server: StartServer, certificates: Certificates) -> None:
    server = start_server(ssl_context=certificates.server_context)

    result = send(server.settings(smtp_security="tls"))

    assert result.startswith("sent to 3 recipient(s)")
    assert len(server.mailbox.envelopes) == 1


def test_starttls_against_a_server_without_it_fails_before_sending_anything(
    start_server: StartServer,
) -> None:
    server = start_server(authenticated=True)

    reason = failure(
        server.settings(smtp_security="starttls", smtp_username="mailer", smtp_password=PASSWORD)
    )

    assert reason == (
        f"the mail server 127.0.0.1:{server.port} does not offer STARTTLS (SMTP_SECURITY=starttls); "
        "set SMTP_SECURITY=tls or none if that is intended"
    )
    assert server.mailbox.logins == []  # the password never crossed in clear text
    assert server.mailbox.envelopes == []


def test_a_certificate_nobody_trusts_fails_the_run(
    start_server: StartServer, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(ssl_context=certificates.server_context)
    monkeypatch.delenv("SSL_CERT_FILE")

    reason = failure(server.settings(smtp_security="tls"))

    assert reason.startswith(f"could not reach the mail server 127.0.0.1:{server.port}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in reason
    assert server.mailbox.envelopes == []


# --- What a failure says ----------------------------------------------------------------------------------------


def test_without_smtp_host_the_run_fails_saying_so() -> None:
    reason = failure(Settings(smtp_host=""))

    assert reason == "SMTP_HOST is not set: this deployment sends no mail"


def test_an_unreachable_server_fails_naming_it_and_not_the_password() -> None:
    port = free_port()  # nothing listens there

    reason = failure(
        Settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_username="mailer",
            smtp_password=PASSWORD,
        )
    )

    assert reason.startswith(f"could not reach the mail server 127.0.0.1:{port}: ")
    assert "refused" in reason.lower()


def test_a_server_that_never_answers_fails_within_the_time_limit() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        begun = time.monotonic()

        reason = failure(
            Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"), time_limit_s=1
        )

    assert reason == f"could not reach the mail server 127.0.0.1:{port}: no answer within 1 s"
    assert time.monotonic() - begun < 5


def test_a_wrong_password_fails_with_the_servers_answer_and_not_the_password(
    start_server: StartServer,
) -> None:
    server = start_server(authenticated=True)

    reason = failure(server.settings(smtp_username="mailer", smtp_password=PASSWORD + "-not"))

    assert reason.startswith("the mail server refused the login of 'mailer' (SMTP_USERNAME): 535 ")
    assert PASSWORD + "-not" not in reason
    assert server.mailbox.envelopes == []


def test_every_recipient_refused_fails_with_the_servers_answer(server: SmtpServer) -> None:
    reason = failure(
        server.settings(smtp_password=PASSWORD), {**CONFIG, "to": "nobody@example.com", "cc": ""}
    )

    assert (
        reason == "the mail server refused every recipient: nobody@example.com (550 5.1.1 no such user here)"
    )
    assert server.mailbox.envelopes == []


def test_one_recipient_refused_fails_the_run_naming_it_and_whom_it_reached(server: SmtpServer) -> None:
    settings = server.settings()

    reason = failure(settings, {**CONFIG, "cc": "nobody@example.com"})

    # The others got it; a retry sends it to them again, recognisable by its run in the Message-ID.
    assert server.mailbox.envelopes[0].rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert reason == (
        "the mail server refused nobody@example.com (550 5.1.1 no such user here); it accepted the other 2 "
        f"recipient(s) (message id {message_id(context(settings))})"
    )


def test_a_password_the_server_echoes_is_masked(server: SmtpServer) -> None:
    server.mailbox.refusal = f"550 5.1.1 unknown user (you said {PASSWORD})"

    reason = failure(
        server.settings(smtp_password=PASSWORD), {**CONFIG, "to": "nobody@example.com", "cc": ""}
    )

    assert (
        reason
        == "the mail server refused every recipient: nobody@example.com (550 5.1.1 unknown user (you said ••••••))"
    )


# --- Config checks ----------------------------------------------------------------------------------------------


def test_a_valid_config_has_no_errors() -> None:
    assert SEND_EMAIL.config_errors(CONFIG) == {}
    assert SEND_EMAIL.config_errors({"to": "root@localhost", "subject": "s", "body": "b"}) == {}


def test_to_subject_and_body_are_required() -> None:
    assert SEND_EMAIL.config_errors({}) == {
        "to": ["is required"],
        "subject": ["is required"],
        "body": ["is required"],
    }


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("to", "ann@example.com, not an address", "is not an email address: not an address"),
        ("to", "ann@", "is not an email address: ann@"),
        ("to", " , ", "must name at least one address"),
        ("cc", "@example.com", "is not an email address: @example.com"),
        (
            "cc",
            "ann@example.com; bob@example.com",
            "is not an email address: ann@example.com; bob@example.com",
        ),
        ("replyTo", "team at example.com", "is not an email address: team at example.com"),
        ("subject", "two\nlines", "must be one line"),
        ("subject", "run {{runid}}", f"unknown placeholder {{{{runid}}}}: the placeholders are {KNOWN}"),
        ("body", "{{slot}} and {{runId}}", f"unknown placeholder {{{{slot}}}}: the placeholders are {KNOWN}"),
    ],
)
def test_a_config_that_cannot_be_sent_names_the_field_and_why(key: str, value: str, reason: str) -> None:
    assert SEND_EMAIL.config_errors({**CONFIG, key: value}) == {key: [reason]}


def test_send_email_is_a_real_type_offered_without_the_demo_types() -> None:
    from shared.task_types import offered_task_types

    assert offered_task_types(Settings(demo_task_types="false"))["send_email"] is SEND_EMAIL
    assert SEND_EMAIL.demo is False
