"""Durable events and the delivery queue.

An event and one delivery per matching target are committed together before
the publisher hears "accepted". Deliveries are claimed inside a transaction
with a lease (no assumption that this is the only process on the database);
a claim whose lease ran out -- its process died -- is claimed again, so each
delivery runs at least once, and one that keeps dying is recorded as failed.

Owners share the queue fairly (threat: one tenant's flood starving the
others): a claim takes the oldest pending delivery of the owner with the
fewest deliveries running, skipping owners already at their cap of runs in
flight; each owner may have at most `max_pending_per_owner` deliveries open,
and past it only that owner's publishes are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from .backend import Backend, Tx
from .clock import now_iso
from .errors import LeaseLost, NotFound, QueueFull


@dataclass(frozen=True)
class Delivery:
    id: int
    owner: str
    target_kind: str  # "function" | "integration"
    target_id: str
    event_id: str | None
    scheduled_at: str | None
    cron: str | None
    depth: int
    attempts: int
    token: int = 0  # the claim's lease token: finish and renew name it (the fence)


_DELIVERY_COLUMNS = "id, owner, target_kind, target_id, event_id, scheduled_at, cron, depth, attempts, lease_token"


class Claimed(list[Delivery]):
    """The deliveries a claim took; `more` tells whether others were waiting behind them,
    claimable now; `waiting` whether some wait only for their owner's runs in flight."""

    more: bool = False
    waiting: bool = False


# What a publish writes: EventStore.add_event one at a time, EventBatch.write for a batch.
_INSERT_EVENT = "INSERT INTO events (id, owner, name, data, published_at, source, depth) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_DELIVERY = (
    "INSERT INTO deliveries (owner, target_kind, target_id, event_id, depth, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)


