"""The email task: send one message through the deployment's mail server (the ``SMTP_*`` settings).

The server, its security, the login and the sender are the deployment's (settings, the password from a Secret);
a schedule says only who gets what. The run succeeds once the server has accepted the message for every
recipient; anything else fails the attempt with the server's answer (never the password).
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

from shared.settings import Settings
from shared.task_types import ConfigField, FieldType, RunContext, TaskFailed, TaskType
from shared.tasks.http import PLACEHOLDER, PLACEHOLDERS, filled_body

# The longest one SMTP step (connecting, a command's answer) is waited for; the attempt's time limit caps it.
SMTP_STEP_TIMEOUT_S = 30
# A simple check, not RFC 5322: one ``@`` between a local part and a domain, no spaces or separators.
ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\".][^@\s<>()\[\],;:\"]*")
ADDRESS_KEYS = ("to", "cc", "replyTo")
MASK = "••••••"


def send_email(context: RunContext) -> str:
    """Send the configured message to its recipients; the result names how many and the Message-ID."""
    settings = context.settings
    if not settings.smtp_host:
        raise TaskFailed("SMTP_HOST is not set: this deployment sends no mail")
    message = compose(context)
    recipients = envelope_recipients(context.config)
    timeout_s = min(SMTP_STEP_TIMEOUT_S, context.time_limit_s)
    try:
        refused = _deliver(settings, message, recipients, timeout_s)
    except TaskFailed as exc:
        raise TaskFailed(_without_password(str(exc), settings)) from None
    if refused:
        accepted = len(recipients) - len(refused)
        raise TaskFailed(
            _without_password(
                f"the mail server refused {_refusals(refused)}; it accepted the other {accepted} "
                f"recipient(s) (message id {message['Message-ID']})",
                settings,
            )
        )
    return f"sent to {len(recipients)} recipient(s) (message id {message['Message-ID']})"


def compose(context: RunContext) -> EmailMessage:
    """The message one attempt sends: the config's addresses, subject and body (the HTTP task's placeholders
    filled in), from ``SMTP_FROM``, with a Message-ID of its own run and attempt."""
    config = context.config
    message = EmailMessage()
    message["From"] = context.settings.smtp_from
    message["To"] = ", ".join(_entries(config["to"]))
    if config.get("cc"):
        message["Cc"] = ", ".join(_entries(config["cc"]))
    if config.get("replyTo"):
        message["Reply-To"] = ", ".join(_entries(config["replyTo"]))
    message["Subject"] = filled_body(config["subject"], context)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(context)
    # RFC 3834: automatic mail; out-of-office responders leave it alone.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(filled_body(config["body"], context))
    return message


def envelope_recipients(config: Mapping[str, Any]) -> list[str]:
    """The bare addresses of ``to`` and ``cc``, each once: whom the server is asked to deliver to."""
    entries = _entries(config["to"]) + _entries(config.get("cc") or "")
    return list(dict.fromkeys(parseaddr(entry)[1] for entry in entries))


def message_id(context: RunContext) -> str:
    """The Message-ID of one attempt of one run, the same whenever it is computed: a mail sent again (a retry,
    or a send the server took before the connection broke) is recognisable as the same run's.

    Run ids are only unique within a database, and mail systems drop a second message with a Message-ID they
    have seen, so the id also carries a digest of the deployment's database (its address without the
    credentials): a staging and a production deployment sending as the same domain never collide."""
    domain = parseaddr(context.settings.smtp_from)[1].rpartition("@")[2] or "localhost"
    return f"<cronwork.run-{context.run_id}.attempt-{context.attempt}.{_deployment_tag(context.settings)}@{domain}>"


def _deployment_tag(settings: Settings) -> str:
    url = urlsplit(settings.sqlalchemy_url)
    where = f"{url.scheme}://{url.hostname or ''}:{url.port or ''}{url.path}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def check_email_config(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each address of ``to``, ``cc`` and ``replyTo`` is an address; the subject is one line; the subject and
    the body use only the HTTP task's placeholders."""
    errors: dict[str, list[str]] = {}
    for key in ADDRESS_KEYS:
        value = config.get(key)
        if not value:
            continue
        entries = _entries(value)
        bad = [entry for entry in entries if not _is_address(entry)]
        if bad:
            errors[key] = [f"is not an email address: {', '.join(bad)}"]
        elif not entries:
            errors[key] = ["must name at least one address"]
    if "\n" in config["subject"] or "\r" in config["subject"]:
        errors.setdefault("subject", []).append("must be one line")
    for key in ("subject", "body"):
        unknown = sorted({name for name in PLACEHOLDER.findall(config[key]) if name not in PLACEHOLDERS})
        if unknown:
            known = ", ".join(f"{{{{{name}}}}}" for name in PLACEHOLDERS)
            errors.setdefault(key, []).append(
                f"unknown placeholder {{{{{unknown[0]}}}}}: the placeholders are {known}"
            )
    return errors


