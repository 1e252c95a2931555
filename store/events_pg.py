"""The delivery queue's claim and counters on PostgreSQL, where many nodes claim at once.

SQLite has one writer, so its claim (events.py) may read candidates and then take them.
Here two nodes would read the same ones: candidates are locked as they are read, with
`FOR UPDATE SKIP LOCKED`, so each claimer takes rows nobody else holds and never waits
for another claimer (PostgreSQL's documented way to share a queue table).

Fairness is the same rule across nodes: owners take turns by their running count over
the whole cluster, fewest first; the cap of runs in flight (`per_owner`, half of one
node's workers) counts this node's runs, since workers are per node. The owners waiting
are found with a loose index scan (one seek per owner on the pending index), so a claim
costs O(owners waiting), not O(backlog). Open deliveries are counted on the partial
indexes that hold only open rows (no counter row that every publish and finish on every
node would update).
"""

from __future__ import annotations

from typing import Any, cast

from .clock import now_iso
from .errors import LeaseLost
from .events import _DELIVERY_COLUMNS, Claimed, Delivery, EventStore

_RETURNING = ", ".join(f"d.{column.strip()}" for column in _DELIVERY_COLUMNS.split(","))

# Owners with pending deliveries, each with its running count (cluster-wide and this node's).
_OWNERS_WAITING = """
WITH RECURSIVE o(owner) AS (
    (SELECT owner FROM deliveries WHERE status = 'pending' ORDER BY owner LIMIT 1)
    UNION ALL
    SELECT (SELECT d.owner FROM deliveries d WHERE d.status = 'pending' AND d.owner > o.owner
            ORDER BY d.owner LIMIT 1)
    FROM o WHERE o.owner IS NOT NULL)
SELECT o.owner,
       (SELECT count(*) FROM deliveries r WHERE r.status = 'running' AND r.owner = o.owner),
       (SELECT count(*) FROM deliveries r WHERE r.status = 'running' AND r.owner = o.owner
                                           AND r.claimed_by = ?)
FROM o WHERE o.owner IS NOT NULL
"""

# Take the expired ids already locked, plus each owner's share of its oldest pending ones
# that nobody else holds, in one statement.
_TAKE = f"""
WITH picked AS (
    SELECT unnest(?::bigint[]) AS id
    UNION ALL
    SELECT c.id FROM unnest(?::text[], ?::int[]) AS w(owner, n)
    CROSS JOIN LATERAL (
        SELECT id FROM deliveries
        WHERE status = 'pending' AND owner = w.owner ORDER BY id LIMIT w.n
        FOR UPDATE SKIP LOCKED) AS c)
UPDATE deliveries d SET status = 'running', attempts = d.attempts + 1, lease_token = d.lease_token + 1,
       lease_until = ?, claimed_by = ?
FROM picked WHERE d.id = picked.id
RETURNING {_RETURNING}
"""


# A run's delivery closed under its fence and tied to the run, in one round trip: how many
# deliveries it closed (0: the lease was taken over). Each CTE runs whether read or not.
_FINISH_RUN = """
WITH finished AS (
    UPDATE deliveries SET status = ?, run_id = ?, last_error = NULL, finished_at = ?, lease_until = NULL
    WHERE id = ? AND status = 'running' AND lease_token = ?
    RETURNING id),
linked AS (UPDATE runs SET delivery_id = finished.id FROM finished WHERE runs.id = ? RETURNING runs.id)
SELECT count(*) FROM finished
"""

_GIVE_UPS_PER_CLAIM = 100  # leases given up at most per claim (the next claims take the rest)