class EventStore:
    """EventQueue on SQLite."""

    def __init__(self, db: Backend, *, max_pending: int, max_pending_per_owner: int, max_attempts: int, node: str = ""):
        self.db = db
        self.max_pending = max_pending
        self.max_pending_per_owner = max_pending_per_owner
        self.max_attempts = max_attempts
        self.node = node  # who claims: deliveries.claimed_by

    def open_deliveries(self) -> int:
        """Pending plus running deliveries (a counter the schema's triggers keep exact)."""
        row = cast(Any, self.db.one("SELECT open FROM queue_stats WHERE id = 1"))  # its migration adds it
        return cast(int, row[0])

    def open_deliveries_of(self, owner: str) -> int:
        """One owner's pending plus running deliveries (a counter the schema's triggers keep exact)."""
        row = self.db.one("SELECT open FROM owner_queue WHERE owner = ?", (owner,))
        return 0 if row is None else row[0]

    def add_event(
        self,
        owner: str,
        name: str,
        data: str | None,
        source: str,
        depth: int,
        targets: Iterable[tuple[str, str]],
        *,
        check_capacity: bool = True,
    ) -> dict[str, Any]:
        """Insert an event and its deliveries (inside the caller's transaction)."""
        targets = list(targets)
        event_id = uuid.uuid4().hex
        published_at = now_iso()
        with self.db.transaction() as conn:
            if check_capacity and targets:
                self.refuse_past_capacity(owner, len(targets), self.open_deliveries_of(owner), self.open_deliveries())
            conn.execute(
                _INSERT_EVENT,
                (event_id, owner, name, data, published_at, source, depth),
            )
            conn.executemany(
                _INSERT_DELIVERY,
                [(owner, kind, target_id, event_id, depth, published_at) for kind, target_id in targets],
            )
            if targets:
                self.db.announce(len(targets))
        return {"id": event_id, "name": name, "published_at": published_at, "deliveries": len(targets)}

    def refuse_past_capacity(self, owner: str, adding: int, open_of_owner: int, open_in_all: int) -> None:
        """QueueFull if `adding` deliveries would pass the owner's limit or the queue's."""
        if open_of_owner + adding > self.max_pending_per_owner:
            raise QueueFull(
                f"{owner} has {self.max_pending_per_owner:,} deliveries waiting or running, "
                "its limit: try again shortly"
            )
        if open_in_all + adding > self.max_pending:
            raise QueueFull(f"the delivery queue is full ({self.max_pending:,} pending): try again shortly")

    def add_scheduled(self, owner: str, function_id: str, scheduled_at: str, cron: str) -> bool:
        """A cron tick's run (inside the caller's transaction, with the trigger's advance);
        False if this tick of this function and cron was enqueued already (the unique key
        behind the trigger's compare-and-set: any number of schedulers fire it once)."""
        with self.db.transaction() as conn:
            added = conn.execute(
                "INSERT INTO deliveries (owner, target_kind, target_id, scheduled_at, cron, created_at) "
                "VALUES (?, 'function', ?, ?, ?, ?) "
                "ON CONFLICT (target_id, cron, scheduled_at) WHERE scheduled_at IS NOT NULL DO NOTHING",
                (owner, function_id, scheduled_at, cron, now_iso()),
            ).rowcount
            if added:
                self.db.announce(1)
        return bool(added)

    def event(self, event_id: str) -> dict[str, Any]:
        row = self.db.one(
            "SELECT id, owner, name, data, published_at, source, depth FROM events WHERE id = ?", (event_id,)
        )
        if row is None:
            raise NotFound(f"event {event_id} does not exist")
        return dict(row)

    def claim(
        self, now: str, lease_until: str, limit: int = 1, *, per_owner: int | None = None, expired: bool = True
    ) -> Claimed:
        """Take up to `limit` deliveries: first those whose lease expired (their process died;
        never starved by a long backlog), then pending ones, taking turns across owners:
        each time the oldest pending delivery of the owner with the fewest running, among
        owners with fewer than `per_owner` running. `.more` on the result says whether
        claimable work was left (a claimer that took the last one need not look again).
        Without `expired`, leases that ran out are not looked for (a claimer that looked a
        moment ago: two statements saved on every run's commit).

        Every query names its status exactly as a partial index does (`status = 'pending'`,
        `status = 'running'`), so SQLite uses that index, not a scan of every delivery ever
        made.
        """
        with self.db.transaction() as conn:
            ids: list[int] = []
            if expired:
                # A delivery that has died with its process max_attempts times is given up.
                conn.execute(
                    "UPDATE deliveries SET status = 'failed', finished_at = ?, "
                    "last_error = 'gave up: the run did not finish in ' || attempts || ' attempts' "
                    "WHERE status = 'running' AND lease_until < ? AND attempts >= ?",
                    (now, now, self.max_attempts),
                )
                # One row more than wanted: whether work is left over.
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM deliveries WHERE status = 'running' AND lease_until < ? "
                        "ORDER BY lease_until, id LIMIT ?",
                        (now, limit + 1),
                    )
                ]  # by id alone: a scan in rowid order
            more = len(ids) > limit
            ids = ids[:limit]
            waiting = False
            if len(ids) < limit:
                taken, more, waiting = self._fair_pending(conn, limit - len(ids), per_owner)
                ids += taken
            claimed = Claimed()
            claimed.more, claimed.waiting = more, waiting
            if not ids:
                return claimed
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"UPDATE deliveries SET status = 'running', attempts = attempts + 1, lease_until = ?, "
                f"lease_token = lease_token + 1, claimed_by = ? WHERE id IN ({marks}) RETURNING {_DELIVERY_COLUMNS}",
                (lease_until, self.node, *ids),
            ).fetchall()
        claimed.extend(sorted((Delivery(*row) for row in rows), key=lambda d: d.id))
        return claimed

    def _fair_pending(self, conn: Tx, limit: int, per_owner: int | None) -> tuple[list[int], bool, bool]:
        """Up to `limit` pending ids, one owner's turn at a time; whether more are claimable;
        whether more wait for owners at their cap.

        Owners with pending work are found by a skip-scan of the owner index, which also
        gives each owner's two oldest pending ids (one seek per owner), so a claim costs
        O(owners waiting), not O(backlog).
        """
        turns = []  # [running, oldest pending ids (up to 2), owner]
        waiting = False
        owner = ""
        while True:
            rows = conn.execute(
                "SELECT owner, id FROM deliveries WHERE status = 'pending' AND owner > ? ORDER BY owner, id LIMIT 2",
                (owner,),
            ).fetchall()
            if not rows:
                break
            owner = rows[0][0]
            running = conn.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'running' AND owner = ?", (owner,)
            ).fetchone()[0]
            if per_owner is None or running < per_owner:
                turns.append([running, [i for o, i in rows if o == owner], owner])
            else:
                waiting = True
        taken: list[int] = []
        while turns and len(taken) < limit:
            turn = min(turns)
            ids, owner = turn[1], turn[2]
            taken.append(ids.pop(0))
            turn[0] += 1
            if not ids and len(taken) < limit:  # more of this owner's, for this same claim
                ids += [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM deliveries WHERE status = 'pending' AND owner = ? AND id > ? "
                        "ORDER BY id LIMIT 2",
                        (owner, taken[-1]),
                    )
                ]
            capped = per_owner is not None and turn[0] >= per_owner
            if not ids or capped:
                turns.remove(turn)
                waiting = waiting or (capped and bool(ids))
        return taken, bool(turns), waiting

    def finish(
        self,
        delivery_id: int,
        *,
        status: str = "done",
        run_id: str | None = None,
        error: str | None = None,
        token: int | None = None,
    ) -> None:
        """Close a delivery (inside the caller's transaction, with what it produced). With
        the claim's `token`: LeaseLost if the lease ran out and another claim took it, so
        the caller's transaction -- the run's record with it -- rolls back. A run is tied
        to its delivery (runs.delivery_id, unique): never two runs for one delivery."""
        fence, fenced = ("", ()) if token is None else (" AND status = 'running' AND lease_token = ?", (token,))
        with self.db.transaction() as conn:
            finished = conn.execute(
                "UPDATE deliveries SET status = ?, run_id = ?, last_error = ?, finished_at = ?, "
                f"lease_until = NULL WHERE id = ?{fence}",
                (status, run_id, error, now_iso(), delivery_id, *fenced),
            ).rowcount
            if not finished and token is not None:
                raise LeaseLost(f"delivery {delivery_id} was taken over by another claim: its lease ran out")
            if run_id is not None:
                conn.execute("UPDATE runs SET delivery_id = ? WHERE id = ?", (delivery_id, run_id))

    def renew(self, delivery_id: int, lease_until: str, *, token: int | None = None) -> bool:
        """Extend a claim (its run starts only now: it waited for a worker); False if it is
        no longer this claim's (with `token`) or no longer running."""
        fence, fenced = ("", ()) if token is None else (" AND lease_token = ?", (token,))
        with self.db.transaction() as conn:
            return bool(
                conn.execute(
                    f"UPDATE deliveries SET lease_until = ? WHERE id = ? AND status = 'running'{fence}",
                    (lease_until, delivery_id, *fenced),
                ).rowcount
            )

    def heartbeat(self, held: Iterable[tuple[int, int]], lease_until: str) -> set[int]:
        """Extend every lease this node holds, (delivery id, token) each, in one transaction;
        the ids whose lease is no longer this node's (taken over: stop counting on them)."""
        held = sorted(held)  # one lock order for every node: no deadlock between heartbeats
        if not held:
            return set()
        lost = set()
        with self.db.transaction() as conn:
            for delivery_id, token in held:
                renewed = conn.execute(
                    "UPDATE deliveries SET lease_until = ? WHERE id = ? AND status = 'running' AND lease_token = ?",
                    (lease_until, delivery_id, token),
                ).rowcount
                if not renewed:
                    lost.add(delivery_id)
        return lost

    def release(self, delivery_id: int, *, token: int | None = None) -> None:
        """Put a claimed delivery back (graceful shutdown before it started)."""
        fence, fenced = ("", ()) if token is None else (" AND lease_token = ?", (token,))
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL, "
                "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
                f"WHERE id = ? AND status = 'running'{fence}",
                (delivery_id, *fenced),
            )

    def prune(self, before: str, limit: int = 10_000) -> int:
        """Forget finished history older than `before`: events whose every delivery has
        finished (their deliveries go with them) and finished cron deliveries. Open work
        is never touched. Returns how many rows went. One node at a time (the others find
        the lock taken and skip this round)."""
        with self.db.transaction() as conn:
            if not self.db.try_lock("housekeeping"):
                return 0
            gone = conn.execute(
                "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.published_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id "
                "AND d.status IN ('pending', 'running')) LIMIT ?)",
                (before, limit),
            ).rowcount
            gone += conn.execute(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE event_id IS NULL "
                "AND status IN ('done', 'failed') AND finished_at < ? LIMIT ?)",
                (before, limit),
            ).rowcount
        return int(gone)

    def deliveries_of(self, event_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.all("SELECT * FROM deliveries WHERE event_id = ? ORDER BY id", (event_id,))]

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.all("SELECT status, count(*) FROM deliveries GROUP BY status")}

    # --- batching (ingest) ---

    def batch(self) -> EventBatch:
        """Publishes gathered inside the caller's transaction and written with one statement
        per table when it ends (the group-commit writer's batches: runtime/events/publish_writer.py)."""
        return EventBatch(self)


