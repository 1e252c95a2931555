"""Where a webhook may connect: public addresses only, checked at connect time.

Threat: SSRF, a tenant's webhook reading the server's own network (loopback
services, cloud metadata at 169.254.169.254, the LAN) and getting the answer
back as `hook-response`. Unless the operator sets LOGIC_WEBHOOK_ALLOW_PRIVATE,
only public addresses are connected to. The check runs where the connection
is made (`GuardedTransport`), not before the request: the guard resolves the
name itself, refuses the whole answer if any address in it is not public,
connects to a checked address (never to the name, which would be resolved
again: DNS rebinding), and checks the socket's peer address once connected.
So every connection, every retry, and every address a name resolves to is
checked, in every spelling (`2130706433`, `0177.0.0.1`, `::ffff:127.0.0.1`,
`0.0.0.0`). TLS still verifies the certificate against the URL's host name,
sent as SNI. A refusal is final (not retried) and names the address only,
never the URL, which may carry a secret.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from typing import Any, cast

import httpcore
import httpx

_ALLOW_HINT = "set LOGIC_WEBHOOK_ALLOW_PRIVATE=true to allow it"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(Exception):
    """The guard will not connect there. Not an httpcore error, so httpx passes it through
    untranslated and the sender can tell it from a connection failure (a refusal is final)."""


def address_refusal(text: str) -> str | None:
    """Why the numeric address `text` may not be connected to, or None if it is public."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 host (::ffff:127.0.0.1 is
        # loopback on a dual-stack socket), and Python calls 6to4 and NAT64 forms global.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.insert(0, embedded)
    for candidate in candidates:
        kind = _address_kind(candidate)
        if kind is not None:
            shown = text if candidate is address else f"{text} ({candidate})"  # as the resolver wrote it
            return f"destination {shown} is not a public address ({kind}); {_ALLOW_HINT}"
    return None


def _address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for kind, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return kind
    return None if address.is_global else "not globally routable"


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only to addresses it has resolved and checked."""

    def __init__(self, *, allow_private: bool):
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            # The host name is left out: it is rendered, and may carry a secret.
            raise httpcore.ConnectError(f"cannot resolve the host name ({exception_text(exc)})") from None
        # An AF_INET or AF_INET6 sockaddr starts with the address as text.
        addresses = list(
            dict.fromkeys(cast(str, info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
        )
        if not addresses:
            raise httpcore.ConnectError("the host name resolves to no IP address")
        if not self.allow_private:
            # Threat: a name answering [public, 127.0.0.1] and counting on a fallback; the whole answer is refused.
            for address in addresses:
                refused = address_refusal(address)
                if refused:
                    raise DestinationRefused(refused)
        failure: Exception = httpcore.ConnectError("no address could be connected")
        for address in addresses:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout("timed out")
            try:
                # A numeric host: the base class's create_connection does no DNS lookup of its own.
                stream = super().connect_tcp(address, port, remaining, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self._check_peer(stream)
            return stream
        raise failure

    def _check_peer(self, stream: httpcore.NetworkStream) -> None:
        """The address actually connected to, whatever resolved or routed it there."""
        if self.allow_private:
            return
        try:
            refused = address_refusal(stream.get_extra_info("socket").getpeername()[0])
        except (OSError, ValueError, AttributeError, IndexError):
            refused = "the connected peer address could not be checked"
        if refused:
            stream.close()  # before a byte of the request is written
            raise DestinationRefused(refused)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with `GuardedBackend` making every connection.

    `ssl_context` defaults to httpx's own (certifi, hostname checks on): the TLS layer
    gets the URL's host name, so SNI and certificate checks are unchanged by connecting
    to an address.
    """

    def __init__(self, *, allow_private: bool, ssl_context: ssl.SSLContext | None = None):
        ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend, its pool does: the pool httpx built is replaced
        # before first use (tests/security/test_webhook_rebinding.py fails if this stops working).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def exception_text(exc: Exception) -> str:
    """The exception's text as it is: it may quote a rendered secret, so it is tidied and
    cut only after redaction (runner.tidy_error), never here."""
    return str(exc) or type(exc).__name__