class PostgresEventStore(EventStore):
    """EventQueue on PostgreSQL: events.py's, but for the claim and the counters."""

    def open_deliveries(self) -> int:
        row = self.db.one(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending') "
            "+ (SELECT count(*) FROM deliveries WHERE status = 'running')"
        )
        return int(row[0])

    def open_deliveries_of(self, owner: str) -> int:
        row = self.db.one(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending' AND owner = ?) "
            "+ (SELECT count(*) FROM deliveries WHERE status = 'running' AND owner = ?)",
            (owner, owner),
        )
        return int(row[0])

    def claim(
        self, now: str, lease_until: str, limit: int = 1, *, per_owner: int | None = None, expired: bool = True
    ) -> Claimed:
        with self.db.transaction() as conn:
            # The claim's statements take arrays: PostgreSQL's plan cache, unable to cost a
            # generic plan for them, planned each afresh (about 0.4 ms for _TAKE). Their generic
            # plans seek the same indexes (tests/store/test_postgres.py). LOCAL lasts to the
            # end of the transaction: at a run's commit that covers the batch's other writes,
            # lookups by key whose generic plans are the custom ones.
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            # Leases that ran out (their node died or was cut off): usually none, one cheap
            # look at the running rows. Those tried max_attempts times are given up.
            lapsed: list[int] = []
            doomed: list[int] = []
            for delivery_id, attempts in (
                conn.execute(
                    "SELECT id, attempts FROM deliveries WHERE status = 'running' AND lease_until < ? "
                    "ORDER BY lease_until, id LIMIT ? FOR UPDATE SKIP LOCKED",
                    (now, limit + 1 + _GIVE_UPS_PER_CLAIM),
                )
                if expired  # (see EventStore.claim)
                else ()
            ):
                (doomed if attempts >= self.max_attempts else lapsed).append(delivery_id)
            if doomed:
                conn.execute(
                    "UPDATE deliveries SET status = 'failed', finished_at = ?, "
                    "last_error = 'gave up: the run did not finish in ' || attempts || ' attempts' "
                    "WHERE id = ANY(?::bigint[])",
                    (now, doomed),
                )
            more = len(lapsed) > limit
            lapsed = lapsed[:limit]
            owners: list[str] = []
            shares: list[int] = []
            left: list[str] = []  # owners that could take another turn
            capped: list[str] = []  # owners this claim brought to their cap
            waiting = False
            if len(lapsed) < limit:
                turns, waiting = self._turns(conn, per_owner)
                owners, shares, left, capped = _share(turns, limit - len(lapsed), per_owner)
            claimed = Claimed()
            claimed.waiting = waiting
            rows = []
            if lapsed or owners:
                rows = conn.execute(_TAKE, (lapsed, owners, shares, lease_until, self.node)).fetchall()
            if not more and left:  # pending work of an owner with a turn left (ours now run)
                more = bool(
                    conn.execute(
                        "SELECT 1 FROM deliveries WHERE status = 'pending' AND owner = ANY(?::text[]) LIMIT 1",
                        (left,),
                    ).fetchone()
                )
            if capped and not claimed.waiting:  # more of theirs wait only for their runs in flight
                claimed.waiting = bool(
                    conn.execute(
                        "SELECT 1 FROM deliveries WHERE status = 'pending' AND owner = ANY(?::text[]) LIMIT 1",
                        (capped,),
                    ).fetchone()
                )
        claimed.more = more
        claimed.extend(sorted((Delivery(*row) for row in rows), key=lambda d: d.id))
        return claimed

    def finish(
        self,
        delivery_id: int,
        *,
        status: str = "done",
        run_id: str | None = None,
        error: str | None = None,
        token: int | None = None,
    ) -> None:
        """EventStore.finish; a run's (a run id, a token, no error) in one statement."""
        if run_id is None or token is None or error is not None:
            return super().finish(delivery_id, status=status, run_id=run_id, error=error, token=token)
        with self.db.transaction() as conn:
            (finished,) = conn.execute(_FINISH_RUN, (status, run_id, now_iso(), delivery_id, token, run_id)).fetchone()
            if not finished:  # inside: the caller's transaction, the run's record with it, rolls back
                raise LeaseLost(f"delivery {delivery_id} was taken over by another claim: its lease ran out")

    def _turns(self, conn: Any, per_owner: int | None) -> tuple[list[list[Any]], bool]:
        """[running in the cluster, this node's running, owner] of each owner that may take
        a turn; whether some owner waits only for its runs in flight."""
        turns, waiting = [], False
        for owner, running, mine in conn.execute(_OWNERS_WAITING, (self.node,)).fetchall():
            if per_owner is None or mine < per_owner:
                turns.append([running, mine, owner])
            else:
                waiting = True
        return turns, waiting


def _share(
    turns: list[list[Any]], limit: int, per_owner: int | None
) -> tuple[list[str], list[int], list[str], list[str]]:
    """Deal `limit` claims out in turns, fewest running first: (owners, how many each,
    the owners left with a turn to take, the owners this claim brought to their cap)."""
    shares: dict[str, int] = {}
    capped: list[str] = []
    for _ in range(limit):
        if not turns:
            break
        turn = min(turns)
        owner = cast(str, turn[2])
        shares[owner] = shares.get(owner, 0) + 1
        turn[0] += 1
        turn[1] += 1
        if per_owner is not None and turn[1] >= per_owner:
            turns.remove(turn)
            capped.append(owner)
    return list(shares), list(shares.values()), [cast(str, turn[2]) for turn in turns], capped
