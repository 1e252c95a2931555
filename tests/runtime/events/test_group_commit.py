"""Group commit of publishes (runtime/events/publish_writer.py).

Every publish from outside (the API's fast path, the FastAPI route, Particle's
door, the CLI) is committed by one writer thread, in one transaction with the
publishes waiting beside it. What must hold: nobody hears "accepted" before
the commit that holds the event; a publish refused on its own leaves the
others alone; a batch that cannot commit fails every publish in it with the
store's error and writes nothing; the queue is bounded (503 with Retry-After
past it); after-commit callbacks (the doorbell, live streams) fire after the
commit.

The writer is held inside its transaction by a `Gate` (a scope it enters after
BEGIN), so what is queued, batched and visible is decided by events, not timing.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from runtime.events.publish_writer import PublishWriter
from runtime.http.app import create_app
from runtime.service import Service
from store import Settings, Store
from store.errors import DiskFull, NotFound, QueueFull, StoreBusy
from tests.conftest import BACKENDS
from tests.store.test_faults import FullDisk


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def service(store: Store) -> Iterator[Service]:
    service = Service(store)
    yield service
    service.integration_runner.close()


class Gate:
    """A writer scope: the first batch waits inside its transaction until `open()`; every
    batch runs `before_commit` (if set) after its publishes, before its COMMIT."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._opened = threading.Event()
        self.before_commit = lambda: None

    def open(self) -> None:
        self._opened.set()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.entered.set()
        assert self._opened.wait(10), "the test never opened the gate"
        yield
        self.before_commit()


def gated(service: Service, **options) -> Gate:
    """The service's writer replaced by one whose batches pass the gate (then the bus's scope)."""
    gate = Gate()

    @contextmanager
    def scope() -> Iterator[None]:
        with gate(), service.bus.batch():
            yield

    limits = {"queue_max": service.bus.writer.queue_max, "batch_max": service.bus.writer.batch_max}
    service.bus.writer = PublishWriter(service.store, scope=scope, **{**limits, **options})
    return gate


def visible(store: Store, event_id: str) -> bool:
    """Whether another thread (another connection) sees the event: committed."""

    def look() -> bool:
        try:
            store.events.event(event_id)
        except NotFound:
            return False
        return True

    with ThreadPoolExecutor(1) as other:
        return other.submit(look).result()


def publish_soon(service: Service, name: str, data: str | None = None, actor=None):
    """A publish handed to the writer, as the API's threads hand it: a future."""
    actor = actor or service.actor()
    return service.bus.writer.submit(functools.partial(service.publish_event, actor, name, data))


def test_a_publish_is_answered_only_after_its_batch_commits(service):
    gate = gated(service)
    accepted_ids: list[str] = []
    seen_before_commit = []

    def before_commit():
        seen_before_commit.append((future.done(), [visible(service.store, i) for i in accepted_ids]))

    gate.before_commit = before_commit
    work = functools.partial(service.publish_event, service.actor(), "sensor", "21.5")
    future = service.bus.writer.submit(lambda: accepted_ids.append(work()["id"]) or accepted_ids[-1])
    gate.open()
    event_id = future.result(10)
    assert seen_before_commit == [(False, [False])]  # written, not committed, not answered
    assert visible(service.store, event_id)
    assert service.store.events.event(event_id)["data"] == "21.5"


def test_publishes_waiting_together_share_one_transaction(service):
    gate = gated(service)
    first = publish_soon(service, "sensor", "0")
    assert gate.entered.wait(10)  # the first batch holds the writer, inside its transaction
    rest = [publish_soon(service, "sensor", str(n)) for n in range(1, 6)]
    gate.open()
    ids = [f.result(10)["id"] for f in [first, *rest]]
    assert service.bus.writer.batches == 2  # one for the first, one for the five behind it
    assert len(set(ids)) == 6 and all(visible(service.store, i) for i in ids)
    assert [service.store.events.event(i)["data"] for i in ids] == [str(n) for n in range(6)]


