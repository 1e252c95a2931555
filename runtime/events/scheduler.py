"""The cron scheduler: each tick of each schedule trigger fires exactly once.

Every schedule trigger stores its next fire time. A tick is claimed by
moving that time forward with a compare-and-set, in the same transaction
that enqueues the run, so two processes (or a restart) never fire it twice
and a crash never loses it. Ticks missed while the server was down fire
once, at start-up, with the missed time as `scheduled_at`; the schedule then
continues from now. A tick outside the trigger's window (`start_at`..`end_at`)
or of a disabled trigger or function is claimed without a run; past the
window's end the trigger has no next tick and is never due again. The clock
is injected so tests need not wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from runtime.events.cron import next_fire_within
from runtime.events.doorbell import Doorbell
from store.clock import iso, parse_iso, utcnow
from store.errors import StoreError
from store.store import Store

log = logging.getLogger("logic.scheduler")


HOUSEKEEPING_EVERY_S = 3600.0  # history retention needs no finer grain
TICK_EVERY_S = 1.0  # cron's finest schedule is a minute


class Scheduler:
    """Fires due ticks (`tick`), on a thread of its own once started."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        wake: Doorbell | None = None,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_every_s: float = HOUSEKEEPING_EVERY_S,
    ):
        self.store = store
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
        store = self.store
        fired = 0
        for tick in store.triggers.due(iso(now)):
            scheduled_at = tick.next_fire_at
            start = parse_iso(tick.start_at) if tick.start_at else None
            end = parse_iso(tick.end_at) if tick.end_at else None
            at = parse_iso(scheduled_at)
            after = next_fire_within(tick.cron, max(now, at), tick.timezone, start, end)
            following = None if after is None else iso(after)
            # A tick outside the window (a next time computed without it) is passed by, unrun.
            runs = tick.enabled and (start is None or at >= start) and (end is None or at <= end)
            with store.transaction():
                claimed = store.triggers.claim_tick(tick.trigger_id, scheduled_at, following)
                # A tick another scheduler enqueued already (the unique key) is not fired again.
                if (
                    claimed
                    and runs
                    and store.events.add_scheduled(tick.owner, tick.function_id, scheduled_at, tick.cron)
                ):
                    fired += 1
        if self.wake is not None:
            self.wake.ring(fired)
        return fired

    def start(self, interval_s: float = TICK_EVERY_S) -> None:
        def loop() -> None:
            next_upkeep = 0.0
            while not self._stop.wait(interval_s):
                try:
                    self.tick()
                    if self.housekeeping is not None and time.monotonic() >= next_upkeep:
                        next_upkeep = time.monotonic() + self.housekeeping_every_s
                        self.housekeeping()
                except StoreError as exc:  # unreachable, busy, full: one line; the next tick tries again
                    log.warning("event=scheduler_tick_failed error=%s", exc.message)
                except Exception:
                    log.exception("scheduler tick failed")

        self.tick()  # catch up on ticks missed while stopped
        self._thread = threading.Thread(target=loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
