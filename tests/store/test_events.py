"""The durable queue: claim with a lease, reclaim after a crash, give up after N tries, backpressure."""

import pytest

from store.errors import QueueFull
from tests.support import event_queue

T0, T1, T2, T9 = ("2026-01-01T00:00:0%d.000000Z" % n for n in (0, 1, 2, 9))


def test_event_and_deliveries_commit_together(store):
    events = event_queue(store)
    accepted = events.add_event("user:a", "temp", "21", "test", 0, [("function", "f1"), ("integration", "i1")])
    assert accepted["deliveries"] == 2
    rows = events.deliveries_of(accepted["id"])
    assert [(r["target_kind"], r["target_id"], r["status"]) for r in rows] == [
        ("function", "f1", "pending"),
        ("integration", "i1", "pending"),
    ]
    assert events.event(accepted["id"])["data"] == "21"


def test_claim_lease_and_reclaim_after_crash(store):
    events = event_queue(store, max_attempts=2)
    events.add_event("user:a", "e", None, "test", 0, [("function", "f1")])
    first = events.claim(T0, T2)
    assert len(first) == 1 and first[0].attempts == 1
    assert events.claim(T1, T2) == []  # leased: nobody else takes it
    # The claimer "died": after the lease another claim takes it again (at least once).
    again = events.claim(T9, "2026-01-01T00:00:20.000000Z")
    assert [d.id for d in again] == [first[0].id] and again[0].attempts == 2
    # It died again: with max_attempts reached it is recorded as failed, not retried forever.
    assert events.claim("2026-01-01T00:00:30.000000Z", "2026-01-01T00:00:40.000000Z") == []
    row = events.deliveries_of(first[0].event_id)[0]
    assert row["status"] == "failed" and "2 attempts" in row["last_error"]


def test_a_claim_told_not_to_look_leaves_lapsed_leases_for_the_next_that_looks(store):
    events = event_queue(store, max_attempts=2)
    events.add_event("user:a", "e", None, "test", 0, [("function", "f1")])
    lapsed = events.claim(T0, T1)[0]
    events.add_event("user:a", "e", None, "test", 0, [("function", "f2")])
    # At T9 the lease ran out; a claim that does not look takes only the pending work ...
    assert [d.target_id for d in events.claim(T9, T9, limit=5, expired=False)] == ["f2"]
    assert events.claim(T9, T9, limit=5, expired=False) == []
    # ... and the next that looks takes the lapsed one again.
    again = events.claim(T9, T9, limit=5)
    assert [(d.id, d.attempts) for d in again] == [(lapsed.id, 2)]


def test_finish_and_release(store):
    events = event_queue(store)
    events.add_event("user:a", "e", None, "test", 0, [("function", "f1"), ("function", "f2")])
    a, b = events.claim(T0, T9, limit=5)
    events.finish(a.id, run_id="r1")
    events.release(b.id)
    assert events.counts() == {"done": 1, "pending": 1}
    assert events.claim(T1, T9)[0].id == b.id


def test_backpressure_refuses_and_changes_nothing(store):
    events = event_queue(store, max_pending=3)
    events.add_event("user:a", "e", None, "test", 0, [("function", "f1")] * 3)
    with pytest.raises(QueueFull):
        events.add_event("user:a", "e", None, "test", 0, [("function", "f1")])
    assert store.db.one("SELECT count(*) FROM events")[0] == 1
    # Events with no target cost no queue space and are still accepted.
    events.add_event("user:a", "nobody-listens", None, "test", 0, [])


def test_open_counter_follows_every_state_change(store):
    events = event_queue(store, max_attempts=1)

    def counted() -> int:
        return store.db.one("SELECT count(*) FROM deliveries WHERE status IN ('pending', 'running')")[0]

    first = events.add_event("user:a", "e", None, "test", 0, [("function", "f1"), ("function", "f2")])
    events.add_event("user:a", "e", None, "test", 0, [("integration", "i1")])
    assert events.open_deliveries() == counted() == 3
    a, b = events.claim(T0, T1, limit=2)
    events.finish(a.id)
    events.release(b.id)
    assert events.open_deliveries() == counted() == 2
    events.claim(T0, T1, limit=5)
    events.claim(T9, T9)  # leases ran out with max_attempts reached: given up
    assert events.open_deliveries() == counted() == 0
    events.add_event("user:a", "e", None, "test", 0, [("function", "f3")])
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM events WHERE id = ?", (first["id"],))  # cascades to its deliveries
    assert events.open_deliveries() == counted() == 1


def test_prune_forgets_finished_history_only(store):
    events = event_queue(store)
    done = events.add_event("user:a", "old-done", None, "test", 0, [("function", "f1")])
    [claimed] = events.claim(T0, T9)
    assert claimed.event_id == done["id"]
    events.finish(claimed.id)
    events.add_scheduled("user:a", "f3", T0, "* * * * *")
    [cron] = events.claim(T0, T9)
    assert cron.event_id is None
    events.finish(cron.id)
    still_open = events.add_event("user:a", "old-open", None, "test", 0, [("function", "f2")])
    idle = events.add_event("user:a", "old-no-target", None, "test", 0, [])
    assert events.prune("2000-01-01T00:00:00.000000Z") == 0  # nothing is that old
    assert events.prune("9999-01-01T00:00:00.000000Z") == 3  # two events and one cron delivery
    remaining = {r[0] for r in store.db.all("SELECT id FROM events")}
    assert remaining == {still_open["id"]} and idle["id"] not in remaining
    assert events.open_deliveries() == 1 and [d["status"] for d in events.deliveries_of(still_open["id"])] == [
        "pending"
    ]


def test_a_claim_says_whether_work_was_left_behind_it(store):
    events = event_queue(store, max_attempts=3)
    events.add_event("user:a", "e", None, "test", 0, [("function", "f1"), ("function", "f2")])
    first = events.claim(T0, T2)
    assert len(first) == 1 and first.more  # f2 waits
    second = events.claim(T0, T2)
    assert len(second) == 1 and not second.more  # that was the last one
    empty = events.claim(T0, T2)
    assert empty == [] and not empty.more
    # Expired leases count as work left too: both come back after T2.
    assert events.claim(T9, "2026-01-01T00:00:30.000000Z", limit=1).more