def test_a_refused_publish_leaves_the_others_in_its_batch(service, store):
    admin = service.actor()
    service.create_integration(admin, {"name": "hook", "event": "busy", "url": "https://example.com/in"})
    other = service.create_user(admin, "other")
    service.create_integration(other, {"name": "hook", "event": "busy", "url": "https://example.com/in"})
    store.events.max_pending_per_owner = 1  # one open delivery each
    gate = gated(service)
    blocker = publish_soon(service, "quiet")  # matches nothing: holds the writer
    assert gate.entered.wait(10)
    batch = [
        publish_soon(service, "busy", "a"),
        publish_soon(service, "busy", "b"),
        publish_soon(service, "busy", "c", other),
    ]
    gate.open()
    blocker.result(10)
    accepted, refused, others = batch
    assert visible(store, accepted.result(10)["id"]) and visible(store, others.result(10)["id"])
    with pytest.raises(QueueFull):
        refused.result(10)
    assert service.bus.writer.batches == 2
    assert store.events.open_deliveries_of(admin.owner) == 1  # the refused one wrote nothing


def test_one_failure_rolls_the_batch_back_and_the_others_commit_alone(service, store):
    gate = gated(service)
    blocker = publish_soon(service, "quiet")
    assert gate.entered.wait(10)
    written: list[str] = []

    def good():
        accepted = service.publish_event(service.actor(), "sensor", "1")
        written.append(accepted["id"])
        return accepted

    def broken():
        raise RuntimeError("a bug in the middle of a batch")

    first = service.bus.writer.submit(good)
    bad = service.bus.writer.submit(broken)
    last = publish_soon(service, "sensor", "2")
    gate.open()
    blocker.result(10)
    with pytest.raises(RuntimeError, match="a bug in the middle"):
        bad.result(10)
    accepted = first.result(10)
    rolled_back, again = written  # it wrote inside the failed batch, then again alone
    assert again == accepted["id"] and not visible(store, rolled_back) and visible(store, again)
    assert visible(store, last.result(10)["id"])
    assert service.bus.writer.batches == 1 + 1 + 3  # the blocker, the failed batch, its three alone


def test_the_queue_is_bounded_and_past_it_a_publish_is_503_at_once(service, store):
    token = store.identity.create_token(service.actor())  # a write: before the gate holds the lock
    gate = gated(service, queue_max=2)
    blocker = publish_soon(service, "quiet")
    assert gate.entered.wait(10)  # taken out of the queue: the queue is empty behind it
    queued = [publish_soon(service, "sensor", "1"), publish_soon(service, "sensor", "2")]
    with pytest.raises(StoreBusy) as caught:
        publish_soon(service, "sensor", "3")
    assert (caught.value.status, caught.value.retry_after) == (503, 1)
    assert "waiting to be written" in caught.value.message
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(service)) as fast, TestClient(create_app(service, publish_fast_path=False)) as plain:
        for client in (fast, plain):
            response = client.post("/v1/events", headers=headers, json={"name": "sensor", "data": "4"})
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "waiting to be written" in response.json()["error"]
        gate.open()
        for future in [blocker, *queued]:
            assert visible(store, future.result(10)["id"])
        assert fast.post("/v1/events", headers=headers, json={"name": "sensor"}).status_code == 202


def test_the_queue_bound_and_the_batch_size_are_settings(store):
    store.settings = store.settings.model_copy(update={"publish_queue_max": 2, "publish_batch_max": 1})
    service = Service(store)  # LOGIC_PUBLISH_QUEUE_MAX=2, LOGIC_PUBLISH_BATCH_MAX=1
    try:
        gate = gated(service)  # with the service's limits
        blocker = publish_soon(service, "quiet")
        assert gate.entered.wait(10)
        queued = [publish_soon(service, "sensor", "1"), publish_soon(service, "sensor", "2")]
        with pytest.raises(StoreBusy, match="2 publishes are waiting"):
            publish_soon(service, "sensor", "3")
        gate.open()
        for future in [blocker, *queued]:
            assert visible(store, future.result(10)["id"])
        assert service.bus.writer.batches == 3  # one publish per transaction
    finally:
        service.integration_runner.close()


