"""Promise 7, sharing: owners share the queue, the delivery threads and the workers fairly,
and one owner's flood answers 429 to that owner only.

The attack (December review): owner A publishes 8 events for slow runs, then owner B
publishes one for a function that returns at once. With one global FIFO and no per-owner
cap, B's run waited for A's whole backlog (15.6 s; 21 hours at the defaults), B's test
run waited for a worker, and with a small queue A's flood made B's publish a 429.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.manifest import files_from_json
from store.clock import iso, utcnow
from store.errors import QueueFull, TooManyRequests
from store.events import EventStore
from tests.conftest import BACKENDS
from tests.support import event_queue, runtime_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


SLOW = "def main(event):\n    while True:\n        pass\n"  # ends at its 2 s time limit
QUICK = "def main(event):\n    return 'quick'\n"


# -- the queue itself ------------------------------------------------------------------


def claim(events: EventStore, per_owner: int | None = None):
    now = utcnow()
    return events.claim(iso(now), iso(now + timedelta(hours=1)), 1, per_owner=per_owner)


def test_claims_take_turns_across_owners(store):
    events = event_queue(store)
    for i in range(6):
        events.add_event("user:a", f"e{i}", None, "test", 0, [("function", "fa")])
    events.add_event("user:b", "late", None, "test", 0, [("function", "fb")])
    events.add_event("user:c", "later", None, "test", 0, [("function", "fc")])
    owners = [claim(events)[0].owner for _ in range(5)]
    # A's first, then the owners with nothing running, then A again: not A's whole backlog.
    assert owners == ["user:a", "user:b", "user:c", "user:a", "user:a"]


def test_an_owner_at_its_cap_of_runs_in_flight_is_skipped(store):
    events = event_queue(store)
    for i in range(5):
        events.add_event("user:a", f"e{i}", None, "test", 0, [("function", "fa")])
    assert [claim(events, per_owner=2)[0].owner for _ in range(2)] == ["user:a", "user:a"]
    blocked = claim(events, per_owner=2)
    assert list(blocked) == [] and blocked.more is False  # A's 3 others wait; no thread spins on them
    events.add_event("user:b", "late", None, "test", 0, [("function", "fb")])
    assert claim(events, per_owner=2)[0].owner == "user:b"
    first = events.deliveries_of(
        events.db.one("SELECT event_id FROM deliveries WHERE owner = 'user:a' AND status = 'running' ORDER BY id")[0]
    )[0]
    events.finish(first["id"])
    assert claim(events, per_owner=2)[0].owner == "user:a"  # a slot freed: A's turn again


def test_a_full_owner_queue_refuses_that_owner_only(store):
    events = event_queue(store, max_pending=100, max_pending_per_owner=3)
    for i in range(3):
        events.add_event("user:a", f"e{i}", None, "test", 0, [("function", "fa")])
    with pytest.raises(QueueFull, match="user:a has 3 deliveries waiting or running, its limit") as refused:
        events.add_event("user:a", "one-too-many", None, "test", 0, [("function", "fa")])
    assert refused.value.retry_after >= 1
    events.add_event("user:b", "fine", None, "test", 0, [("function", "fb")])  # B is not refused
    assert events.open_deliveries_of("user:a") == 3
    assert events.db.one("SELECT count(*) FROM events WHERE name = 'one-too-many'")[0] == 0  # nothing half-written


# -- through the real workers and delivery threads --------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(
        tmp_path_factory, "fair", workers=4, delivery_threads=4, run_timeout_s=2.0, queue_max_pending_per_owner=12
    )
    dispatcher = service.dispatcher(threads=4, poll_s=0.05)
    try:
        admin = service.actor()
        alice, bob = service.create_user(admin, "alice"), service.create_user(admin, "bob")
        service.deploy_function(
            alice,
            files_from_json({"name": "slow", "source": SLOW, "triggers": [{"type": "event", "event_name": "slow"}]}),
        )
        service.deploy_function(
            bob,
            files_from_json({"name": "quick", "source": QUICK, "triggers": [{"type": "event", "event_name": "quick"}]}),
        )
        dispatcher.start()
        yield service, alice, bob
    finally:
        dispatcher.stop(timeout=10)
        service.close()


def wait_for(check, timeout_s: float = 30.0):
    stop = time.monotonic() + timeout_s
    while time.monotonic() < stop:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def finished(service, owner: str) -> int:
    return service.store.db.one(
        "SELECT count(*) FROM deliveries WHERE owner = ? AND status IN ('done', 'failed')", (owner,)
    )[0]


def test_a_busy_owner_does_not_delay_another_owners_event_or_test_run(world):
    service, alice, bob = world
    for _ in range(8):
        service.publish_event(alice, "slow")
    wait_for(lambda: service.store.events.counts().get("running", 0) >= 2)
    service.publish_event(bob, "quick")
    wait_for(lambda: finished(service, "user:bob") == 1)
    # Bob's run did not wait for Alice's backlog: at most her first two runs (her cap) had a
    # chance to end. In one FIFO it came after all eight had been claimed.
    assert finished(service, "user:alice") <= 2
    assert (
        service.store.db.one("SELECT count(*) FROM deliveries WHERE owner = 'user:alice' AND status = 'running'")[0]
        <= service.settings.owner_runs_max
    )
    # Bob's test run finds a worker at once too, while Alice's runs are still going.
    record = service.execute_function(bob, files_from_json({"name": "t", "source": QUICK}), event_name="x")
    assert record["status"] == "success"
    assert service.store.events.counts().get("running", 0) >= 1
    wait_for(lambda: finished(service, "user:alice") == 8, timeout_s=60)


def test_an_owner_over_its_test_run_quota_gets_429_and_others_do_not(world):
    service, alice, bob = world
    slow = files_from_json({"name": "slow-test", "source": SLOW})
    started = [
        threading.Thread(target=service.execute_function, args=(alice, slow), kwargs={"event_name": "x"})
        for _ in range(service.settings.owner_runs_max)
    ]
    for t in started:
        t.start()
    try:
        wait_for(lambda: service.pool._busy_of.get("user:alice", 0) >= service.settings.owner_runs_max)
        with pytest.raises(TooManyRequests, match="user:alice already has 2 test or manual runs under way"):
            service.execute_function(alice, files_from_json({"name": "t", "source": QUICK}), event_name="x")
        assert (
            service.execute_function(bob, files_from_json({"name": "t", "source": QUICK}), event_name="x")["status"]
            == "success"
        )
    finally:
        for t in started:
            t.join(10)


def test_the_api_answers_429_with_retry_after_to_the_flooding_owner_only(world):
    service, alice, bob = world
    client = TestClient(create_app(service))
    alice_token = service.store.identity.create_token(alice)
    bob_token = service.store.identity.create_token(bob)
    wait_for(lambda: service.store.events.open_deliveries_of("user:alice") == 0, timeout_s=60)
    answers = [
        client.post("/v1/events", json={"name": "slow"}, headers={"Authorization": f"Bearer {alice_token}"})
        for _ in range(14)
    ]
    assert [a.status_code for a in answers].count(202) == 12
    refused = answers[-1]
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "user:alice has 12 deliveries waiting or running" in refused.json()["error"]
    ok = client.post("/v1/events", json={"name": "quick"}, headers={"Authorization": f"Bearer {bob_token}"})
    assert ok.status_code == 202


@pytest.mark.sqlite_only  # SQLite's query plans; PostgreSQL's: tests/store/test_postgres.py
def test_a_claim_seeks_indexes_and_never_walks_the_backlog(store):
    """Threat: a flooding owner making every claim (everyone's) slower. Each statement a
    claim runs is looked up by an index; none scans the deliveries table."""
    events = event_queue(store)
    for i in range(50):
        events.add_event("user:a" if i % 5 else "user:b", f"e{i}", None, "test", 0, [("function", "f")])
    statements: list[str] = []
    conn = store.db.conn
    conn.set_trace_callback(statements.append)
    try:
        claim(events, per_owner=2)
        events.open_deliveries_of("user:a")
    finally:
        conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE"))]
    assert len(selects) >= 5
    for sql in selects:
        steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        # A scan is allowed only of the running rows' index (one per delivery thread at most).
        scans = [s for s in steps if s.startswith("SCAN deliveries") and "deliveries_running" not in s]
        assert not scans, (sql, steps)
        if "owner" in sql.split("WHERE", 1)[-1].split("RETURNING")[0]:  # per owner: its own index range
            assert any("_by_owner" in s or "deliveries_running" in s or "owner_queue" in s for s in steps), (sql, steps)


def test_the_per_owner_counter_follows_every_change_of_a_delivery(store):
    """The quota reads a counter kept by triggers: it must equal the real count after
    publishes, claims, finishes, releases, failures and pruning."""
    events = event_queue(store)
    for i in range(6):
        events.add_event("user:a", f"e{i}", None, "test", 0, [("function", "fa"), ("integration", "ia")])
    events.add_event("user:b", "b", None, "test", 0, [("function", "fb")])

    def real(owner: str) -> int:
        return store.db.one(
            "SELECT count(*) FROM deliveries WHERE owner = ? AND status IN ('pending', 'running')", (owner,)
        )[0]

    taken = [claim(events)[0] for _ in range(5)]
    events.finish(taken[0].id)
    events.finish(taken[1].id, status="failed", error="x")
    events.release(taken[2].id)
    for owner in ("user:a", "user:b", "user:nobody"):
        assert events.open_deliveries_of(owner) == real(owner)
    store.db.execute("UPDATE deliveries SET status = 'done', finished_at = '2000-01-01T00:00:00Z'")
    events.prune("2100-01-01T00:00:00Z")
    assert events.open_deliveries_of("user:a") == real("user:a") == 0
