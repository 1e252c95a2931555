"""The leases this node holds on deliveries, kept alive by a heartbeat.

A claim lasts `delivery_lease_s` (30 s by default), not the longest run: a node that
dies frees its deliveries within one lease. While a delivery runs, one heartbeat thread
renews every lease this node holds in one transaction, every third of a lease. A lease
the heartbeat finds taken over (this node was cut off or stalled past it, and another
node claimed the delivery) is marked lost: its run's record will not commit (the fence in
EventQueue.finish), and nothing new starts for it. A node whose heartbeat has failed for
a whole lease (its database unreachable) starts no new run until one succeeds: its
deliveries may already belong to someone else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from store.clock import iso
from store.errors import StoreError
from store.events import Delivery
from store.repositories import EventQueue

log = logging.getLogger("logic.leases")


class Leases:
    def __init__(self, queue: EventQueue, lease_s: float, clock: Callable[[], datetime]):
        self.queue = queue
        self.lease = timedelta(seconds=lease_s)
        self.clock = clock
        self._held: dict[int, int] = {}  # delivery id -> lease token
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = time.monotonic()

    def hold(self, delivery: Delivery) -> None:
        with self._lock:
            self._held[delivery.id] = delivery.token

    def release(self, delivery: Delivery) -> None:
        with self._lock:
            self._held.pop(delivery.id, None)
            self._lost.discard(delivery.id)

    def lost(self, delivery: Delivery) -> bool:
        with self._lock:
            return delivery.id in self._lost

    @property
    def fresh(self) -> bool:
        """Whether the last heartbeat succeeded less than a lease ago (else this node may
        have lost what it holds: start nothing new)."""
        return time.monotonic() - self._last_beat < self.lease.total_seconds()

    def beat(self) -> set[int]:
        """Renew every lease held now; the ids found taken over."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            self._last_beat = time.monotonic()
            return set()
        lost = self.queue.heartbeat(held, iso(self.clock() + self.lease))
        self._last_beat = time.monotonic()
        if lost:
            log.warning("event=lease_lost deliveries=%s (another node took them over)", sorted(lost))
            with self._lock:
                self._lost |= lost & set(self._held)
        return lost

    def start(self) -> None:
        def loop() -> None:
            every = self.lease.total_seconds() / 3
            while not self._stop.wait(every):
                try:
                    self.beat()
                except StoreError as exc:  # unreachable or busy: the next beat tries again
                    log.warning("event=heartbeat_failed error=%s", exc.message)
                except Exception:
                    log.exception("heartbeat failed")

        self._thread = threading.Thread(target=loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
