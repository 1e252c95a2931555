"""Throttle failed Bearer authentication per client address.

Threat: an API token is guessed through the API, one request per guess. Each
address may fail at most `failures_max` times in any `window_s` seconds; past
that, every request from it that presents a token is refused with 429 and
Retry-After, without looking at the token (otherwise a right guess would still
be told apart), until the oldest of those failures leaves the window. A
missing token proves nothing and is not counted. A success resets nothing: an
attacker with a token of his own must not be able to wipe his count of
failures with it, and one address never touches another's count.

The address is the ASGI scope's client host, the peer of the TCP connection:
X-Forwarded-For is anyone's to write. IPv6 addresses count per /64 (one
subscriber usually owns at least that much), IPv4-mapped ones as IPv4.
Memory is bounded: at most `addresses_max` addresses are tracked, the least
recently failed forgotten first, each with at most `failures_max` times.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import Scope

from store.errors import TooManyRequests

# Defaults for tests and callers without settings (settings.auth_failures_max, auth_failure_window_s).
FAILURES_MAX = 10  # failed sign-ins per address ...
WINDOW_S = 60.0  # ... in any window of this many seconds
ADDRESSES_MAX = 10_000  # addresses tracked at once


class AuthThrottle:
    def __init__(
        self,
        *,
        failures_max: int = FAILURES_MAX,
        window_s: float = WINDOW_S,
        addresses_max: int = ADDRESSES_MAX,
        clock: Callable[[], float] = time.monotonic,
    ):
        if failures_max < 1 or window_s <= 0 or addresses_max < 1:
            raise ValueError("failures_max, window_s and addresses_max must be positive")
        self.failures_max = failures_max
        self.window_s = window_s
        self.addresses_max = addresses_max
        self.clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()  # address -> times, oldest first
        self._lock = threading.Lock()

    @property
    def tracked(self) -> int:
        """How many addresses have failures on record (at most addresses_max)."""
        return len(self._failures)

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try a token again; 0 if it may now."""
        if not self._failures:  # the usual case, on every authenticated request: no lock
            return 0
        with self._lock:
            times = self._failures.get(address)
            if not times or len(times) < self.failures_max:
                return 0
            wait = times[0] + self.window_s - self.clock()
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def check(self, address: str) -> None:
        """Raise TooManyRequests (with retry_after) if `address` is refused for now."""
        wait = self.retry_after(address)
        if wait:
            raise TooManyRequests(
                f"too many failed sign-ins from this address: try again in {wait} s", retry_after=wait
            )

    def failed(self, address: str) -> bool:
        """Count a failed sign-in; True if it was the one that made the address refused."""
        now = self.clock()
        with self._lock:
            times = [t for t in self._failures.pop(address, ()) if t > now - self.window_s]
            times.append(now)
            del times[: -self.failures_max]
            self._failures[address] = times
            while len(self._failures) > self.addresses_max:
                self._failures.popitem(last=False)
        return len(times) == self.failures_max


def client_address(scope: Scope) -> str:
    """The key a request's failures count under (see the module docstring)."""
    client = scope.get("client")
    return _key(client[0] if client else "")


@functools.lru_cache(maxsize=4096)  # every authenticated request asks: parse each host once
def _key(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # a unix socket, a test client: one key for all of them
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


__all__ = ["AuthThrottle", "client_address", "FAILURES_MAX", "WINDOW_S", "ADDRESSES_MAX"]
