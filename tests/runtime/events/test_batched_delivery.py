"""Delivery threads that batch (runtime/events/dispatcher.py): runs commit through the group
commit, claims ride on those commits, and rings nobody could act on are dropped.

What must hold: the records of runs that finish together commit in one transaction and
that transaction claims their threads' next deliveries; one run's failure (its function
deleted while it ran) costs no other run its record; a batch that cannot commit leaves
each of its deliveries claimed, and its lease brings it back, as a single failed commit
does; a flood from one owner whose run slots are all taken wakes no idle thread.

The runs are held in the pool (`HeldPool`) and the writer at the start of its transaction
(`Gate`, as in test_group_commit.py), so which commits share a batch is decided by
events, not timing. The dispatcher's poll is a minute: only rings and commits move work.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from runtime.events import dispatcher as dispatcher_module
from runtime.events.doorbell import Doorbell
from runtime.events.publish_writer import PublishWriter
from runtime.manifest import files_from_json
from runtime.service import Service
from store import Settings, Store
from store.clock import iso
from tests.conftest import BACKENDS
from tests.store.test_faults import FullDisk
from tests.support import in_process_service

POLL_S = 60.0  # the dispatcher's poll never fires during a test


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class HeldPool:
    """The engine's pool, holding every run until `release()`; counts the runs waiting."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self._go = threading.Event()
        self._cond = threading.Condition()
        self.arrived = 0

    def run(self, job, on_secret, on_start=None, on_ledger=None):
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
        assert self._go.wait(10), "the test never released the runs"
        return self.pool.run(job, on_secret, on_start, on_ledger)

    def wait_for(self, runs: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.arrived >= runs, 10), f"{self.arrived} of {runs} runs started"

    def release(self) -> None:
        self._go.set()

    def __getattr__(self, name):
        return getattr(self.pool, name)


