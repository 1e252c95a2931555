"""The dispatcher: threads that claim deliveries and carry them out.

A function delivery becomes a run whose record, secret accesses, published
events and the delivery's completion commit in one transaction; a delivery
of a ledger change (its synthetic event has source LEDGER_SOURCE, see
bus.ledger_changed) runs with the `ledger_change` context part. A webhook
delivery sends, then commits its log, accesses, its events (`hook-sent/...`,
then `hook-response/...` or `hook-error/...`, or its custom topics) and the
completion together; the log reaches the live streams once committed. A crash anywhere before that commit
leaves the delivery claimed; its lease runs out and it is claimed again.

Batching (issue 14's ingest work). A delivery thread's run commits through the
group commit (publish_writer.py): the records of runs that finish together and
the publishes waiting beside them share one transaction, written by one thread;
a run that fails there is retried alone, so it costs no other run its record.
Claims ride on those commits: the transaction that finishes a delivery also
claims the thread's next one, and one for each thread waiting idle, handed out
once it commits; a thread that claims on its own claims for the idle ones too.
The same transaction reads what each claimed run reads first, its function and
its event (`_read_ahead`): the writer's connection has those pages cached, while
a delivery thread's SQLite connection loses its cache to every commit made by
another one (under a burst the two reads cost a delivery thread ~210 us of CPU
and ~710 us of its time).
A node without the API (`logic serve --role worker`, `alone`) has no publishes of its
own to batch runs with: on SQLite its delivery threads commit their own runs (with
one delivery thread, the hand-off to the writer and back held one owner's burst in
such a process at 0.6x). Other processes' publishes ring it from outside
(PostgreSQL's NOTIFY; SQLite's doorbell, store/process_doorbell.py, which says
neither how much nor whose): such a ring of SQLite's wakes a thread only when nothing
is in flight here, as the commits of runs in flight claim the next work anyway (with
four threads and one owner's flood, waking idle threads for an owner whose run slots
were full cost 1.4x the CPU a run in empty claims).
Pacing (a worker-role process on SQLite): its threads run one delivery at a time, and one
more for each run in flight here for longer than QUICK_RUN_S (a slow run's thread keeps
its slot for the next; idle threads look every PACE_LOOK_S while runs are in flight). Two
quick runs in flight in one process contend for its GIL and SQLite's write lock: bursts of
one owner ran 1.2-1.4x faster paced. A slow run, or a webhook's wait for its answer, holds
nobody up: another thread starts within PACE_LOOK_S. Logic functions cannot wait on the
network (their worker has none), so a long run is long CPU work (or a sleep), on a worker process of its
own that runs beside another.
Rings for an owner whose every run slot is held by a delivery of this
dispatcher are dropped (Doorbell.full): no claim could take that owner's work
before one of them finishes, and the finishing thread claims then. Before
this, under one owner's flood, idle threads woke at every publish for a claim
that came back empty (620 of 975 claims a second, measured in process).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from contextlib import nullcontext
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
from store.errors import DiskFull, LeaseLost, LogicError, NotFound, StoreBusy, StoreError, WorkerUnavailable
from store.events import Claimed, Delivery
from store.functions import FunctionRecord
from store.store import Store

log = logging.getLogger("logic.dispatcher")

FAILURE_TEXT_MAX = 500  # characters of a failed webhook's answer kept on its delivery row
EXPIRED_LOOK_S = 1.0  # how often the claims made at commit look for leases that ran out
# A worker-role process on SQLite runs one delivery at a time, and one more for each of its
# runs in flight for longer than a quick run takes (see the module docstring): a run of ~1 ms
# under a burst is quick; waiting on I/O for 5 ms is not. Its idle threads look this often.
QUICK_RUN_S = 0.005
PACE_LOOK_S = 0.02

ReadAhead = tuple[FunctionRecord, dict[str, Any] | None]  # a claimed run's function and event
Box = list[tuple[Claimed, float, dict[int, ReadAhead]]]  # what a commit claimed, when, and read ahead


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
        alone: bool = False,
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
        # No API in this process, on SQLite: nothing of its own shares its runs' commits, and
        # it runs one delivery at a time while runs are quick (see the module docstring).
        self._alone_on_sqlite = alone and store.db.dialect == "sqlite"
        self._started: dict[int, float] = {}  # paced: per delivery claimed here, not yet finished: when
        self._pacing = threading.Lock()  # paced: one claim of a thread's own at a time (_step)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._ready: deque[tuple[Delivery, float]] = deque()  # claimed for idle threads: (delivery, claimed_at)
        self._idle = 0  # threads waiting on the doorbell
        self._in_flight: Counter[str] = Counter()  # per owner: deliveries claimed here, not yet finished
        self._ahead: dict[int, ReadAhead] = {}  # per delivery id: its function and event, read at its claim
        self._local = threading.local()  # a delivery thread's next delivery, claimed by its last commit
        self._lapsed_looked = float("-inf")  # time.monotonic() of the last look for leases run out
        # What this node holds, renewed by a heartbeat while the threads run (leases.py).
        self.leases = Leases(store.events, store.settings.delivery_lease_s, clock)

    @property
    def lease(self) -> timedelta:
        return self.leases.lease

    def start(self) -> None:
        self.bus.wake.cap = self.threads
        self.bus.wake.full = self._owner_full
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
        elif deliveries:
            self.bus.wake.ring(deliveries)
        else:  # another process published (how much, whose: unknown): look, unless runs in flight will
            with self._lock:
                quiet = not self._in_flight
            if quiet:
                self.bus.wake.ring(1)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; deliveries in flight finish (each run is bounded by its timeout)."""
        self._stop.set()
        self.bus.wake.ring_all()
        for t in self._workers:
            t.join(timeout)
        self.bus.wake.full = None
        with self._lock:
            left, self._ready = list(self._ready), deque()
        for delivery, _ in left:  # claimed for a thread that stopped first: put back
            self._forget(delivery)
            self.store.events.release(delivery.id, token=delivery.token)
        self.leases.stop()

    def _loop(self) -> None:
        wake = self.bus.wake
        self._local.looping = True  # this thread's commits claim its next delivery
        while not self._stop.is_set():
            try:
                more = self._next()
            except StoreError as exc:  # the database is busy or unreachable: one line, not a traceback
                log.warning("event=dispatcher_step_failed error=%s", exc.message)
                more = False
            except Exception:  # keep the thread alive; the delivery's lease brings it back
                log.exception("dispatcher step failed")
                more = False
            # More work claimable, or (after a delivery) its owner's next one, waiting for the
            # slot this thread just freed: look again at once. Else a ring (work published
            # since the claim), or a look anyway (leases that ran out).
            if not more:
                with self._lock:
                    self._idle += 1
                    # Paced: look again soon while runs are in flight, for one that turned slow.
                    wait_s = min(self.poll_s, PACE_LOOK_S) if self._alone_on_sqlite and self._started else self.poll_s
                try:
                    wake.wait(wait_s)
                finally:
                    with self._lock:
                        self._idle -= 1
        taken = self._local.__dict__.pop("next", None)
        if taken is not None:  # claimed by the last commit, after the stop: put back
            self._carry_out(*taken)

    def _next(self) -> bool:
        """Carry out the next delivery: the one this thread's last commit claimed, one
        claimed for an idle thread, or one claimed now; whether to look again at once."""
        local = self._local.__dict__
        taken = local.pop("next", None)
        if taken is None:
            with self._lock:
                taken = self._ready.popleft() if self._ready else None
        if taken is not None:
            self._carry_out(*taken)
            more = True
        else:
            more = self._step(1, spare=True)[1]
        # What a delivery's commit claimed says it better: a next one, or whether more was left.
        looked = local.pop("looked", None)
        return "next" in local or (more if looked is None else looked.more)

    def step(self, limit: int = 1) -> int:
        """Claim and carry out up to `limit` deliveries; returns how many were taken."""
        return self._step(limit)[0]

    def _step(self, limit: int, *, spare: bool = False) -> tuple[int, bool]:
        """(how many were taken, whether to look again at once: more were claimable, or,
        having delivered, more waited for their owner's runs in flight). With `spare`,
        also one for each idle thread, handed to them."""
        # Paced, one such claim at a time: two threads must not both find room for one run.
        with self._pacing if self._alone_on_sqlite else nullcontext():
            claimed_at = time.monotonic()  # with `now`: the lease counts from here, lock waits included
            with self._lock:
                extra = self._idle if spare else 0
                if self._alone_on_sqlite:
                    room = self._room(claimed_at)
                    if not room:  # a quick run is in flight here: its commit claims what comes next
                        return 0, False
                    limit, extra = min(limit, room), min(extra, room - min(limit, room))
                self._lapsed_looked = claimed_at  # this claim looks for leases that ran out
            now = self.clock()
            claimed = self.store.events.claim(
                iso(now), iso(now + self.lease), limit + extra, per_owner=self.settings.owner_runs_max
            )
            mine = list(claimed)[:limit]
            self._hand_out(claimed, claimed_at, keep=len(mine))
        for delivery in mine:
            self._carry_out(delivery, claimed_at)
        return len(mine), claimed.more or (bool(claimed) and claimed.waiting)

    def _room(self, now: float, finishing: int | None = None) -> int:
        """Paced (under the lock): how many deliveries may start now besides those in flight
        (but `finishing`): one, and one more for each of them claimed QUICK_RUN_S ago."""
        others = [t for d, t in self._started.items() if d != finishing]
        slow = sum(1 for t in others if now - t >= QUICK_RUN_S)
        return max(0, 1 + slow - len(others))

    def _carry_out(self, delivery: Delivery, claimed_at: float) -> None:
        try:
            if self._stop.is_set():
                self.store.events.release(delivery.id, token=delivery.token)
                return
            self.leases.hold(delivery)
            try:
                self.deliver(delivery, claimed_at)
            finally:
                self.leases.release(delivery)
        finally:
            self._forget(delivery)

    def _looping(self) -> bool:
        """Whether this is a delivery thread (step() and drain() carry out only what they claim)."""
        return getattr(self._local, "looping", False) and not self._stop.is_set()

    def _claim_at_commit(self, box: Box, finishing: int) -> None:
        """Inside the transaction that finishes a delivery: claim this thread's next one and
        one per idle thread, into `box`; handed out (_handed_at_commit) once it commits."""
        looked = time.monotonic()
        with self._lock:
            want = 1 + self._idle
            if self._alone_on_sqlite:
                room = self._room(looked, finishing)
                if looked - self._started.get(finishing, looked) >= QUICK_RUN_S:
                    room = max(room, 1)  # a slow run's thread keeps its slot for the next run
                want = min(want, room)
                if not want:  # another quick run in flight here goes on claiming
                    return
            # Leases run out only after a whole lease: a look every second finds them soon
            # enough, and spares each run's commit two statements (the poll's claims always look).
            expired = looked - self._lapsed_looked >= EXPIRED_LOOK_S
            if expired:
                self._lapsed_looked = looked
        now = self.clock()
        claimed = self.store.events.claim(
            iso(now), iso(now + self.lease), want, per_owner=self.settings.owner_runs_max, expired=expired
        )
        box[:] = [(claimed, time.monotonic(), self._read_ahead(claimed))]

    def _read_ahead(self, claimed: Claimed) -> dict[int, ReadAhead]:
        """The function and event of each claimed function delivery, read in the claim's
        transaction (see the module docstring). One whose function or event is gone is
        left out: its run reads again and fails as it would have."""
        ahead = {}
        for delivery in claimed:
            if delivery.target_kind != "function":
                continue
            try:
                fn = self.store.functions.get_by_id(delivery.target_id)
                event = None if delivery.event_id is None else self.store.events.event(delivery.event_id)
            except NotFound:
                continue
            ahead[delivery.id] = (fn, event)
        return ahead

    def _handed_at_commit(self, box: Box) -> None:
        if not box:
            return
        claimed, claimed_at, ahead = box[0]
        if ahead:
            with self._lock:
                self._ahead.update(ahead)
        local = self._local.__dict__
        local["looked"] = claimed
        if claimed:
            local["next"] = (claimed[0], claimed_at)
        self._hand_out(claimed, claimed_at, keep=1)

    def _commit_in_batch(self, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A run's writes, committed by the group commit with whatever else is waiting (or,
        with nothing else of this process to wait for, by this thread)."""
        if self._alone_on_sqlite:
            with self.store.transaction():
                return write()
        stored: dict[str, Any] = self.bus.writer.submit(write, clean_refusals=False, bounded=False).result()
        return stored

    def _hand_out(self, claimed: Claimed, claimed_at: float, *, keep: int) -> None:
        """Count what was claimed as in flight; all but the first `keep` go to idle threads."""
        with self._lock:
            self._in_flight.update(d.owner for d in claimed)
            if self._alone_on_sqlite:
                self._started.update((d.id, claimed_at) for d in claimed)
            spare = list(claimed)[keep:]
            self._ready.extend((d, claimed_at) for d in spare)
        if spare:
            self.bus.wake.ring(len(spare))

    def _forget(self, delivery: Delivery) -> None:
        with self._lock:
            self._started.pop(delivery.id, None)
            self._ahead.pop(delivery.id, None)
            self._in_flight[delivery.owner] -= 1
            if self._in_flight[delivery.owner] <= 0:
                del self._in_flight[delivery.owner]

    def _owner_full(self, owner: str) -> bool:
        """Whether every run slot of `owner` is held by a delivery claimed here."""
        return self._in_flight.get(owner, 0) >= self.settings.owner_runs_max

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
        with self._lock:
            ahead = self._ahead.pop(delivery.id, None)
        fn = ahead[0] if ahead is not None else self.store.functions.get_by_id(delivery.target_id)
        if not fn.enabled:
            queue.finish(delivery.id, status="failed", error=f"function {fn.name} is disabled", token=delivery.token)
            return

        looping = self._looping()
        box: Box = []  # the next deliveries, claimed in the run's commit

        def finish(run_id: str) -> None:
            queue.finish(delivery.id, run_id=run_id, token=delivery.token)
            if looping:
                self._claim_at_commit(box, delivery.id)

        def renew() -> None:
            # The lease counted from the claim; waiting for a free worker must not use it
            # up, or another thread claims the delivery again and it runs twice.
            if claimed_at is not None and time.monotonic() - claimed_at < fresh_s:
                return
            queue.renew(delivery.id, iso(self.clock() + self.lease), token=delivery.token)

        trigger: dict[str, Any]
        given: dict[str, Any]  # what the engine hands the function besides the trigger
        if delivery.event_id is None:
            scheduled = {"scheduled_at": delivery.scheduled_at, "cron": delivery.cron}
            scheduled.update(schedule_window(fn.manifest, delivery.cron, delivery.scheduled_at))
            trigger, given = {"type": "schedule"}, {"scheduled": scheduled}
        else:
            event = ahead[1] if ahead is not None and ahead[1] is not None else queue.event(delivery.event_id)
            if event["source"] == LEDGER_SOURCE:
                trigger = {"type": "ledger_change", "event_id": event["id"]}
                given = {"ledger_change": json.loads(event["data"]), "depth": delivery.depth}
            else:
                context = {k: event[k] for k in ("id", "name", "data", "published_at", "source")}
                trigger, given = {"type": "event", "event_id": event["id"]}, {"event": context, "depth": delivery.depth}
        # A delivery thread's run commits with the other runs and publishes waiting then.
        commit = self._commit_in_batch if looping else None
        self.engine.run(fn, trigger, **given, on_commit=finish, on_start=renew, commit=commit)
        self._handed_at_commit(box)

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
        box: Box = []  # the next deliveries, claimed in this commit
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
            if self._looping():
                self._claim_at_commit(box, delivery.id)
        self._handed_at_commit(box)


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
