"""The HTTP task, its handler called directly with a RunContext against local servers: what it sends, what it
records, and what it refuses to reach (checked after DNS resolution and on every redirect)."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.secrets import MASK
from shared.settings import Settings
from shared.task_types import RunContext, TaskFailed
from shared.tasks.http import EXCERPT_CHARS, EXCERPT_READ_BYTES, HTTP_REQUEST, http_request

TOKEN = "tok-3f9a7c1e55d24b0e"
PASSWORD = "pw-8b1d0e6a2c"
LOCAL = "127.0.0.1/32"  # where the test servers listen, opened by HTTP_ALLOWED_NETWORKS


def context(
    config: dict[str, Any],
    allowed: str = LOCAL,
    time_limit_s: int = 30,
    scheduled_for: dt.datetime | None = None,
    schedule_id: int | None = 7,
) -> RunContext:
    return RunContext(
        config=config,
        run_id=42,
        attempt=2,
        schedule_id=schedule_id,
        scheduled_for=scheduled_for,
        time_limit_s=time_limit_s,
        settings=Settings(http_allowed_networks=allowed),
    )


def failure(config: dict[str, Any], **kwargs: Any) -> str:
    """The run's error message."""
    with pytest.raises(TaskFailed) as failed:
        http_request(context(config, **kwargs))
    return str(failed.value)


# --- Local servers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: Message
    body: bytes


class Endpoint(BaseHTTPRequestHandler):
    """Routes: /redirect?to=URL&status=302, /hop/N (N redirects to /hop/0), /status/N, /echo (the
    Authorization header and the body, sent back; /echo-failing with a 500, /echo-after-padding after 4 kB of
    spaces), /big (10 kB of words and whitespace), anything else 200."""

    received: list[Received]

    def answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append(Received(self.command, self.path, self.headers, body))
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if url.path == "/redirect":
            self.reply(int(query.get("status", "302")), b"", location=query["to"])
        elif url.path.startswith("/hop/"):
            left = int(url.path.removeprefix("/hop/"))
            if left:
                self.reply(302, b"", location=f"/hop/{left - 1}")
            else:
                self.reply(200, b"arrived")
        elif url.path.startswith("/status/"):
            status = int(url.path.removeprefix("/status/"))
            self.reply(status, f"status {status} from the test server".encode())
        elif url.path == "/echo":
            self.reply(200, f"auth={self.headers.get('Authorization')} body={body.decode()}".encode())
        elif url.path == "/echo-failing":
            self.reply(500, f"auth={self.headers.get('Authorization')} failed".encode())
        elif url.path == "/echo-after-padding":
            padded = b" " * (EXCERPT_READ_BYTES - 16) + self.headers.get("Authorization", "").encode()
            self.reply(200, padded)
        elif url.path == "/big":
            self.reply(200, b"lorem   ipsum\n\n\tdolor " * 500)
        else:
            self.reply(200, b"hello from the test server")

    def reply(self, status: int, body: bytes, location: str | None = None) -> None:
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer  # noqa: N815 (http.server's naming)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Server:
    scheme: str
    port: int
    received: list[Received] = field(default_factory=list)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Starts HTTP servers on 127.0.0.1 (HTTPS with a ``tls`` context); stops them after the test."""
    running: list[ThreadingHTTPServer] = []

    def start(tls: ssl.SSLContext | None = None) -> Server:
        received: list[Received] = []
        handler = type("Handler", (Endpoint,), {"received": received})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        running.append(httpd)
        return Server("https" if tls else "http", httpd.server_address[1], received)

    yield start
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in held:
        connection.close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a TCP connection was attempted to, in order."""
    dialled: list[str] = []
    real = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        dialled.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return dialled


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """Names the resolver answers with given addresses: each lookup takes the next answer (the last one
    repeats); other names resolve as usual."""
    answers: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        queue = answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# --- TLS -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A test CA and a server certificate for ``api.cronwork.test`` signed by it."""
    directory = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("cronwork test CA", ca_key, "cronwork test CA", ca_key, ca=True)
    server_cert = certificate("api.cronwork.test", server_key, "cronwork test CA", ca_key, ca=False)
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    return Tls(ca_file, server_context)


