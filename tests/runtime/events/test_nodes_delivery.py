"""Delivery across nodes: several services (nodes) on one database, each with its own
dispatcher, as `logic serve --role worker` processes on different machines. Every
delivery runs once; a node whose lease was taken over cannot store a second run; the
heartbeat keeps a long run's lease; on PostgreSQL another node's publish rings this
node's doorbell (NOTIFY/LISTEN) long before its poll would look."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from runtime.manifest import files_from_json
from store import Settings, Store
from store.clock import iso, utcnow
from tests.conftest import BACKENDS
from tests.support import in_process_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def two_nodes(settings: Settings):
    Store.initialize(settings)[0].close()
    a = in_process_service(settings.model_copy(update={"node_id": "node-a"}))
    b = in_process_service(settings.model_copy(update={"node_id": "node-b"}))
    yield a, b
    a.close()
    b.close()


def deploy(service, name: str, source: str, event: str):
    files = files_from_json({"name": name, "source": source, "triggers": [{"type": "event", "event_name": event}]})
    return service.deploy_function(service.actor(), files)


def runs_per_delivery(service) -> Counter:
    rows = service.store.db.all("SELECT delivery_id FROM runs WHERE delivery_id IS NOT NULL")
    return Counter(r[0] for r in rows)


def test_two_nodes_deliver_every_event_once(two_nodes):
    a, b = two_nodes
    deploy(a, "count", "def main(event):\n    return event.data\n", "tick")
    accepted = [(a if n % 2 else b).publish_event(a.actor(), "tick", str(n)) for n in range(40)]
    done = threading.Barrier(3)
    totals: dict[str, int] = {}

    def drain(node, name):
        totals[name] = node.dispatcher().drain()
        done.wait(timeout=60)

    for node, name in ((a, "a"), (b, "b")):
        threading.Thread(target=drain, args=(node, name), daemon=True).start()
    done.wait(timeout=60)
    assert totals["a"] + totals["b"] == 40
    per_delivery = runs_per_delivery(a)
    assert len(per_delivery) == 40 and set(per_delivery.values()) == {1}
    statuses = {d["status"] for e in accepted for d in a.store.events.deliveries_of(e["id"])}
    assert statuses == {"done"}
    claimers = {r[0] for r in a.store.db.all("SELECT DISTINCT claimed_by FROM deliveries")}
    assert claimers <= {"node-a", "node-b"}


def test_a_node_that_lost_its_lease_stores_no_second_run(two_nodes):
    """Threat: a node cut off past its lease (a partition, a long pause) finishing a delivery
    that another node has taken over and run: two runs, two sets of side effects recorded."""
    a, b = two_nodes
    deploy(a, "once", "def main(event):\n    return 'ran'\n", "go")
    a.publish_event(a.actor(), "go", "x")
    now = utcnow()
    (stale,) = a.store.events.claim(iso(now), iso(now))  # a's lease ends at once: a stalled
    b_dispatcher = b.dispatcher()
    assert b_dispatcher.drain() == 1  # b takes it over and runs it
    a.dispatcher().deliver(stale)  # a wakes up and runs it too: its finish fails the fence
    assert list(runs_per_delivery(a).values()) == [1]
    runs = a.function_runs(a.actor(), "once")
    assert len(runs) == 1
    row = a.store.db.one("SELECT status, claimed_by, lease_token FROM deliveries WHERE id = ?", (stale.id,))
    assert tuple(row) == ("done", "node-b", stale.token + 1)


def test_the_heartbeat_keeps_a_running_delivery_from_being_taken(two_nodes):
    a, b = two_nodes
    deploy(a, "slow", "def main(event):\n    return 1\n", "go")
    a.publish_event(a.actor(), "go", "x")
    now = utcnow()
    dispatcher = a.dispatcher()
    (held,) = a.store.events.claim(iso(now), iso(now))  # a lease that has run out already...
    dispatcher.leases.hold(held)
    assert dispatcher.leases.beat() == set()  # ... renewed for a whole lease by the heartbeat
    assert b.dispatcher().drain() == 0  # so b finds nothing to take over
    b.store.db.execute("UPDATE deliveries SET lease_token = lease_token + 1 WHERE id = ?", (held.id,))
    assert dispatcher.leases.beat() == {held.id}  # taken over (as a claim by b would): lost
    assert dispatcher.leases.lost(held)


def test_another_nodes_publish_rings_this_nodes_doorbell(two_nodes):
    """PostgreSQL: NOTIFY/LISTEN. SQLite: a datagram per committed publish (process_doorbell.py)."""
    a, b = two_nodes
    deploy(a, "rung", "def main(event):\n    return 1\n", "ring")
    dispatcher = b.dispatcher(threads=1, poll_s=60.0)  # the poll would not look for a minute
    dispatcher.start()
    try:
        # The first publish may meet the dispatcher's first look; by the second, it waits.
        for n in (1, 2):
            a.publish_event(a.actor(), "ring", str(n))
            deadline = utcnow().timestamp() + 15
            while utcnow().timestamp() < deadline and sum(runs_per_delivery(a).values()) < n:
                threading.Event().wait(0.05)
            assert sum(runs_per_delivery(a).values()) == n
    finally:
        dispatcher.stop(timeout=10)


def test_a_worker_node_on_sqlite_commits_its_own_runs_and_rings_only_when_idle(two_nodes, backend):
    """Without the API, nothing of the process shares a run's commit: on SQLite the delivery
    thread commits it (the group commit's writer opens no batch). A change made elsewhere
    wakes a thread only while nothing is in flight: the commits of runs in flight claim
    the next work, and waking idle threads for them made claims that came back empty."""
    a, b = two_nodes
    deploy(a, "own", "def main(event):\n    return event.data\n", "own")
    dispatcher = b.dispatcher(threads=1, alone=True)
    dispatcher.start()
    try:
        for n in range(5):
            a.publish_event(a.actor(), "own", str(n))
        deadline = utcnow().timestamp() + 15
        while utcnow().timestamp() < deadline and sum(runs_per_delivery(a).values()) < 5:
            threading.Event().wait(0.05)
    finally:
        dispatcher.stop(timeout=10)
    per_delivery = runs_per_delivery(a)
    assert len(per_delivery) == 5 and set(per_delivery.values()) == {1}
    if backend == "sqlite":
        assert b.bus.writer.batches == 0
    else:  # PostgreSQL's worker nodes keep the group commit: its transactions are round trips
        assert b.bus.writer.batches > 0

    wake = b.bus.wake
    dispatcher._in_flight["someone"] = 1  # a run in flight here: its commit claims what came
    dispatcher._rung(0)
    assert not wake.wait(0)
    del dispatcher._in_flight["someone"]
    dispatcher._rung(0)  # nothing in flight: a change elsewhere is worth one look
    assert wake.wait(0) and not wake.wait(0)
