"""The read-modify-write sites that SQLite's single writer made safe, raced on PostgreSQL
(docs/research/postgres-plan-2026-12-01.md, §2: one test per row, numbered as there).

Each race is forced, not hoped for: one node's transaction does its half and stays open
(the explicit lock held), the other node's request starts on a thread of its own, and the
first commits only once the second waits for one of its locks (seen in pg_stat_activity)
or has finished without waiting (a guard missing: the test then finds the damage).
"Nodes" are Stores of their own on one database (each with its pool and its key ring).

Also on SQLite where it means something: a stale key ring in a second process (#1),
two `initialize` at once (#9), claimers (#10) and a stale lease (#11). The other sites
are meaningless there: BEGIN IMMEDIATE takes the write lock before the first read, so
the second writer cannot even start its read until the first commits
(tests/store/test_database.py::test_writers_queue_instead_of_failing pins that queue).
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

import store.store as store_module
from store import Settings, Store, masterkey
from store.errors import Conflict, InvalidInput, LeaseLost, TooLarge
from store.events import EventStore, event_store
from store.functions import TriggerRow
from store.keyring import KeyRing
from tests.conftest import BACKENDS

OWNER = "user:race"
T0 = "2030-01-01T00:00:00.000000Z"  # a cron tick, due at NOW
NOW = "2030-01-01T00:00:30.000000Z"
T1 = "2030-01-01T00:01:00.000000Z"  # the tick after it
CRON = "* * * * *"


@pytest.fixture
def backend() -> str:
    return "postgresql"  # tests that make sense on both say @pytest.mark.parametrize("backend", BACKENDS)


@pytest.fixture
def other(store: Store) -> Iterator[Store]:
    """Another node on the same database."""
    node = Store.open(store.settings)
    yield node
    node.close()


@pytest.fixture
def watch(store: Store) -> Iterator[psycopg.Connection]:
    assert store.settings.database_url is not None
    with psycopg.connect(store.settings.database_url.get_secret_value(), autocommit=True) as conn:
        yield conn


class Attempt(threading.Thread):
    """A request on a thread of its own: its result, or the error it raised."""

    def __init__(self, fn: Callable[[], Any]):
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def outcome(self) -> Any:
        """Its result once finished; its error re-raised."""
        assert self.done.wait(30), "the request never finished"
        if self.error is not None:
            raise self.error
        return self.result


def start_and_wait_until_blocked(watch: psycopg.Connection, attempt: Attempt, waiting: int = 1) -> None:
    """Start `attempt`; return once `waiting` sessions of this database wait for a lock, or
    the attempt has finished without waiting."""
    attempt.start()
    deadline = time.monotonic() + 30
    while not attempt.done.is_set():
        row = watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        blocked = row[0] if row else 0
        if blocked >= waiting:
            return
        assert time.monotonic() < deadline, "the other request neither waited for a lock nor finished"
        attempt.done.wait(0.005)


def deploy(node: Store, name: str, source: str = "def main(): pass", *, triggers=(), secrets=()):
    return node.functions.deploy(OWNER, name, {"entry": "main"}, source, list(triggers), list(secrets))


def run_record(function_id: str, run_id: str) -> dict[str, Any]:
    return {"id": run_id, "function_id": function_id, "function_version": 1, "status": "ok", "started_at": NOW}


# 1. key rotation vs anything that seals -------------------------------------


def seal(node: Store, what: str, function_id: str) -> Callable[[], object]:
    if what == "secret":
        return lambda: node.secrets.create(OWNER, "NEW", "new-value")
    return lambda: node.functions.add_run(
        run_record(function_id, "run-new"), owner=OWNER, trigger_input={"data": "new-input"}
    )


def assert_everything_decrypts(*nodes: Store, new: str) -> None:
    for node in nodes:
        assert node.secrets.reveal(OWNER, "OLD").reveal() == "old-value"
        assert node.functions.run_input("run-old") == {"data": "old-input"}
        if new == "secret":
            assert node.secrets.reveal(OWNER, "NEW").reveal() == "new-value"
        else:
            assert node.functions.run_input("run-new") == {"data": "new-input"}


@pytest.mark.parametrize("what", ["secret", "run input"])
@pytest.mark.parametrize("first", ["seal", "rotation"])
def test_1_key_rotation_racing_a_seal_leaves_everything_decryptable(store, other, watch, what, first):
    """The rotation re-encrypts what it sees, then drops the old key: a value sealed under
    that key by a transaction it could not see would never decrypt again."""
    store.secrets.create(OWNER, "OLD", "old-value")
    fid = deploy(store, "fn").id
    store.functions.add_run(run_record(fid, "run-old"), owner=OWNER, trigger_input={"data": "old-input"})
    if first == "seal":
        with store.transaction():
            seal(store, what, fid)()  # sealed under key 1, not committed
            rotation = Attempt(other.rotate_data_key)
            start_and_wait_until_blocked(watch, rotation)
        rotation.outcome()
    else:
        with other.transaction():
            other.rotate_data_key()  # key 2 in, key 1 out, not committed
            sealing = Attempt(seal(store, what, fid))
            start_and_wait_until_blocked(watch, sealing)
        sealing.outcome()
    fresh = Store.open(store.settings)
    try:
        assert_everything_decrypts(store, other, fresh, new=what)
        assert len(fresh.ring.key_ids) == 1
    finally:
        fresh.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what", ["secret", "run input"])
def test_1_a_node_whose_ring_is_stale_seals_under_the_current_key(store, what):
    """SQLite too: a server keeps its ring in memory while `logic keys rotate` (another
    process) drops the key it holds; its next seal must use the new one."""
    store.secrets.create(OWNER, "OLD", "old-value")
    fid = deploy(store, "fn").id
    store.functions.add_run(run_record(fid, "run-old"), owner=OWNER, trigger_input={"data": "old-input"})
    cli = Store.open(store.settings)
    cli.rotate_data_key()
    cli.close()
    seal(store, what, fid)()  # the server, its ring still holding only the dropped key
    fresh = Store.open(store.settings)
    try:
        assert_everything_decrypts(fresh, new=what)
    finally:
        fresh.close()


# 2. redeploy vs the scheduler's tick -----------------------------------------


def schedule() -> list[TriggerRow]:
    return [TriggerRow(kind="schedule", cron=CRON, next_fire_at=T0)]


def tick(node: Store) -> int:
    """What the scheduler (runtime/events/scheduler.py) does at NOW: claim each due tick
    with the compare-and-set and enqueue its run, in one transaction."""
    fired = 0
    for due in node.triggers.due(NOW):
        with node.transaction():
            if node.triggers.claim_tick(due.trigger_id, due.next_fire_at, T1):
                fired += node.events.add_scheduled(due.owner, due.function_id, due.next_fire_at, due.cron)
    return fired


def test_2_a_redeploy_during_a_tick_keeps_its_advance_and_the_tick_fires_once(store, other, watch):
    fid = deploy(store, "cron", triggers=schedule()).id
    with store.transaction():
        assert tick(store) == 1  # the tick claimed and enqueued, not committed
        redeploy = Attempt(lambda: deploy(other, "cron", "def main(): return 2", triggers=schedule()))
        start_and_wait_until_blocked(watch, redeploy)
    assert redeploy.outcome().version == 2
    assert [t.next_fire_at for t in store.functions.triggers(fid)] == [T1]  # not T0 again
    assert tick(other) == 0  # another scheduler at the same moment finds nothing due
    runs = store.db.one("SELECT count(*) FROM deliveries WHERE target_id = ? AND scheduled_at = ?", (fid, T0))[0]
    assert runs == 1


# 3. two deploys of one function at once --------------------------------------


def test_3_two_deploys_of_one_function_each_make_a_version(store, other, watch):
    fid = deploy(store, "fn", "v1").id
    with store.transaction():
        deploy(store, "fn", "v2")
        second = Attempt(lambda: deploy(other, "fn", "v3"))
        start_and_wait_until_blocked(watch, second)
    assert second.outcome().version == 3
    assert [v["version"] for v in store.functions.versions(fid)] == [3, 2, 1]
    assert [store.functions.get_version(fid, n).source for n in (1, 2, 3)] == ["v1", "v2", "v3"]
    assert store.functions.get(OWNER, "fn").source == "v3"


def test_3_two_first_deploys_of_one_name_are_one_function_and_a_clear_conflict(store, other, watch):
    with store.transaction():
        deploy(store, "fresh", "mine")
        second = Attempt(lambda: deploy(other, "fresh", "theirs"))
        start_and_wait_until_blocked(watch, second)
    with pytest.raises(Conflict, match="function fresh was deployed at the same time"):
        second.outcome()
    [only] = store.functions.list(OWNER)
    assert (only.name, only.version, only.source) == ("fresh", 1, "mine")


# 4. two updates of one secret --------------------------------------------------


def kept_values(node: Store, name: str) -> dict[int, str]:
    rows = node.db.all(
        "SELECT v.version, CAST(v.ciphertext AS BLOB) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
        "WHERE s.owner = ? AND s.name = ?",
        (OWNER, name),
    )
    return {r[0]: node.ring.unseal(r[1], OWNER, name, version=r[0]).reveal() for r in rows}


def test_4_two_updates_of_one_secret_keep_both_versions_in_order(store, other, watch):
    store.secrets.create(OWNER, "TOKEN", "v1")
    with store.transaction():
        store.secrets.update(OWNER, "TOKEN", "v2")
        second = Attempt(lambda: other.secrets.update(OWNER, "TOKEN", "v3"))
        start_and_wait_until_blocked(watch, second)
    assert second.outcome().version == 3
    assert [v.number for v in store.secrets.versions(OWNER, "TOKEN")] == [3, 2, 1]
    assert store.secrets.reveal(OWNER, "TOKEN").reveal() == "v3"
    assert kept_values(store, "TOKEN") == {1: "v1", 2: "v2"}


# 5. a secret's delete vs a deploy declaring it ------------------------------------


def test_5_a_deploy_declaring_a_secret_being_deleted_is_refused_clearly(store, other, watch):
    store.secrets.create(OWNER, "DOOMED", "x")
    with store.transaction():
        store.secrets.delete(OWNER, "DOOMED")
        declaring = Attempt(lambda: deploy(other, "user_of_it", secrets=["DOOMED"]))
        start_and_wait_until_blocked(watch, declaring)
    with pytest.raises(InvalidInput, match="secret DOOMED does not exist"):
        declaring.outcome()
    assert store.secrets.names(OWNER) == []
    assert store.functions.list(OWNER) == []
    assert store.db.all("SELECT * FROM secret_usages") == []


def test_5_deleting_a_secret_a_deploy_is_declaring_is_a_clear_conflict(store, other, watch):
    store.secrets.create(OWNER, "WANTED", "x")
    with store.transaction():
        deploy(store, "user_of_it", secrets=["WANTED"])
        deleting = Attempt(lambda: other.secrets.delete(OWNER, "WANTED"))
        start_and_wait_until_blocked(watch, deleting)
    with pytest.raises(Conflict, match="secret WANTED is in use by function user_of_it"):
        deleting.outcome()
    assert store.secrets.info(OWNER, "WANTED").logic_functions == ["user_of_it"]
    assert store.secrets.reveal(OWNER, "WANTED").reveal() == "x"


# 6. two ledger writes --------------------------------------------------------------


def merge(node: Store, key: str) -> None:
    node.ledgers.write(OWNER, "book", "merge", {key: 1})


def read_then_replace(node: Store, key: str) -> None:
    """The ledger broker's commit (runtime/execution/ledger_broker.py): read the row for
    writing, merge in Python, write it back whole."""
    with node.transaction():
        data = node.ledgers.get(OWNER, "book", for_write=True).data
        node.ledgers.write(OWNER, "book", "replace", {**data, key: 1})


@pytest.mark.parametrize("write", [merge, read_then_replace], ids=["merge", "read for write, then replace"])
def test_6_two_ledger_writes_both_land(store, other, watch, write):
    store.ledgers.create(OWNER, "book")
    with store.transaction():
        write(store, "first")
        second = Attempt(lambda: write(other, "second"))
        start_and_wait_until_blocked(watch, second)
    second.outcome()
    assert store.ledgers.get(OWNER, "book").data == {"first": 1, "second": 1}
    assert len(store.ledgers.versions(OWNER, "book")) == 1  # {"first": 1}, replaced by the second


# 7. environment limits -----------------------------------------------------------------


@pytest.mark.parametrize("limit", ["count", "bytes"])
def test_7_concurrent_new_variables_never_pass_the_owners_limit(store, watch, limit):
    tight = store.settings.model_copy(update={"env_vars_max": 3} if limit == "count" else {"env_bytes_max": 10})
    one, two = Store.open(tight), Store.open(tight)
    try:
        one.environment.set(OWNER, "A", "1234")
        one.environment.set(OWNER, "B", "12")  # count 2 of 3; bytes 6 of 10
        with one.transaction():
            one.environment.set(OWNER, "C", "123")  # count 3; bytes 9
            second = Attempt(lambda: two.environment.set(OWNER, "D", "12"))  # count 4; bytes 11
            start_and_wait_until_blocked(watch, second)
        with pytest.raises(InvalidInput if limit == "count" else TooLarge):
            second.outcome()
        assert [v.name for v in one.environment.list(OWNER)] == ["A", "B", "C"]
    finally:
        one.close()
        two.close()


# 8. the change audit's chain -----------------------------------------------------------


def record_change(node: Store, target: str) -> None:
    node.changes.record(
        at=NOW, actor="admin", via="cli", owner=OWNER, action="set", target_kind="secret", target=target
    )


def record_changes(node: Store, prefix: str) -> None:
    for i in range(10):
        record_change(node, f"{prefix}{i}")


def test_8_two_change_audit_writers_keep_one_chain(store, other, watch):
    with store.transaction():
        record_change(store, "first")
        second = Attempt(lambda: record_change(other, "second"))
        start_and_wait_until_blocked(watch, second)
    second.outcome()
    writers = [
        Attempt(functools.partial(record_changes, node, prefix))
        for node, prefix in zip((store, other, store, store), "wxyz", strict=True)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.outcome()
    verdict = store.changes.verify()
    assert verdict.ok, verdict.problem
    ids = [r[0] for r in store.db.all("SELECT id FROM changes ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) == 1 + 2 + 40  # init's row, the two, the forty


# 9. two `logic init` at once on an empty database ------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_9_two_initializes_at_once_make_one_admin_and_one_key(settings, tmp_path, monkeypatch):
    """Two nodes started on an empty database (one master key for both). Forced: both
    find no schema, and both rings are read empty, before either writes its key."""
    key = masterkey.encode(masterkey.generate())
    nodes = [settings.model_copy(update={"master_key": SecretStr(key)}) for _ in range(2)]
    if settings.database_url is not None:  # two machines: two homes, one database
        nodes[1] = nodes[1].model_copy(update={"home": tmp_path / "second-home"})
    both_looked = threading.Barrier(2, timeout=30)
    both_read_the_ring = threading.Barrier(2, timeout=30)
    database_exists = store_module._database_exists

    def looked(s: Settings) -> bool:
        found = database_exists(s)
        both_looked.wait()
        return found

    class RingReadTogether(KeyRing):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            both_read_the_ring.wait()

    monkeypatch.setattr(store_module, "_database_exists", looked)
    monkeypatch.setattr(store_module, "KeyRing", RingReadTogether)
    inits = [Attempt(functools.partial(Store.initialize, s)) for s in nodes]
    for init in inits:
        init.start()
    results = [init.outcome() for init in inits]
    monkeypatch.undo()
    try:
        assert sorted(r.created for _, r in results) == [False, True]
        assert results[0][1].admin == results[1][1].admin
        one, two = (s for s, _ in results)
        assert one.db.one("SELECT count(*) FROM users WHERE is_admin = 1")[0] == 1
        assert one.db.one("SELECT count(*) FROM keyring")[0] == 1
        one.secrets.create(OWNER, "FROM_ONE", "1")
        two.secrets.create(OWNER, "FROM_TWO", "2")
        assert two.secrets.reveal(OWNER, "FROM_ONE").reveal() == "1"
        assert one.secrets.reveal(OWNER, "FROM_TWO").reveal() == "2"
        assert one.changes.verify().ok
    finally:
        for opened, _ in results:
            opened.close()


# 10. claimers ----------------------------------------------------------------------------


def claimer(node: str, db: Any, settings: Settings) -> EventStore:
    return event_store(
        db,
        max_pending=settings.queue_max_pending,
        max_pending_per_owner=settings.queue_max_pending_per_owner,
        max_attempts=settings.delivery_max_attempts,
        node=node,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_10_four_claimers_never_hold_one_delivery_at_once_and_finish_all(store):
    owners, each = 4, 500
    for n in range(owners):
        store.events.add_event(
            f"user:o{n}", "load", None, "test", 0, [("function", f"f{i}") for i in range(each)], check_capacity=False
        )
    running: set[int] = set()
    claims: collections.Counter[int] = collections.Counter()
    finished_by: dict[int, str] = {}
    guard = threading.Lock()
    start = threading.Barrier(4, timeout=30)

    def work(node: str) -> None:
        queue = claimer(node, store.db, store.settings)
        start.wait()
        while True:
            taken = queue.claim(NOW, T1, limit=3)
            if not taken:
                return
            with guard:
                for d in taken:
                    assert d.id not in running, f"delivery {d.id} claimed while another claimer ran it"
                    running.add(d.id)
                    claims[d.id] += 1
            for d in taken:
                queue.finish(d.id, token=d.token)
                with guard:
                    running.discard(d.id)
                    finished_by[d.id] = node

    workers = [Attempt(functools.partial(work, f"node-{n}")) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.outcome()
    assert len(claims) == owners * each and set(claims.values()) == {1}
    assert store.events.counts() == {"done": owners * each}
    by_node = dict(store.db.all("SELECT claimed_by, count(*) FROM deliveries GROUP BY claimed_by"))
    assert by_node == dict(collections.Counter(finished_by.values()))


# 11. a stale lease ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_11_a_finish_with_a_stale_lease_token_is_lease_lost_and_leaves_nothing(store):
    """Node A's lease ran out (cut off, stalled) and node B took the delivery over: A's run
    transaction -- its run record, the delivery's finish -- must leave nothing behind.
    On PostgreSQL B takes it while A's run transaction is open; on SQLite (one writer)
    before A's transaction begins."""
    fid = deploy(store, "fn").id
    store.events.add_event(OWNER, "ping", None, "test", 0, [("function", fid)])
    node_a, node_b = claimer("node-a", store.db, store.settings), claimer("node-b", store.db, store.settings)
    [a] = node_a.claim(T0, NOW)  # A's lease ends at NOW

    def take_over() -> Any:
        [b] = node_b.claim(T1, "2030-01-01T01:00:00.000000Z")  # at T1 A's lease has run out
        return b

    takeover = Attempt(take_over)
    if store.db.dialect == "sqlite":
        takeover.run()  # here, before A's transaction: it would wait for A's write lock
    with pytest.raises(LeaseLost, match=f"delivery {a.id} was taken over"), store.transaction():
        store.functions.add_run(run_record(fid, "run-a"), owner=OWNER, trigger_input={"by": "a"})
        if store.db.dialect == "postgresql":
            takeover.start()  # while A's transaction is open: it holds no lock on the delivery
        assert (takeover.outcome().id, takeover.outcome().token) == (a.id, a.token + 1)
        node_a.finish(a.id, run_id="run-a", token=a.token)
    b = takeover.outcome()
    assert store.db.one("SELECT count(*) FROM runs")[0] == 0  # A's record went with its transaction
    row = store.db.one("SELECT status, claimed_by, lease_token FROM deliveries WHERE id = ?", (a.id,))
    assert tuple(row) == ("running", "node-b", a.token + 1)
    assert not node_a.renew(a.id, T1, token=a.token)
    assert node_a.heartbeat([(a.id, a.token)], T1) == {a.id}
    with store.transaction():
        store.functions.add_run(run_record(fid, "run-b"), owner=OWNER, trigger_input={"by": "b"})
        node_b.finish(b.id, run_id="run-b", token=b.token)
    assert [tuple(r) for r in store.db.all("SELECT id, delivery_id FROM runs")] == [("run-b", a.id)]
    assert tuple(store.db.one("SELECT status, run_id FROM deliveries WHERE id = ?", (a.id,))) == ("done", "run-b")
