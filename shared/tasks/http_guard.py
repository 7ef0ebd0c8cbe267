"""Where the HTTP task may connect: a guard against server-side request forgery.

A schedule's URL is written by whoever may create schedules, and the request leaves from inside the
cluster: left alone, ``http://169.254.169.254/`` hands out the node's cloud credentials and
``http://10.0.0.7:6379/`` reaches services no one meant to expose. So every host is resolved here, each
address it resolves to is checked, and the connection is made to a checked address itself, never to the
name again: a DNS answer that changes between the check and the connect (DNS rebinding) cannot slip
through. Loopback, link-local (the cloud metadata services among them), private, shared (CGNAT),
unspecified, multicast and reserved addresses are refused unless a network of ``HTTP_ALLOWED_NETWORKS``
holds them.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Sequence

from shared.settings import parse_networks
from shared.task_types import TaskFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HINT = "allow it with HTTP_ALLOWED_NETWORKS"
CLOUD_METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle ...
        "fd00:ec2::254",  # AWS over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud
    )
)
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network) for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address in its last 32 bits


class Refused(TaskFailed):
    """A request the HTTP task will not make; its message is the run's error message.

    Parameters:
      reason: what was refused and why ("169.254.169.254 is a link-local address (cloud metadata)").
      hint: how to open it, if it can be opened (by default: the allow-list).
    """

    def __init__(self, reason: str, hint: str = ALLOW_HINT) -> None:
        self.reason, self.hint = reason, hint
        # Another attempt would be refused the same way: the run fails at once.
        super().__init__(f"refused: {reason}" + (f"; {hint}" if hint else ""), retry=False)


def allowed_networks(text: str) -> tuple[IPNetwork, ...]:
    """The networks of ``HTTP_ALLOWED_NETWORKS``; a run fails, saying which item, if one is not a network (the
    services refuse to start with such a value; a Settings built in code is checked here)."""
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise TaskFailed(str(exc), retry=False) from None


def _effective(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries and routes to (mapped, 6to4, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64_NETWORK:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def denied_kind(address: IPAddress) -> str | None:
    """What kind of address this is, when the HTTP task refuses it by default ("a loopback address"); None
    for a public address."""
    target = _effective(address)
    kind = _kind(target)
    if kind and (address in CLOUD_METADATA or target in CLOUD_METADATA):
        return f"{kind} (cloud metadata)"
    return kind


def _kind(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in SHARED_NETWORK:
        return "a shared (carrier-grade NAT) address"
    if any(address in network for network in PRIVATE_NETWORKS):
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def _is_allowed(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    candidates = {address, _effective(address)}
    return any(candidate in network for candidate in candidates for network in allowed)


def checked_addresses(host: str, port: int, allowed: Sequence[IPNetwork]) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses, in the resolver's order, once every one of them passed the
    guard; ``Refused`` naming the first that did not. One refused address refuses the host, whichever the
    connection would have used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TaskFailed(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 scope (fe80::1%eth0)
        if address not in addresses:
            addresses.append(address)
    for address in addresses:
        kind = denied_kind(address)
        if kind and not _is_allowed(address, allowed):
            subject = f"{address} is" if _same_address(host, address) else f"{host} resolves to {address},"
            raise Refused(f"{subject} {kind}")
    return addresses


def _same_address(host: str, address: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        return False


def _dial(addresses: Sequence[IPAddress], port: int, timeout_s: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers (each one already checked)."""
    error: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((str(address), port), timeout_s)
        except TimeoutError:
            raise  # the attempt's time is spent: trying the next address would overrun it
        except OSError as exc:
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert error is not None  # checked_addresses never returns an empty list
    raise error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``host`` (its ``Host`` header) made to the checked ``addresses``, never to
    whatever the name resolves to by the time it connects."""

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress], timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self.addresses = tuple(addresses)

    def connect(self) -> None:
        """Dial the checked addresses (``http.client`` would resolve ``host`` again)."""
        self.sock = _dial(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """``PinnedHTTPConnection`` over TLS: the certificate is checked against ``host`` (sent as SNI), not
    against the address dialled."""

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress], timeout_s: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout_s, context=self.tls)
        self.addresses = tuple(addresses)

    def connect(self) -> None:
        """Dial the checked addresses, then TLS for ``host``."""
        sock = _dial(self.addresses, self.port, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def checked_connection(
    scheme: str, host: str, port: int, allowed: Sequence[IPNetwork], timeout_s: float
) -> http.client.HTTPConnection:
    """A connection (not yet open) to ``host`` over ``scheme``, pinned to its checked addresses; ``Refused``
    when the guard refuses any of them."""
    addresses = checked_addresses(host, port, allowed)
    kind = PinnedHTTPSConnection if scheme == "https" else PinnedHTTPConnection
    return kind(host, port, addresses, timeout_s)
