"""A per-owner cap on runs started on request (test and manual runs).

Threat: one tenant sending many test runs at once. Each waits for a worker in
a server thread; without a cap they would hold every HTTP thread (and the
pool's queue) while other owners wait. Past the cap the owner gets 429 with
Retry-After at once, and nobody else notices.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from store.errors import TooManyRequests


class OwnerGate:
    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._lock = threading.Lock()
        self._in: dict[str, int] = {}

    @contextmanager
    def enter(self, owner: str) -> Iterator[None]:
        with self._lock:
            n = self._in.get(owner, 0)
            if n >= self.limit:
                raise TooManyRequests(
                    f"{owner} already has {n} test or manual runs under way, the limit "
                    "per owner: try again when one finishes"
                )
            self._in[owner] = n + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in[owner] - 1
                if left:
                    self._in[owner] = left
                else:
                    del self._in[owner]
