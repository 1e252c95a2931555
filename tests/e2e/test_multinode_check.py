"""The multi-node test's full check judges what was due when it saw everything settled.

A cron tick of a boundary crossed during the check is pending or running when the rows
are read; the check must leave it to the next one (CI once failed on exactly that: a
tick a second old, `running`), and still fail a due tick, or an event's delivery, that
is not done. Rows come from a table in memory, so each case is exact.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.multinode import Database, Expectation, full_check, iso_minute, minute_floor

FUNCTION, TICKER = "fn-work", "fn-tick"


class Rows(Database):
    """Database's queries answered from lists: deliveries as full_check selects them."""

    def __init__(self) -> None:
        super().__init__("postgresql://unused")
        self.deliveries: list[tuple] = []  # id, event_id, kind, target, scheduled_at, status, attempts, error, run_id
        self.runs: list[tuple] = []  # id, function_id, status, record, delivery_id
        self.events: list[str] = []

    def rows(self, sql: str) -> list[tuple]:
        if sql.startswith("SELECT event_id, scheduled_at, status, target_id FROM deliveries"):
            return [(d[1], d[4], d[5], d[3]) for d in self.deliveries if d[5] in ("pending", "running") or d[4]]
        if sql.startswith("SELECT id, event_id"):
            return list(self.deliveries)
        if sql == "SELECT id FROM events":
            return [(e,) for e in self.events]
        if sql.startswith("SELECT id, function_id, status, record, delivery_id FROM runs"):
            return list(self.runs)
        raise AssertionError(f"unexpected query: {sql}")

    def event(self, event_id: str, status: str = "done") -> None:
        self.events.append(event_id)
        self._delivery(event_id, FUNCTION, None, status, {"type": "event", "event_id": event_id})

    def tick(self, at: datetime, status: str = "done") -> None:
        scheduled = iso_minute(at)
        self._delivery(None, TICKER, scheduled, status, {"type": "schedule", "scheduled_at": scheduled})

    def _delivery(self, event_id: str | None, target: str, at: str | None, status: str, trigger: dict) -> None:
        delivery_id = len(self.deliveries) + 1
        run_id = f"run-{delivery_id}" if status == "done" else None
        self.deliveries.append((delivery_id, event_id, "function", target, at, status, 1, None, run_id))
        if run_id is not None:
            self.runs.append((run_id, target, "success", json.dumps({"trigger": trigger}), delivery_id))


@pytest.fixture
def start() -> datetime:
    return minute_floor(datetime.now(UTC)) - timedelta(minutes=4)


def every_tick_done(db: Rows, start: datetime) -> None:
    """Ticks done for every boundary from `start` to the minute before this one: whatever
    is due, even if the minute turns during the test."""
    at = start
    while at < minute_floor(datetime.now(UTC)):
        db.tick(at)
        at += timedelta(minutes=1)


def expectation(start: datetime) -> Expectation:
    # A grace of two minutes: the current minute's boundary (and the one before) are never due.
    return Expectation({"load": 1}, TICKER, start, max_attempts=5, tick_grace_s=120)


def test_a_tick_not_yet_due_may_still_run(start):
    db = Rows()
    db.event("e1")
    every_tick_done(db, start)
    db.tick(minute_floor(datetime.now(UTC)), status="running")  # just fired: not due yet
    summary = full_check(db, {"e1": "load"}, expectation(start), timeout=1)
    assert summary.accepted == 1 and summary.ticks[-1] == iso_minute(minute_floor(datetime.now(UTC)))


def test_a_due_tick_still_running_fails_the_check(start):
    db = Rows()
    db.event("e1")
    db.tick(start)
    db.tick(start + timedelta(minutes=1), status="running")
    with pytest.raises(AssertionError, match="timed out"):
        full_check(db, {"e1": "load"}, expectation(start), timeout=0.3)


def test_an_accepted_event_not_done_fails_the_check(start):
    db = Rows()
    db.event("e1", status="running")
    every_tick_done(db, start)
    with pytest.raises(AssertionError, match="timed out"):
        full_check(db, {"e1": "load"}, expectation(start), timeout=0.3)


def test_a_due_tick_that_never_fired_fails_the_check(start):
    db = Rows()
    db.event("e1")
    db.tick(start)
    db.tick(start + timedelta(minutes=2))  # the boundary between never fired
    with pytest.raises(AssertionError, match="timed out"):
        full_check(db, {"e1": "load"}, expectation(start), timeout=0.3)
