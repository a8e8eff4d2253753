"""The one way the notifier reaches a subscription's URL: checked addresses, no redirects, a total deadline.

Whoever can write the subscriptions topic picks these URLs, so each attempt resolves the host, refuses
private, loopback, link-local and cloud-metadata addresses (unless allow-listed; metadata never), and
connects to the address it checked, so a DNS answer that changes in between cannot move the request.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tonewatch.core.errors import InvalidInput
from tonewatch.core.service_sections import DeliverySettings
from tonewatch.notify.policy import Outcome, classify_status

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
# AWS/GCP/Azure/OpenStack, AWS over IPv6, Alibaba: never a receiver, even inside an allow-listed range
METADATA = tuple(ipaddress.ip_network(n) for n in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32"))
ERROR_BODY_BYTES = 2048
LOOPBACK = "127.0.0.0/8,::1/128"  # allowed_networks of the local stack and tests: their receivers listen here
# getaddrinfo cannot be interrupted: it runs here so a slow DNS server costs a thread, not the deadline
_DNS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")


class DestinationRefused(InvalidInput):
    """A subscription's URL resolves to an address the notifier must not reach."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, ::1/128"`` -> networks (``DeliverySettings`` has already checked the syntax)."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip())


def refusal(address: Address, allowed: tuple[Network, ...]) -> str | None:
    """Why the notifier must not connect to ``address``, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in n for n in METADATA):
        return "a cloud metadata address"
    if any(address in n for n in allowed):
        return None
    for what, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                       ("private", address.is_private), ("multicast", address.is_multicast)):
        if flag:
            return f"a {what} address"
    return None if address.is_global else "not a public address"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for a TCP connection to ``host``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Egress:
    """What a delivery may reach and how long it may take; ``resolve`` is replaceable for tests."""

    allowed: tuple[Network, ...] = ()
    deadline_s: float = 10.0
    resolve: Resolver = field(default=system_resolver)

    @classmethod
    def from_settings(cls, delivery: DeliverySettings) -> Egress:
        return cls(parse_networks(delivery.allowed_networks), delivery.timeout_s)

    def addresses(self, host: str, port: int, timeout_s: float) -> list[str]:
        """The host's addresses, each one checked; raises ``DestinationRefused`` if any is refused."""
        try:
            found = [str(ipaddress.ip_address(host))]
        except ValueError:
            found = _DNS.submit(self.resolve, host, port).result(timeout=timeout_s)
        for text in found:
            why = refusal(ipaddress.ip_address(text.split("%")[0]), self.allowed)
            if why:
                raise DestinationRefused(f"{host} resolves to {text}, {why} (TONEWATCH_DELIVERY__ALLOWED_NETWORKS)")
        if not found:
            raise OSError(f"{host} has no address")
        return found


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to checked addresses; the Host header (and TLS name) stay the URL's host."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses, self.tls = addresses, tls

    def connect(self) -> None:
        last: OSError = OSError("no address")
        for address in self.addresses:
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
                break
            except OSError as exc:
                last = exc
        else:
            raise last
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:  # self.sock is set first, so the deadline can abort a stalled handshake
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)

    def abort(self) -> None:
        """From the deadline's timer thread: wakes a blocked read or write, which then fails."""
        if self.sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to wake
                self.sock.shutdown(socket.SHUT_RDWR)


def _printable(raw: bytes) -> str:
    """An error body as one log-safe line: control characters would forge log lines or hide text."""
    return "".join(c if c.isprintable() else " " for c in raw.decode(errors="replace")).strip()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's CA store, loaded once: verified certificates and host names, as urllib did."""
    return ssl.create_default_context()


def post(url: str, body: bytes, headers: dict[str, str], egress: Egress) -> tuple[Outcome, str]:
    """One POST; never raises. 3xx is an answer, not followed; at most ``ERROR_BODY_BYTES`` of an error are read."""
    start = time.monotonic()
    parts = urlsplit(url)
    tls = _tls_context() if parts.scheme == "https" else None
    try:
        host, port = parts.hostname or "", parts.port or (443 if tls else 80)
    except ValueError as exc:  # a port out of range: no retry will fix the URL
        return "permanent", f"{url}: {exc}"
    try:
        addresses = egress.addresses(host, port, egress.deadline_s)
    except DestinationRefused as exc:
        return "permanent", f"refused: {exc}"
    except (OSError, TimeoutError) as exc:  # DNS failed or was too slow: it may answer next time
        return "retry", f"{type(exc).__name__}: {exc}"
    remaining = max(egress.deadline_s - (time.monotonic() - start), 0.001)
    conn = _Pinned(host, port, addresses, remaining, tls)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        conn.abort()

    # socket timeouts bound each read, not their sum: a receiver sending a byte a second would hold us forever
    timer = threading.Timer(remaining, expire)
    timer.start()
    try:
        conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body, headers)
        resp = conn.getresponse()
        detail = f"HTTP {resp.status}"
        if not 200 <= resp.status < 300:
            detail += f": {_printable(resp.read(ERROR_BODY_BYTES))}"
        if 300 <= resp.status < 400:
            detail += " (redirects are not followed)"
        if expired.is_set():  # the abort ends a read like EOF: what came before is a truncated answer
            raise TimeoutError
        return classify_status(resp.status), detail
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout: the receiver may come back
        if expired.is_set():
            return "retry", f"no answer within the {egress.deadline_s:g}s deadline"
        return "retry", f"{type(exc).__name__}: {exc}"
    finally:
        timer.cancel()
        conn.close()