@pytest.fixture
def https_server(
    tls: Tls,
    start_server: Callable[..., Server],
    monkeypatch: pytest.MonkeyPatch,
    dns: dict[str, list[list[str]]],
) -> Server:
    """An HTTPS server for ``api.cronwork.test`` (which resolves to 127.0.0.1), its CA trusted the way a
    deployment trusts one (``SSL_CERT_FILE``)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    dns["api.cronwork.test"] = [["127.0.0.1"]]
    dns["other.cronwork.test"] = [["127.0.0.1"]]
    return start_server(tls.server_context)


# --- Refusals --------------------------------------------------------------------------------------------------


def test_the_cloud_metadata_address_is_refused_and_never_contacted(connections: list[str]) -> None:
    error = failure({"url": "http://169.254.169.254/latest/meta-data/iam/"}, allowed="")

    assert error == (
        "refused: 169.254.169.254 is a link-local address (cloud metadata); allow it with HTTP_ALLOWED_NETWORKS"
    )
    assert connections == []


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("172.16.0.1", "172.16.0.1 is a private address"),
        ("192.168.1.1", "192.168.1.1 is a private address"),
        ("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("169.254.10.1", "169.254.10.1 is a link-local address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("240.0.0.1", "240.0.0.1 is a reserved address"),
        ("[::1]", "::1 is a loopback address"),
        ("[fe80::1]", "fe80::1 is a link-local address"),
        ("[fc00::1]", "fc00::1 is a private address"),
        ("[fd00:ec2::254]", "fd00:ec2::254 is a private address (cloud metadata)"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1 is a loopback address"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe is a link-local address (cloud metadata)"),
        ("2130706433", "2130706433 resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_internal_addresses_are_refused_by_default(host: str, kind: str, connections: list[str]) -> None:
    assert failure({"url": f"http://{host}:8080/"}, allowed="") == (
        f"refused: {kind}; allow it with HTTP_ALLOWED_NETWORKS"
    )
    assert connections == []


def test_a_name_that_resolves_to_loopback_is_refused(connections: list[str]) -> None:
    error = failure({"url": "http://localhost:8080/admin"}, allowed="")

    assert error.startswith("refused: localhost resolves to ")
    assert "a loopback address; allow it with HTTP_ALLOWED_NETWORKS" in error
    assert connections == []


def test_one_internal_address_among_public_ones_refuses_the_host(
    dns: dict[str, list[list[str]]], connections: list[str]
) -> None:
    dns["mixed.example"] = [["93.184.216.34", "10.0.0.8"]]

    assert failure({"url": "https://mixed.example/"}) == (
        "refused: mixed.example resolves to 10.0.0.8, a private address; allow it with HTTP_ALLOWED_NETWORKS"
    )
    assert connections == []


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(
    server: Server, dns: dict[str, list[list[str]]], connections: list[str]
) -> None:
    # DNS rebinding: the first answer passes the check, a second lookup would point at the metadata service.
    dns["rebind.example"] = [["127.0.0.1"], ["169.254.169.254"]]

    result = http_request(context({"url": server.url("/", host="rebind.example")}))

    assert result == "HTTP 200: hello from the test server"
    assert connections == ["127.0.0.1"]
    assert server.received[0].headers["Host"] == f"rebind.example:{server.port}"


def test_a_redirect_to_the_metadata_service_is_refused_and_never_followed(
    server: Server, connections: list[str]
) -> None:
    target = "http://169.254.169.254/latest/meta-data/"

    error = failure({"url": server.url(f"/redirect?to={target}")})

    assert error == (
        f"refused: redirect to {target}: 169.254.169.254 is a link-local address (cloud metadata); "
        "allow it with HTTP_ALLOWED_NETWORKS"
    )
    assert connections == ["127.0.0.1"]


def test_a_redirect_to_a_name_of_a_private_address_is_refused(
    server: Server, dns: dict[str, list[list[str]]], connections: list[str]
) -> None:
    dns["db.internal"] = [["10.0.0.9"]]

    error = failure({"url": server.url("/redirect?to=http://db.internal:5432/&status=307")})

    assert error == (
        "refused: redirect to http://db.internal:5432/: db.internal resolves to 10.0.0.9, a private address; "
        "allow it with HTTP_ALLOWED_NETWORKS"
    )
    assert connections == ["127.0.0.1"]


def test_the_allow_list_opens_what_it_names(server: Server) -> None:
    assert failure({"url": server.url()}, allowed="").startswith("refused: 127.0.0.1 is a loopback address")
    assert failure({"url": server.url()}, allowed="10.0.0.0/8").startswith("refused: 127.0.0.1")

    assert http_request(context({"url": server.url()}, allowed="10.0.0.0/8, 127.0.0.0/8")).startswith(
        "HTTP 200"
    )


def test_an_allow_list_that_is_not_a_network_fails_the_run_saying_so(server: Server) -> None:
    assert failure({"url": server.url()}, allowed="127.0.0.0/33") == (
        "HTTP_ALLOWED_NETWORKS: '127.0.0.0/33' is not a network (e.g. 10.20.0.0/16)"
    )


def test_a_redirect_from_https_to_http_is_refused(https_server: Server, server: Server) -> None:
    error = failure({"url": https_server.url(f"/redirect?to={server.url('/')}", host="api.cronwork.test")})

    assert error == f"refused: HTTP 302 redirects from https to http ({server.url('/')})"
    assert server.received == []


# --- TLS -------------------------------------------------------------------------------------------------------


def test_https_to_a_pinned_address_checks_the_certificate_against_the_host_name(
    https_server: Server, connections: list[str]
) -> None:
    result = http_request(context({"url": https_server.url("/", host="api.cronwork.test")}))

    assert result == "HTTP 200: hello from the test server"
    assert connections == ["127.0.0.1"]
    assert https_server.received[0].headers["Host"] == f"api.cronwork.test:{https_server.port}"


def test_https_fails_when_the_certificate_is_for_another_name(https_server: Server) -> None:
    error = failure({"url": https_server.url("/", host="other.cronwork.test")})

    assert error.startswith("TLS with other.cronwork.test failed: Hostname mismatch")
    assert https_server.received == []


# --- What is sent ----------------------------------------------------------------------------------------------


def test_headers_reach_the_server(server: Server) -> None:
    http_request(
        context({"url": server.url(), "headers": {"Accept": "application/json", "X-Team": "payments"}})
    )

    (received,) = server.received
    assert (received.headers["Accept"], received.headers["X-Team"]) == ("application/json", "payments")
    assert received.headers["User-Agent"] == "cronwork"
    assert received.headers["Authorization"] is None


def test_a_bearer_token_reaches_the_server(server: Server) -> None:
    http_request(context({"url": server.url(), "bearerToken": TOKEN}))

    assert server.received[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_basic_auth_reaches_the_server(server: Server) -> None:
    http_request(context({"url": server.url(), "basicUsername": "reporter", "basicPassword": PASSWORD}))

    encoded = base64.b64encode(f"reporter:{PASSWORD}".encode()).decode()
    assert server.received[0].headers["Authorization"] == f"Basic {encoded}"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_the_body_is_sent_with_its_method(server: Server, method: str) -> None:
    http_request(context({"url": server.url("/hooks"), "method": method, "body": '{"report": "nightly"}'}))

    (received,) = server.received
    assert (received.method, received.path, received.body) == (method, "/hooks", b'{"report": "nightly"}')
    assert received.headers["Content-Type"] == "application/json"


def test_placeholders_name_the_slot_and_the_run(server: Server) -> None:
    body = (
        '{"slot": "{{scheduledFor}}", "run": {{runId}}, "attempt": {{attempt}}, "schedule": "{{scheduleId}}"}'
    )
    slot = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    http_request(context({"url": server.url(), "method": "POST", "body": body}, scheduled_for=slot))
    http_request(
        context({"url": server.url(), "method": "POST", "body": body}, scheduled_for=None, schedule_id=None)
    )

    assert [received.body for received in server.received] == [
        b'{"slot": "2026-01-05T09:00:00.000Z", "run": 42, "attempt": 2, "schedule": "7"}',
        b'{"slot": "", "run": 42, "attempt": 2, "schedule": ""}',
    ]


def test_a_body_that_is_not_json_is_sent_as_text_unless_a_header_says_otherwise(server: Server) -> None:
    http_request(context({"url": server.url(), "method": "POST", "body": "run {{runId}}"}))
    http_request(
        context(
            {
                "url": server.url(),
                "method": "POST",
                "body": "a=1",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            }
        )
    )

    assert [(r.headers["Content-Type"], r.body) for r in server.received] == [
        ("text/plain; charset=utf-8", b"run 42"),
        ("application/x-www-form-urlencoded", b"a=1"),
    ]


def test_head_records_the_status_alone(server: Server) -> None:
    assert http_request(context({"url": server.url(), "method": "HEAD"})) == "HTTP 200"


# --- What is recorded ------------------------------------------------------------------------------------------


def test_a_2xx_answer_is_the_result_with_its_status_and_an_excerpt(server: Server) -> None:
    assert (
        http_request(context({"url": server.url("/status/201")}))
        == "HTTP 201: status 201 from the test server"
    )


def test_a_status_outside_the_accepted_ones_fails_with_status_and_excerpt(server: Server) -> None:
    assert failure({"url": server.url("/status/503")}) == (
        "HTTP 503, not accepted (200-299): status 503 from the test server"
    )


def test_accepted_statuses_are_the_configured_ones(server: Server) -> None:
    config = {"acceptedStatus": "200-299,404"}

    assert http_request(context({"url": server.url("/status/404"), **config})).startswith("HTTP 404: ")
    assert failure({"url": server.url("/status/410"), **config}).startswith(
        "HTTP 410, not accepted (200-299,404)"
    )
    assert failure({"url": server.url("/status/200"), "acceptedStatus": "5xx"}).startswith(
        "HTTP 200, not accepted"
    )


def test_the_excerpt_is_bounded_and_on_one_line(server: Server) -> None:
    result = http_request(context({"url": server.url("/big")}))

    assert result.startswith("HTTP 200: lorem ipsum dolor lorem ipsum dolor")
    assert len(result) == len("HTTP 200: ") + EXCERPT_CHARS and result.endswith("…")
    assert "\n" not in result and "  " not in result


def test_credentials_never_appear_in_the_result_or_the_error(server: Server) -> None:
    # An endpoint that echoes the Authorization header back: the excerpt shows the mask, not the secret.
    bearer = {"bearerToken": TOKEN}
    basic = {"basicUsername": "reporter", "basicPassword": PASSWORD}
    encoded = base64.b64encode(f"reporter:{PASSWORD}".encode()).decode()

    results = [
        http_request(context({"url": server.url("/echo"), **bearer})),
        http_request(context({"url": server.url("/echo"), "method": "POST", "body": TOKEN, **bearer})),
        http_request(context({"url": server.url("/echo"), **basic})),
    ]
    errors = [
        failure({"url": server.url("/echo-failing"), **bearer}),
        failure({"url": server.url("/echo-failing"), **basic}),
    ]

    assert results[0] == f"HTTP 200: auth=Bearer {MASK} body="
    assert errors[1] == f"HTTP 500, not accepted (200-299): auth=Basic {MASK} failed"
    for message in results + errors:
        assert TOKEN not in message and PASSWORD not in message and encoded not in message


def test_a_credential_cut_off_by_the_read_leaves_no_beginning_behind(server: Server) -> None:
    # The body is read only up to EXCERPT_READ_BYTES: here the read ends inside the echoed token, after
    # whitespace the excerpt collapses, so its first characters would otherwise lead the excerpt.
    result = http_request(context({"url": server.url("/echo-after-padding"), "bearerToken": TOKEN}))

    assert result == f"HTTP 200: Bearer {MASK}"
    assert TOKEN[:4] not in result


# --- Redirects -------------------------------------------------------------------------------------------------


def test_redirects_are_followed_up_to_the_limit(server: Server) -> None:
    assert http_request(context({"url": server.url("/hop/3"), "maxRedirects": 3})) == "HTTP 200: arrived"

    error = failure({"url": server.url("/hop/3"), "maxRedirects": 2})

    assert (
        error
        == f"HTTP 302: stopped after 2 redirects (maxRedirects); the next went to {server.url('/hop/0')}"
    )
    assert len(server.received) == 4 + 3


def test_with_no_redirects_allowed_a_redirect_is_the_answer(server: Server) -> None:
    config = {"url": server.url("/hop/1"), "maxRedirects": 0}

    assert failure(config).startswith("HTTP 302: stopped after 0 redirects")
    assert http_request(context({**config, "acceptedStatus": "302"})) == "HTTP 302"
    assert [r.path for r in server.received] == ["/hop/1", "/hop/1"]


def test_a_303_turns_a_post_into_a_get_and_a_307_repeats_it(server: Server) -> None:
    post = {"method": "POST", "body": '{"a": 1}'}

    http_request(context({"url": server.url("/redirect?status=303&to=/echo"), **post}))
    http_request(context({"url": server.url("/redirect?status=307&to=/echo"), **post}))

    assert [(r.method, r.path, r.body, r.headers["Content-Type"]) for r in server.received] == [
        ("POST", "/redirect?status=303&to=/echo", b'{"a": 1}', "application/json"),
        ("GET", "/echo", b"", None),
        ("POST", "/redirect?status=307&to=/echo", b'{"a": 1}', "application/json"),
        ("POST", "/echo", b'{"a": 1}', "application/json"),
    ]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        (
            "ftp://files.example.com/report.csv",
            "ftp://files.example.com/report.csv, not an http:// or https:// URL",
        ),
        ("http://files.example.com:99999/x", "http://files.example.com/x, not a valid URL"),
    ],
    ids=["not-http", "bad-port"],
)
def test_a_redirect_to_something_else_than_an_http_url_fails_the_run(
    server: Server, location: str, reason: str
) -> None:
    assert failure({"url": server.url(f"/redirect?to={location}")}) == f"HTTP 302 redirects to {reason}"


def test_credentials_follow_a_redirect_only_within_the_origin(start_server: Callable[..., Server]) -> None:
    first, elsewhere = start_server(), start_server()
    bearer = {"bearerToken": TOKEN}

    http_request(context({"url": first.url(f"/redirect?to={first.url('/echo')}"), **bearer}))
    http_request(context({"url": first.url(f"/redirect?to={elsewhere.url('/echo')}"), **bearer}))

    assert [r.headers["Authorization"] for r in first.received] == [f"Bearer {TOKEN}"] * 3
    assert [r.headers["Authorization"] for r in elsewhere.received] == [None]


# --- Time ------------------------------------------------------------------------------------------------------


def test_no_answer_within_the_timeout_fails_the_run(silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/slow"
    begun = time.monotonic()

    assert failure({"url": url, "timeoutS": 1}) == f"no answer from {url} within 1 s"
    assert time.monotonic() - begun < 3


def test_the_timeout_never_exceeds_the_runs_time_limit(silent_port: int) -> None:
    begun = time.monotonic()

    error = failure({"url": f"http://127.0.0.1:{silent_port}/", "timeoutS": 60}, time_limit_s=1)

    assert error.endswith("within 1 s")
    assert time.monotonic() - begun < 3


def test_a_closed_port_fails_the_run_naming_the_address(connections: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    assert failure({"url": f"http://127.0.0.1:{port}/never"}) == (
        f"request to http://127.0.0.1:{port}/never failed: Connection refused"
    )


@pytest.fixture
def answering_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port whose server reads the request, then sends ``request.param`` (bytes) and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(request.param)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize(
    ("answering_port", "reason"),
    [
        (b"", "closed the connection without answering"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "answered something that is not HTTP (BadStatusLine)"),
    ],
    indirect=["answering_port"],
    ids=["nothing", "not-http"],
)
def test_a_server_that_does_not_speak_http_fails_the_run_saying_so(answering_port: int, reason: str) -> None:
    url = f"http://127.0.0.1:{answering_port}/"

    assert failure({"url": url}) == f"{url} {reason}"


# --- The config, as a schedule stores it -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key", "reason"),
    [
        ({"method": "TRACE"}, "method", "must be one of GET, POST, PUT, PATCH, DELETE, HEAD"),
        (
            {"headers": ["Accept"]},
            "headers",
            'must be an object of text values, e.g. {"Accept": "application/json"}',
        ),
        ({"headers": {"X-Count": 3}}, "headers", "X-Count must be text"),
        ({"headers": {"Bad Name": "x"}}, "headers", "'Bad Name' is not a header name"),
        ({"headers": {"X-A": "one\r\nX-B: two"}}, "headers", "X-A must be one line"),
        (
            {"headers": {"Authorization": "Bearer abc"}},
            "headers",
            "Authorization would be shown to anyone who reads the schedule: use bearerToken or basic auth (secret fields)",
        ),
        ({"headers": {"Host": "other"}}, "headers", "Host is set by cronwork"),
        ({"body": "x"}, "body", "is sent only with POST, PUT, PATCH, DELETE"),
        (
            {"method": "POST", "body": "{{slot}}"},
            "body",
            "unknown placeholder {{slot}}: the placeholders are {{scheduledFor}}, {{runId}}, {{attempt}}, {{scheduleId}}",
        ),
        (
            {"bearerToken": {"env": "T"}, "basicUsername": "u"},
            "bearerToken",
            "use a bearer token or basic auth, not both",
        ),
        ({"basicPassword": {"env": "P"}}, "basicUsername", "is required with basicPassword"),
        ({"basicUsername": "a:b"}, "basicUsername", "must not hold ':' or control characters"),
        (
            {"acceptedStatus": "2xx,ok"},
            "acceptedStatus",
            "'ok' is not a status or a range: write e.g. 200-299,304 or 2xx",
        ),
        ({"acceptedStatus": "299-200"}, "acceptedStatus", "'299-200' is not within 100-599, lowest first"),
        ({"acceptedStatus": "600"}, "acceptedStatus", "'600' is not within 100-599, lowest first"),
        ({"timeoutS": 0}, "timeoutS", "must be at least 1"),
        ({"maxRedirects": 11}, "maxRedirects", "must be at most 10"),
        ({"maxRedirects": 1.5}, "maxRedirects", "must be a whole number"),
        (
            {"url": "https://user:pw@example.com/"},
            "url",
            "must not hold credentials: use basicUsername and basicPassword (a secret) instead",
        ),
        ({"url": "https://example.com:99999/"}, "url", "has a port or a host name that is not valid"),
    ],
)
def test_a_config_the_task_cannot_run_is_refused_naming_the_field(
    config: dict[str, Any], key: str, reason: str
) -> None:
    assert HTTP_REQUEST.config_errors({"url": "https://example.com/hook", **config}) == {key: [reason]}


def test_a_complete_config_is_accepted() -> None:
    config = {
        "url": "https://example.com/hook",
        "method": "POST",
        "headers": {"Accept": "application/json"},
        "body": '{"slot": "{{scheduledFor}}"}',
        "bearerToken": {"encrypted": "gAAAA..."},
        "acceptedStatus": "200-299, 304",
        "timeoutS": 2.5,
        "maxRedirects": 0,
    }

    assert HTTP_REQUEST.config_errors(config) == {}
    assert HTTP_REQUEST.secret_keys == {"bearerToken", "basicPassword"}
