"""Schedule triggers' ticks: which are due, and claiming one exactly once.

Every schedule trigger row keeps its next fire time. `claim_tick` moves it
forward with a compare-and-set (`... WHERE next_fire_at = expected`), inside
the caller's transaction (the one that enqueues the run), so two schedulers,
two processes or a restart never fire a tick twice and a crash never loses
one. Event triggers are matched by `FunctionStore.for_event`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backend import Backend


@dataclass(frozen=True)
class DueTick:
    trigger_id: int
    function_id: str
    owner: str
    enabled: bool  # the function and the trigger both: a tick of either disabled passes without a run
    cron: str
    timezone: str | None
    next_fire_at: str
    start_at: str | None = None  # the schedule's window (ISO 8601 UTC), either end open
    end_at: str | None = None


class TriggerStore:
    """Schedule ticks (SQLite); see the module docstring for the contract."""

    def __init__(self, db: Backend):
        self.db = db

    def due(self, now: str) -> list[DueTick]:
        """Every schedule trigger whose next tick is at or before `now`, oldest first."""
        return [
            DueTick(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], r[8])
            for r in self.db.all(
                "SELECT t.id, t.function_id, f.owner, (f.enabled = 1 AND t.enabled = 1), t.cron, t.timezone, "
                "t.next_fire_at, t.start_at, t.end_at FROM triggers t JOIN functions f ON f.id = t.function_id "
                "WHERE t.kind = 'schedule' AND t.next_fire_at <= ? ORDER BY t.next_fire_at",
                (now,),
            )
        ]

    def claim_tick(self, trigger_id: int, expected: str, following: str | None) -> bool:
        """Move the trigger's next tick from `expected` to `following` (None: no tick left in
        its window, it is never due again); False if another scheduler (or a redeploy) moved
        it first. Call inside the transaction that enqueues."""
        with self.db.transaction() as conn:
            return bool(
                conn.execute(
                    "UPDATE triggers SET next_fire_at = ? WHERE id = ? AND next_fire_at = ?",
                    (following, trigger_id, expected),
                ).rowcount
                == 1
            )