class Writer(PublishWriter):
    """The group commit, counting what it was handed; `gated`, its first batch waits at the
    start of its transaction until `open()`. `before_commit(n)` runs inside batch n (from 1)."""

    def __init__(self, service: Service, *, gated: bool = True) -> None:
        self.entered, self._opened = threading.Event(), threading.Event()
        if not gated:
            self._opened.set()
        self._cond = threading.Condition()
        self.run_commits: list[int] = []  # per batch: how many runs' commits it held
        self.submitted = 0
        self.written = 0  # batches done (committed or failed)
        self.before_commit: Callable[[int], None] = lambda n: None
        super().__init__(service.store, scope=self._scope)
        self._bus = service.bus

    @contextmanager
    def _scope(self) -> Iterator[None]:
        self.entered.set()
        assert self._opened.wait(10), "the test never opened the writer"
        with self._bus.batch():
            yield
        self.before_commit(len(self.run_commits))

    def open(self) -> None:
        self._opened.set()

    def submit(self, work, *, clean_refusals: bool = True, bounded: bool = True):
        future = super().submit(work, clean_refusals=clean_refusals, bounded=bounded)
        with self._cond:
            self.submitted += 1
            self._cond.notify_all()
        return future

    def _write(self, batch) -> None:
        self.run_commits.append(sum(not item.clean_refusals for item in batch))
        super()._write(batch)
        with self._cond:
            self.written += 1
            self._cond.notify_all()

    def wait_until(self, condition: Callable[[], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(condition, 10), "the writer never got there"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def world(settings: Settings) -> Iterator[tuple[Service, Clock]]:
    settings = settings.model_copy(update={"workers": 4, "runs_in_flight_per_owner": 2})
    Store.initialize(settings)[0].close()
    clock = Clock()
    service = in_process_service(settings, clock=clock)
    yield service, clock
    service.close()


def deploy(service: Service, name: str, event: str) -> None:
    files = files_from_json(
        {
            "name": name,
            "source": "def main(event):\n    return event.data\n",
            "triggers": [{"type": "event", "event_name": event}],
        }
    )
    service.deploy_function(service.actor(), files)


def held(service: Service) -> HeldPool:
    pool = service.engine.pool = HeldPool(service.engine.pool)
    return pool


class Claims(list[tuple[str, int]]):
    """(thread name, deliveries taken) of every claim from its making on."""

    def __init__(self, service: Service, monkeypatch) -> None:
        super().__init__()
        self._cond = threading.Condition()
        claim = service.store.events.claim

        def spy(*args, **kwargs):
            claimed = claim(*args, **kwargs)
            with self._cond:
                self.append((threading.current_thread().name, len(claimed)))
                self._cond.notify_all()
            return claimed

        monkeypatch.setattr(service.store.events, "claim", spy)

    def wait_for(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self) >= count, 10), f"{len(self)} of {count} claims"


class Watch:
    """Wakes `wait_until` after every call of `obj.name` (made from here on; for a method
    that commits on its own, so what it wrote is visible by then)."""

    def __init__(self, obj, name: str, monkeypatch) -> None:
        self._cond = threading.Condition()
        method = getattr(obj, name)

        def watched(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            finally:
                with self._cond:
                    self._cond.notify_all()

        monkeypatch.setattr(obj, name, watched)

    def wait_until(self, condition: Callable[[], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(condition, 10), "never got there"


def runs_in_one_batch(service: Service, pool: HeldPool, before_commit=None) -> Writer:
    """Hold the writer behind a publish, let the held runs finish so that both their
    commits wait in its queue, then let it go: they share its next batch."""
    writer = service.bus.writer = Writer(service)
    if before_commit is not None:
        writer.before_commit = before_commit
    blocker = writer.submit(functools.partial(service.publish_event, service.actor(), "quiet"))
    assert writer.entered.wait(10)
    pool.release()
    writer.wait_until(lambda: writer.submitted == 3)  # the blocker and both runs' commits
    writer.open()
    blocker.result(10)
    return writer


def statuses(service: Service, event_ids: list[str]) -> list[str]:
    return [d["status"] for i in event_ids for d in service.store.events.deliveries_of(i)]


def test_runs_finishing_together_commit_in_one_transaction_that_claims_their_next(world, monkeypatch):
    service, _clock = world
    deploy(service, "f", "a")
    ids = [service.publish_event(service.actor(), "a", str(n))["id"] for n in range(4)]
    pool = held(service)
    claims = Claims(service, monkeypatch)
    dispatcher = service.dispatcher(threads=2, poll_s=POLL_S)
    dispatcher.start()
    try:
        pool.wait_for(2)  # the owner's two slots: two runs under way, two deliveries pending
        writer = service.bus.writer = Writer(service)
        blocker = writer.submit(functools.partial(service.publish_event, service.actor(), "quiet"))
        assert writer.entered.wait(10)
        pool.release()
        writer.wait_until(lambda: writer.submitted == 3)  # the blocker and both runs' commits
        claims_before = len(claims)
        writer.open()
        blocker.result(10)
        writer.wait_until(lambda: statuses(service, ids) == ["done"] * 4)
    finally:
        dispatcher.stop(10)
    assert writer.run_commits[:2] == [0, 2]  # the blocker's batch, then both runs' commits in one
    runs = service.function_runs(service.actor(), "f")
    assert sorted(r["result"] for r in runs) == ["0", "1", "2", "3"]  # each once
    # The last two deliveries were claimed inside the writer's transactions, at those commits.
    later = claims[claims_before:]
    assert sum(n for name, n in later if name == "publish-writer") == 2
    assert not [c for c in later if c[0] != "publish-writer" and c[1]]


def test_a_run_that_fails_in_a_batch_costs_no_other_run_its_record(world, monkeypatch):
    service, _clock = world
    deploy(service, "f", "a")
    deploy(service, "g", "b")
    keep, lose = (service.publish_event(service.actor(), name, "x")["id"] for name in ("a", "b"))
    pool = held(service)
    finished = Watch(service.store.events, "finish", monkeypatch)  # g's failure is noted outside the writer
    dispatcher = service.dispatcher(threads=2, poll_s=POLL_S)
    dispatcher.start()
    try:
        pool.wait_for(2)
        service.delete_function(service.actor(), "g")  # while its run is under way
        writer = runs_in_one_batch(service, pool)
        finished.wait_until(lambda: "running" not in statuses(service, [keep, lose]))
    finally:
        dispatcher.stop(10)
    assert writer.run_commits[:2] == [0, 2]  # they met in one batch...
    [kept] = service.store.events.deliveries_of(keep)
    assert kept["status"] == "done" and service.function_runs(service.actor(), "f")[0]["result"] == "x"
    [lost] = service.store.events.deliveries_of(lose)  # ...and g's failure stayed g's
    assert (lost["status"], lost["last_error"]) == ("failed", "function g was deleted while it ran")


class Reads(list[tuple[str, str]]):
    """(thread name, what) of every read of a function by id or of an event from here on."""

    def __init__(self, service: Service, monkeypatch) -> None:
        super().__init__()
        for obj, name in ((service.store.functions, "get_by_id"), (service.store.events, "event")):
            monkeypatch.setattr(obj, name, self._spy(getattr(obj, name), name))

    def _spy(self, method, name: str):
        def spy(*args, **kwargs):
            self.append((threading.current_thread().name, name))
            return method(*args, **kwargs)

        return spy

    def by(self, thread_prefix: str) -> list[str]:
        return sorted(what for thread, what in self if thread.startswith(thread_prefix))


def test_a_run_claimed_at_a_commit_has_its_function_and_event_read_in_that_transaction(world, monkeypatch):
    service, _clock = world
    deploy(service, "f", "a")
    ids = [service.publish_event(service.actor(), "a", str(n))["id"] for n in range(4)]
    pool = held(service)
    reads = Reads(service, monkeypatch)
    dispatcher = service.dispatcher(threads=2, poll_s=POLL_S)
    dispatcher.start()
    try:
        pool.wait_for(2)  # claimed by the threads themselves: they read their own
        writer = runs_in_one_batch(service, pool)
        writer.wait_until(lambda: statuses(service, ids) == ["done"] * 4)
    finally:
        dispatcher.stop(10)
    # The two claimed at the first runs' commit were read there, by the writer, and not again.
    assert reads.by("dispatcher") == ["event", "event", "get_by_id", "get_by_id"]
    assert reads.by("publish-writer") == ["event", "event", "get_by_id", "get_by_id"]
    runs = service.function_runs(service.actor(), "f")
    assert sorted((r["trigger"]["event_id"], r["result"]) for r in runs) == sorted(zip(ids, "0123", strict=True))
    assert dispatcher._ahead == {}  # nothing read ahead is kept past its delivery


def test_a_function_deleted_before_the_commit_that_claims_its_delivery_fails_that_one_alone(world, monkeypatch):
    service, _clock = world
    deploy(service, "f", "a")
    deploy(service, "g", "b")
    ids = [service.publish_event(service.actor(), "a", str(n))["id"] for n in range(2)]
    pool = held(service)
    finished = Watch(service.store.events, "finish", monkeypatch)  # g's failure is noted outside the writer
    dispatcher = service.dispatcher(threads=2, poll_s=POLL_S)
    dispatcher.start()
    try:
        pool.wait_for(2)  # the owner's two slots are f's: g's delivery waits for one of them
        gone = service.publish_event(service.actor(), "b", "x")["id"]
        service.delete_function(service.actor(), "g")
        writer = runs_in_one_batch(service, pool)  # f's commits claim g's delivery and find g gone
        finished.wait_until(
            lambda: "running" not in statuses(service, [*ids, gone]) and "pending" not in statuses(service, [gone])
        )
    finally:
        dispatcher.stop(10)
    assert writer.run_commits[:2] == [0, 2]
    assert statuses(service, ids) == ["done", "done"]  # the commit that claimed it still committed
    assert sorted(r["result"] for r in service.function_runs(service.actor(), "f")) == ["0", "1"]
    [lost] = service.store.events.deliveries_of(gone)
    assert lost["status"] == "failed" and "does not exist" in lost["last_error"]


class CommitFailsOnce(FullDisk):
    """The next COMMIT that wrote fails as on a full disk, once; every later one works."""

    def execute(self, sql: str, *args):
        if FullDisk.at == "once" and sql.strip().upper() == "COMMIT" and self.wrote:
            FullDisk.at = None
            raise FullDisk.error()
        return super().execute(sql, *args)


@pytest.mark.sqlite_only
def test_a_batch_that_cannot_commit_leaves_each_delivery_claimed_until_its_lease_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite3, "connect", functools.partial(sqlite3.connect, factory=CommitFailsOnce))
    monkeypatch.setattr(FullDisk, "at", None)
    settings = Settings(home=tmp_path / "home", master_key=None, workers=4, runs_in_flight_per_owner=2)
    Store.initialize(settings)[0].close()
    clock = Clock()
    service = in_process_service(settings, clock=clock)
    try:
        deploy(service, "f", "a")
        ids = [service.publish_event(service.actor(), "a", str(n))["id"] for n in range(2)]
        pool = held(service)
        dispatcher = service.dispatcher(threads=2, poll_s=POLL_S)
        dispatcher.start()
        try:
            pool.wait_for(2)
            writer = runs_in_one_batch(
                service, pool, before_commit=lambda n: setattr(FullDisk, "at", "once") if n == 2 else None
            )
            writer.wait_until(lambda: writer.written == 2)
            assert writer.run_commits == [0, 2] and FullDisk.at is None  # the runs' batch, whose COMMIT failed
            assert statuses(service, ids) == ["running", "running"]  # still claimed...
            assert service.function_runs(service.actor(), "f") == []  # ...and nothing of the runs
            clock.now += dispatcher.lease + timedelta(seconds=1)  # their leases run out
            service.bus.wake.ring_all()
            writer.wait_until(lambda: statuses(service, ids) == ["done", "done"])
        finally:
            dispatcher.stop(10)
        rows = [d for i in ids for d in service.store.events.deliveries_of(i)]
        assert [d["attempts"] for d in rows] == [2, 2]  # claimed again once each
        assert sorted(r["result"] for r in service.function_runs(service.actor(), "f")) == ["0", "1"]
    finally:
        service.close()


def test_a_flood_for_an_owner_with_every_slot_taken_wakes_no_idle_thread(tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home", master_key=None, workers=4, runs_in_flight_per_owner=1)
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    try:
        deploy(service, "f", "a")
        other = service.create_user(service.actor(), "other")
        files = files_from_json(
            {
                "name": "f",
                "source": "def main(event):\n    return 1\n",
                "triggers": [{"type": "event", "event_name": "a"}],
            }
        )
        service.deploy_function(other, files)
        writer = service.bus.writer = Writer(service, gated=False)
        first = service.publish_event(service.actor(), "a", "0")["id"]
        while service.bus.wake.wait(0):  # rings kept from before the threads: none left over
            pass
        pool = held(service)
        claims = Claims(service, monkeypatch)
        dispatcher = service.dispatcher(threads=2, poll_s=POLL_S)
        dispatcher.start()
        try:
            pool.wait_for(1)  # one thread runs the owner's one slot...
            claims.wait_for(2)  # ...the other found nothing it may take, and waits
            flood = [service.publish_event(service.actor(), "a", str(n))["id"] for n in range(1, 21)]
            assert claims == [(claims[0][0], 1), (claims[1][0], 0)]  # no ring reached the idle thread
            theirs = service.publish_event(other, "a", "y")["id"]  # another owner's work does ring it
            pool.wait_for(2)
            assert [n for _, n in claims[2:]] == [1]
            pool.release()  # each commit claims the owner's next: the flood drains without a ring
            everything = [first, *flood, theirs]
            writer.wait_until(lambda: statuses(service, everything) == ["done"] * 22)
        finally:
            dispatcher.stop(10)
        assert len(service.function_runs(service.actor(), "f")) == 21
    finally:
        service.close()


def test_events_published_one_at_a_time_never_wait_for_the_poll(world):
    """After a run whose commit found nothing more to claim, the thread sleeps; the next
    publish's ring must make it claim (the poll is a minute away)."""
    service, _clock = world
    deploy(service, "f", "a")
    writer = service.bus.writer = Writer(service, gated=False)  # wakes the test after each commit
    dispatcher = service.dispatcher(threads=1, poll_s=POLL_S)
    dispatcher.start()
    try:
        for n in range(3):
            event_id = service.publish_event(service.actor(), "a", str(n))["id"]
            writer.wait_until(lambda: statuses(service, [event_id]) == ["done"])  # noqa: B023
    finally:
        dispatcher.stop(10)
    assert sorted(r["result"] for r in service.function_runs(service.actor(), "f")) == ["0", "1", "2"]


def test_the_doorbell_drops_rings_for_an_owner_it_is_told_is_full():
    wake = Doorbell()
    wake.full = lambda owner: owner == "user:busy"
    wake.ring(3, "user:busy")
    assert not wake.wait(0)
    wake.ring(1, "user:idle")
    assert wake.wait(0) and not wake.wait(0)
    wake.ring(1)  # no owner (a cron tick, another node's NOTIFY): always rings
    assert wake.wait(0)


@pytest.mark.parametrize("look_every_s", [3600.0, 0.0])
def test_claims_at_commit_look_for_lapsed_leases_at_most_once_a_second(world, monkeypatch, look_every_s):
    """Each run's commit claims the next; looking there for leases that ran out costs two
    statements, so it looks once per EXPIRED_LOOK_S. A lapsed lease is not lost for it: the
    poll's claims always look. (3600 s: none of these commits looks; 0: each does.)"""
    service, clock = world
    deploy(service, "f", "a")
    ids = [service.publish_event(service.actor(), "a", str(n))["id"] for n in range(4)]
    lapsing = service.store.events.claim(iso(clock.now), iso(clock.now + timedelta(seconds=1)))[0]
    monkeypatch.setattr(dispatcher_module, "EXPIRED_LOOK_S", look_every_s)
    claims: list[tuple[bool, list[int]]] = []  # (looked, ids taken) of each claim
    claim = service.store.events.claim

    def noting(*args, expired=True, **kwargs):
        claimed = claim(*args, expired=expired, **kwargs)
        claims.append((expired, [d.id for d in claimed]))
        return claimed

    monkeypatch.setattr(service.store.events, "claim", noting)
    pool = held(service)
    dispatcher = service.dispatcher(threads=1, poll_s=0.05)
    committed = Watch(dispatcher, "_handed_at_commit", monkeypatch)  # called after each run's commit
    dispatcher.start()
    try:
        pool.wait_for(1)  # the first run (its claim looked: nothing had lapsed yet)
        clock.now += timedelta(seconds=5)  # the other claimer died: its lease ran out
        pool.release()
        committed.wait_until(lambda: statuses(service, ids) == ["done"] * 4)
    finally:
        dispatcher.stop(10)
    runs = service.function_runs(service.actor(), "f")
    assert sorted(r["trigger"]["event_id"] for r in runs) == sorted(ids)  # each once
    taking = [i for i, (_, taken) in enumerate(claims) if lapsing.id in taken]
    assert len(taking) == 1, claims
    looked, _ = claims[taking[0]]
    assert looked
    if look_every_s:  # the claims at commit took the backlog; the poll's look, the lapsed one
        before = claims[: taking[0]]
        assert sorted(i for _, taken in before for i in taken) == sorted(
            d["id"] for i in ids for d in service.store.events.deliveries_of(i) if d["id"] != lapsing.id
        ), claims
        assert not any(looked for looked, _ in before[1:]), claims
    else:  # the first commit's claim looked and took it
        assert taking == [1], claims