def _entries(value: str) -> list[str]:
    """The comma-separated entries of an address field, blanks left out."""
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _is_address(entry: str) -> bool:
    """``a@example.com`` or ``Name <a@example.com>``."""
    name, address = parseaddr(entry)
    if not ADDRESS.fullmatch(address) or address.endswith("."):
        return False
    # parseaddr drops what it cannot read ("not an address" gives "not"): the entry must be what it read.
    return entry == address or (bool(name) and entry.endswith(f"<{address}>"))


def _deliver(
    settings: Settings, message: EmailMessage, recipients: list[str], timeout_s: float
) -> dict[str, tuple[int, bytes]]:
    """Connect as ``SMTP_SECURITY`` says, log in when ``SMTP_USERNAME`` is set, send; the recipients the
    server refused while accepting others. Every failure is a ``TaskFailed`` in the server's words."""
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        smtp = _connect(settings, timeout_s)
    except (OSError, smtplib.SMTPException) as exc:
        raise TaskFailed(f"could not reach the mail server {where}: {_reason(exc, timeout_s)}") from None
    try:
        if settings.smtp_security == "starttls":
            _start_tls(smtp, where)
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        return smtp.send_message(message, from_addr=parseaddr(settings.smtp_from)[1], to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        raise TaskFailed(f"the mail server refused every recipient: {_refusals(exc.recipients)}") from None
    except smtplib.SMTPSenderRefused as exc:
        raise TaskFailed(
            f"the mail server refused the sender {exc.sender} (SMTP_FROM): {_answer(exc)}"
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise TaskFailed(
            f"the mail server refused the login of {settings.smtp_username!r} (SMTP_USERNAME): {_answer(exc)}"
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise TaskFailed(f"the mail server {where} answered {_answer(exc)}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TaskFailed(
            f"sending through the mail server {where} failed: {_reason(exc, timeout_s)}"
        ) from None
    finally:
        _quit(smtp)


def _connect(settings: Settings, timeout_s: float) -> smtplib.SMTP:
    if settings.smtp_security == "tls":
        return smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=timeout_s, context=ssl.create_default_context()
        )
    return smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout_s)


def _start_tls(smtp: smtplib.SMTP, where: str) -> None:
    """Upgrade to TLS, or fail: never send credentials or mail in clear text when TLS was asked for."""
    smtp.ehlo()
    if not smtp.has_extn("starttls"):
        raise TaskFailed(
            f"the mail server {where} does not offer STARTTLS (SMTP_SECURITY=starttls); "
            "set SMTP_SECURITY=tls or none if that is intended"
        )
    smtp.starttls(context=ssl.create_default_context())
    smtp.ehlo()


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye; once the server has accepted the message, a failing QUIT changes nothing."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _answer(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
    return f"{exc.smtp_code} {error}"


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {answer.decode('utf-8', 'replace')})"
        for address, (code, answer) in refused.items()
    )


def _reason(exc: BaseException, timeout_s: float) -> str:
    # smtplib reports a read that timed out as SMTPServerDisconnected, the TimeoutError as its context.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return str(exc) or type(exc).__name__


def _without_password(text: str, settings: Settings) -> str:
    """A server may echo what it was sent; its answer is shown, the password never."""
    if not settings.smtp_password:
        return text
    return text.replace(settings.smtp_password, MASK)


SEND_EMAIL = TaskType(
    id="send_email",
    label="Email",
    description="Sends an email through the deployment's mail server (SMTP_HOST)",
    handler=send_email,
    check_config=check_email_config,
    config_fields=(
        ConfigField("to", "To", FieldType.TEXT, required=True, help="Addresses, separated by commas"),
        ConfigField("cc", "Cc", FieldType.TEXT, help="Addresses, separated by commas"),
        ConfigField("replyTo", "Reply to", FieldType.TEXT, help="Where replies go (default: the sender)"),
        ConfigField(
            "subject",
            "Subject",
            FieldType.TEXT,
            required=True,
            help="{{scheduledFor}}, {{runId}}, {{attempt}} and {{scheduleId}} are filled in",
        ),
        ConfigField(
            "body",
            "Body",
            FieldType.TEXT,
            required=True,
            help="Plain text; {{scheduledFor}}, {{runId}}, {{attempt}} and {{scheduleId}} are filled in",
        ),
    ),
)
