"""The cron scheduler: each tick of each schedule trigger fires exactly once.

Every schedule trigger stores its next fire time. A tick is claimed by
moving that time forward with a compare-and-set, in the same transaction
that enqueues the run, so two processes (or a restart) never fire it twice
and a crash never loses it. Ticks missed while the server was down fire
once, at start-up, with the missed time as `scheduled_at`; the schedule then
continues from now. The clock is injected so tests need not wait.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Callable

from store.clock import iso, parse_iso, utcnow
from store.database import Database
from store.events import EventStore

from runtime.events.doorbell import Doorbell
from runtime.events.cron import next_fire

log = logging.getLogger("logic.scheduler")


class Scheduler:
    def __init__(self, db: Database, events: EventStore, *, clock: Callable[[], datetime] = utcnow,
                 wake: Doorbell | None = None, housekeeping: Callable[[], object] | None = None,
                 housekeeping_every_s: float = 3600.0):
        self.db = db
        self.events = events
        self.clock = clock
        self.wake = wake
        # Periodic upkeep (history retention) rides on the scheduler's thread.
        self.housekeeping = housekeeping
        self.housekeeping_every_s = housekeeping_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """Fire every due tick once; returns how many runs were enqueued."""
        now = self.clock()
        due = self.db.all(
            "SELECT t.id, t.function_id, t.cron, t.timezone, t.next_fire_at, f.owner, f.enabled "
            "FROM triggers t JOIN functions f ON f.id = t.function_id "
            "WHERE t.kind = 'schedule' AND t.next_fire_at <= ? ORDER BY t.next_fire_at", (iso(now),))
        fired = 0
        for row in due:
            scheduled_at = row["next_fire_at"]
            following = iso(next_fire(row["cron"], max(now, parse_iso(scheduled_at)), row["timezone"]))
            with self.db.transaction() as conn:
                claimed = conn.execute("UPDATE triggers SET next_fire_at = ? WHERE id = ? AND next_fire_at = ?",
                                       (following, row["id"], scheduled_at)).rowcount
                if claimed and row["enabled"]:
                    self.events.add_scheduled(row["owner"], row["function_id"], scheduled_at, row["cron"])
                    fired += 1
        if self.wake is not None:
            self.wake.ring(fired)
        return fired

    def start(self, interval_s: float = 1.0) -> None:
        def loop() -> None:
            next_upkeep = 0.0
            while not self._stop.wait(interval_s):
                try:
                    self.tick()
                    if self.housekeeping is not None and time.monotonic() >= next_upkeep:
                        next_upkeep = time.monotonic() + self.housekeeping_every_s
                        self.housekeeping()
                except Exception:
                    log.exception("scheduler tick failed")

        self.tick()  # catch up on ticks missed while stopped
        self._thread = threading.Thread(target=loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
