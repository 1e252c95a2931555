"""The dispatcher: threads that claim deliveries and carry them out.

A function delivery becomes a run whose record, secret accesses, published
events and the delivery's completion commit in one transaction; a delivery
of a ledger change (its synthetic event has source LEDGER_SOURCE, see
bus.ledger_changed) runs with the `ledger_change` context part. A webhook
delivery sends, then commits its log, accesses, its events (`hook-sent/...`,
then `hook-response/...` or `hook-error/...`, or its custom topics) and the
completion together; the log reaches the live streams once committed. A crash anywhere before that commit
leaves the delivery claimed; its lease runs out and it is claimed again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from runtime.events.bus import EventBus
from runtime.events.leases import Leases
from runtime.events.rules import LEDGER_SOURCE, check_event, within_chain
from runtime.events.streams import WEBHOOK_LOGS, Item
from runtime.execution.engine import Engine
from runtime.execution.secrets_broker import audited
from runtime.integrations.runner import IntegrationRunner
from store.clock import iso, utcnow
from store.errors import DiskFull, LeaseLost, LogicError, StoreBusy, WorkerUnavailable
from store.events import Delivery
from store.store import Store

log = logging.getLogger("logic.dispatcher")

FAILURE_TEXT_MAX = 500  # characters of a failed webhook's answer kept on its delivery row


class Dispatcher:
    """Delivery threads: claim from the store's queue, run through the engine or the
    integration runner, publish hook responses on the bus (Service.dispatcher builds one)."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        integrations: IntegrationRunner,
        bus: EventBus,
        *,
        threads: int,
        poll_s: float,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.store = store
        self.settings = store.settings
        self.engine = engine
        self.integrations = integrations
        self.bus = bus
        self.clock = clock
        self.threads = threads
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        # What this node holds, renewed by a heartbeat while the threads run (leases.py).
        self.leases = Leases(store.events, store.settings.delivery_lease_s, clock)

    @property
    def lease(self) -> timedelta:
        return self.leases.lease

    def start(self) -> None:
        self.bus.wake.cap = self.threads
        self.leases.start()
        # Other nodes' publishes ring here (PostgreSQL's NOTIFY); the poll stays behind it.
        self.store.db.listen(self._rung, self._stop)
        for n in range(self.threads):
            t = threading.Thread(target=self._loop, name=f"dispatcher-{n}", daemon=True)
            t.start()
            self._workers.append(t)

    def _rung(self, deliveries: int | None) -> None:
        if deliveries is None:  # (re)connected: announcements may have been missed
            self.bus.wake.ring_all()
        else:
            self.bus.wake.ring(deliveries)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; deliveries in flight finish (each run is bounded by its timeout)."""
        self._stop.set()
        self.bus.wake.ring_all()
        for t in self._workers:
            t.join(timeout)
        self.leases.stop()

    def _loop(self) -> None:
        wake = self.bus.wake
        while not self._stop.is_set():
            try:
                taken, more = self._step(1)
            except Exception:  # keep the thread alive; the delivery's lease brings it back
                log.exception("dispatcher step failed")
                more = False
            # More work claimable, or (after a delivery) its owner's next one, waiting for the
            # slot this thread just freed: look again at once. Else a ring (work published
            # since the claim), or a look anyway (leases that ran out).
            if not more:
                wake.wait(self.poll_s)

    def step(self, limit: int = 1) -> int:
        """Claim and carry out up to `limit` deliveries; returns how many were taken."""
        return self._step(limit)[0]

    def _step(self, limit: int) -> tuple[int, bool]:
        """(how many were taken, whether to look again at once: more were claimable, or,
        having delivered, more waited for their owner's runs in flight)."""
        now = self.clock()
        claimed_at = time.monotonic()  # with `now`: the lease counts from here, lock waits included
        queue = self.store.events
        claimed = queue.claim(iso(now), iso(now + self.lease), limit, per_owner=self.settings.owner_runs_max)
        for delivery in claimed:
            if self._stop.is_set():
                queue.release(delivery.id, token=delivery.token)
                continue
            self.leases.hold(delivery)
            try:
                self.deliver(delivery, claimed_at)
            finally:
                self.leases.release(delivery)
        return len(claimed), claimed.more or (bool(claimed) and claimed.waiting)

    def drain(self, max_steps: int = 10_000) -> int:
        """Deliver until nothing is pending (tests and benchmarks)."""
        total = 0
        for _ in range(max_steps):
            n = self.step()
            if not n:
                break
            total += n
        return total

    def deliver(self, delivery: Delivery, claimed_at: float | None = None) -> None:
        """Carry out a claimed delivery; `claimed_at` (time.monotonic()) lets a run that
        starts right after its claim skip renewing the lease."""
        events = self.store.events
        try:
            if not self.leases.fresh or self.leases.lost(delivery):
                # This node may have been cut off past its lease: the delivery may be another
                # node's by now. Start nothing; if it is still ours, the lease brings it back.
                log.warning("event=delivery_skipped delivery=%d reason=lease_uncertain", delivery.id)
                return
            if delivery.target_kind == "function":
                self._run_function(delivery, claimed_at)
            else:
                self._fire_integration(delivery)
        except LeaseLost:  # its record rolled back; the node that took it over carries it out
            log.warning("event=lease_lost delivery=%d (this run's record was discarded)", delivery.id)
        except WorkerUnavailable:  # passing (the pool is restarting or closing): try again later
            events.release(delivery.id, token=delivery.token)
        except (StoreBusy, DiskFull):
            raise  # the store's fault, not the delivery's: its lease brings it back
        except LogicError as exc:  # e.g. the target was deleted since the event was accepted
            events.finish(delivery.id, status="failed", error=exc.message, token=delivery.token)

    def _run_function(self, delivery: Delivery, claimed_at: float | None) -> None:
        queue = self.store.events
        # A claim younger than this still has all but a sliver of its lease (the longest
        # run plus the margin): renewing it would be a write transaction for nothing.
        fresh_s = min(1.0, self.settings.delivery_lease_s / 4)
        fn = self.store.functions.get_by_id(delivery.target_id)
        if not fn.enabled:
            queue.finish(delivery.id, status="failed", error=f"function {fn.name} is disabled", token=delivery.token)
            return

        def finish(run_id: str) -> None:
            queue.finish(delivery.id, run_id=run_id, token=delivery.token)

        def renew() -> None:
            # The lease counted from the claim; waiting for a free worker must not use it
            # up, or another thread claims the delivery again and it runs twice.
            if claimed_at is not None and time.monotonic() - claimed_at < fresh_s:
                return
            queue.renew(delivery.id, iso(self.clock() + self.lease), token=delivery.token)

        if delivery.event_id is not None:
            event = queue.event(delivery.event_id)
            if event["source"] == LEDGER_SOURCE:
                self.engine.run(
                    fn,
                    {"type": "ledger_change", "event_id": event["id"]},
                    ledger_change=json.loads(event["data"]),
                    depth=delivery.depth,
                    on_commit=finish,
                    on_start=renew,
                )
                return
            context = {k: event[k] for k in ("id", "name", "data", "published_at", "source")}
            self.engine.run(
                fn,
                {"type": "event", "event_id": event["id"]},
                event=context,
                depth=delivery.depth,
                on_commit=finish,
                on_start=renew,
            )
        else:
            scheduled = {"scheduled_at": delivery.scheduled_at, "cron": delivery.cron}
            scheduled.update(schedule_window(fn.manifest, delivery.cron, delivery.scheduled_at))
            self.engine.run(fn, {"type": "schedule"}, scheduled=scheduled, on_commit=finish, on_start=renew)

    def _fire_integration(self, delivery: Delivery) -> None:
        store, queue = self.store, self.store.events
        record = store.integrations.get_by_id(delivery.target_id)
        if not record.enabled:
            queue.finish(
                delivery.id, status="failed", error=f"integration {record.name} is disabled", token=delivery.token
            )
            return
        event = queue.event(cast(str, delivery.event_id))  # integrations get events, never ticks
        result = self.integrations.fire(record, event, run_id=f"delivery-{delivery.id}")
        # Webhook -> response -> webhook could loop forever: the chain depth limit ends it;
        # an event whose name or data the bus would refuse is noted, never fatal.
        respond = within_chain(delivery.depth + 1, self.settings)
        accepted: list[tuple[str, str | None]] = []
        for name, data in result.events if respond else []:
            try:
                check_event(name, data, self.settings, from_hook=True)
                accepted.append((name, data))
            except LogicError as exc:
                note = f"response event not published: {exc.message}"
                result.log["error"] = f"{result.log['error']} ({note})" if result.log.get("error") else note
        response_data = result.response_event[1] if result.response_event else None
        streams = self.bus.streams
        # The secrets did go out: they are audited even when the commit fails.
        with audited(store.secrets, result.accesses), store.transaction():
            log_id = store.integrations.add_log(record.id, event["id"], result.log)
            if streams is not None:
                item = Item(WEBHOOK_LOGS, record.id, {**result.log, "id": log_id, "event_id": event["id"]})
                store.after_commit(lambda: streams.publish(record.owner, item))
            store.secrets.record_access(result.accesses)
            for name, data in accepted:
                self.bus.publish_checked(
                    record.owner,
                    name,
                    data,
                    source=f"integration:{record.name}",
                    depth=delivery.depth + 1,
                    check_capacity=False,
                )
            queue.finish(
                delivery.id,
                status="done" if result.ok else "failed",
                error=None if result.ok else (response_data or result.log.get("error") or "")[:FAILURE_TEXT_MAX],
                token=delivery.token,
            )


def schedule_window(manifest: dict[str, Any], cron: str | None, scheduled_at: str | None) -> dict[str, str | None]:
    """`start_at` and `end_at` of the schedule trigger that fired a tick, for `scheduled`.

    A delivery names its tick by cron only: of the manifest's schedules with that cron,
    the first enabled one whose window holds the tick (ISO 8601 UTC: text order is time order).
    """
    for trigger in manifest.get("triggers", []):
        if trigger.get("type") != "schedule" or trigger.get("cron") != cron or trigger.get("enabled") is False:
            continue
        start, end = trigger.get("start_at"), trigger.get("end_at")
        if scheduled_at is None or ((start is None or start <= scheduled_at) and (end is None or scheduled_at <= end)):
            return {"start_at": start, "end_at": end}
    return {"start_at": None, "end_at": None}