class EventBatch:
    """`add_event` for many publishes in one transaction: each is checked against the
    capacity as add_event checks it (the counters read once per owner per batch, then
    counted here), its id and time given at once, and the rows of all of them inserted
    by `write()` at the end, before the commit. Nothing is written for a refused one."""

    def __init__(self, events: EventStore):
        self.store = events
        self._events: list[tuple[Any, ...]] = []
        self._deliveries: list[tuple[Any, ...]] = []
        self._open_of: dict[str, int] = {}  # per owner: open deliveries, this batch's included
        self._open: int | None = None

    def add_event(
        self,
        owner: str,
        name: str,
        data: str | None,
        source: str,
        depth: int,
        targets: Iterable[tuple[str, str]],
        *,
        check_capacity: bool = True,
    ) -> dict[str, Any]:
        """As EventStore.add_event; the rows are inserted by `write()`."""
        targets = list(targets)
        store = self.store
        if targets:
            open_of = self._open_of.get(owner)
            if open_of is None:
                open_of = self._open_of[owner] = store.open_deliveries_of(owner)
            if self._open is None:
                self._open = store.open_deliveries()
            if check_capacity:
                store.refuse_past_capacity(owner, len(targets), open_of, self._open)
            self._open_of[owner] = open_of + len(targets)
            self._open += len(targets)
        event_id = uuid.uuid4().hex
        published_at = now_iso()
        self._events.append((event_id, owner, name, data, published_at, source, depth))
        self._deliveries += [(owner, kind, target_id, event_id, depth, published_at) for kind, target_id in targets]
        return {"id": event_id, "name": name, "published_at": published_at, "deliveries": len(targets)}

    def write(self) -> None:
        """Insert every event gathered, then every delivery (inside the caller's transaction)."""
        if not self._events:
            return
        db = self.store.db
        with db.transaction() as conn:
            if len(self._events) == 1:  # a publish alone in its batch: as add_event writes it
                conn.execute(_INSERT_EVENT, self._events[0])
            else:
                conn.executemany(_INSERT_EVENT, self._events)
            if self._deliveries:
                conn.executemany(
                    _INSERT_DELIVERY,
                    self._deliveries,
                )
                db.announce(len(self._deliveries))
        self._events, self._deliveries = [], []


def event_store(db: Backend, **options: Any) -> EventStore:
    """The EventQueue for this backend (PostgreSQL's claims differ: events_pg.py)."""
    if db.dialect == "postgresql":
        from .events_pg import PostgresEventStore

        return PostgresEventStore(db, **options)
    return EventStore(db, **options)