def test_a_delivery_threads_commit_is_never_refused_by_a_full_queue(service, store):
    gate = gated(service, queue_max=1)
    blocker = publish_soon(service, "quiet")
    assert gate.entered.wait(10)
    queued = publish_soon(service, "sensor", "1")  # the queue is full now
    with pytest.raises(StoreBusy):
        publish_soon(service, "sensor", "2")
    run_commit = service.bus.writer.submit(
        functools.partial(service.publish_event, service.actor(), "sensor", "3"), clean_refusals=False, bounded=False
    )
    gate.open()
    for future in (blocker, queued, run_commit):
        assert visible(store, future.result(10)["id"])


def test_the_doorbell_rings_only_after_the_commit(service):
    service.create_integration(service.actor(), {"name": "hook", "event": "sensor", "url": "https://example.com/in"})
    gate = gated(service)
    rung_before_commit = []
    gate.before_commit = lambda: rung_before_commit.append(service.bus.wake.wait(0))
    future = publish_soon(service, "sensor", "1")
    gate.open()
    assert future.result(10)["deliveries"] == 1
    assert rung_before_commit == [False]
    assert service.bus.wake.wait(0)  # rung once the delivery was committed


def test_every_publish_path_goes_through_the_writer(service, store):
    token = store.identity.create_token(service.actor())
    headers = {"Authorization": f"Bearer {token}"}
    writer = service.bus.writer
    with TestClient(create_app(service)) as fast, TestClient(create_app(service, publish_fast_path=False)) as plain:
        for client, path, body in (
            (fast, "/v1/events", {"name": "a"}),
            (plain, "/v1/events", {"name": "b"}),
            (fast, "/v1/devices/events", {"name": "c"}),  # Particle's door (a FastAPI route)
        ):
            before = writer.batches
            response = client.post(path, headers=headers, json=body)
            assert response.status_code in (200, 202), response.text
            assert writer.batches == before + 1
    before = writer.batches
    service.publish_event(service.actor(), "d")  # the CLI's way
    assert writer.batches == before + 1


@pytest.mark.sqlite_only
def test_a_batch_whose_commit_fails_fails_every_publish_in_it(settings: Settings, monkeypatch):
    monkeypatch.setattr(sqlite3, "connect", functools.partial(sqlite3.connect, factory=FullDisk))
    monkeypatch.setattr(FullDisk, "at", None)
    store, _ = Store.initialize(settings)
    service = Service(store)
    try:
        service.create_integration(
            service.actor(), {"name": "hook", "event": "sensor", "url": "https://example.com/in"}
        )
        gate = gated(service)
        blocker = publish_soon(service, "quiet")
        assert gate.entered.wait(10)
        written: list[str] = []

        def publish(n: int):
            accepted = service.publish_event(service.actor(), "sensor", str(n))
            written.append(accepted["id"])
            return accepted

        batch = [service.bus.writer.submit(functools.partial(publish, n)) for n in range(3)]
        gate.before_commit = lambda: setattr(FullDisk, "at", "commit")  # the disk fills before COMMIT
        gate.open()
        errors = []
        for future in [blocker, *batch]:
            with pytest.raises(DiskFull) as caught:
                future.result(10)
            errors.append((caught.value.status, caught.value.message))
        assert len(set(errors)) == 1 and errors[0][0] == 507  # one clear error for all
        FullDisk.at, gate.before_commit = None, lambda: None
        assert len(written) == 3 and not any(visible(store, i) for i in written)
        assert store.events.open_deliveries() == 0
        assert not service.bus.wake.wait(0)  # no delivery thread was woken for them
        assert service.publish_event(service.actor(), "sensor", "again")["deliveries"] == 1  # and it recovers
    finally:
        service.integration_runner.close()
        store.close()
