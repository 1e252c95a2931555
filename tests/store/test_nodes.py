"""Several nodes on one database: each a Store of its own (its own connections, its own key
ring in memory), as `logic serve` processes on different machines are. What one node does
to the keys, the others follow; claims name their node; a cron tick is enqueued once."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr

from store import Settings, Store
from store.errors import MasterKeyError
from store.secrets import Access

OWNER = "user:alice"


@pytest.fixture
def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def nodes(settings: Settings, tmp_path, master_key: str):
    """Two nodes sharing the database and LOGIC_MASTER_KEY, each with its own home folder."""
    key = SecretStr(master_key)
    first = settings.model_copy(update={"home": tmp_path / "a", "master_key": key, "node_id": "node-a"})
    second = settings.model_copy(update={"home": tmp_path / "b", "master_key": key, "node_id": "node-b"})
    if settings.database_url is None:  # one SQLite file: both homes point at it
        second = second.model_copy(update={"home": first.home})
    a, _ = Store.initialize(first)
    b = Store.open(second)
    yield a, b
    a.close()
    b.close()


def test_a_data_key_rotation_on_one_node_is_followed_by_the_other(nodes):
    a, b = nodes
    a.secrets.create(OWNER, "BEFORE", "value-sealed-before-rotation")
    assert b.secrets.reveal(OWNER, "BEFORE").reveal() == "value-sealed-before-rotation"
    old_key = b.ring.active_id
    new_key, _ = a.rotate_data_key()
    # b still holds the dropped key in memory; its next seal catches up first (refresh),
    # so what it writes now is readable by a after the rotation, and by b after a restart.
    b.secrets.create(OWNER, "AFTER", "value-sealed-on-b-after-rotation")
    assert b.ring.active_id == new_key != old_key
    assert a.secrets.reveal(OWNER, "AFTER").reveal() == "value-sealed-on-b-after-rotation"
    # a value a re-encrypted under the new key: b reloads on the unknown key id
    assert b.secrets.reveal(OWNER, "BEFORE").reveal() == "value-sealed-before-rotation"
    rows = a.db.all("SELECT DISTINCT CAST(ciphertext AS BLOB) FROM secrets")
    assert len(rows) == 2


def test_a_run_input_sealed_by_a_node_behind_a_rotation_still_opens(nodes):
    """Threat: a node that has not heard of a rotation seals a run's input under the key the
    rotation dropped; that input (needed for replay) would never open again."""
    a, b = nodes
    fn = b.functions.deploy(OWNER, "f", {"name": "f"}, "def run(ctx):\n    return 1\n", [], [])
    a.rotate_data_key()
    record = {"id": "run-1", "function_id": fn.id, "function_version": 1, "status": "success", "started_at": "t"}
    with b.transaction():
        b.functions.add_run(record, owner=OWNER, trigger_input={"type": "manual", "data": "x"})
    assert a.functions.run_input("run-1") == {"type": "manual", "data": "x"}


def test_a_master_key_rotation_keeps_other_nodes_running_and_refuses_the_old_key_at_restart(nodes, settings):
    a, b = nodes
    a.secrets.create(OWNER, "KEPT", "value-kept-across-master-rotation")
    where = a.rotate_master_key()  # LOGIC_MASTER_KEY is set: the new key is left for the operator
    new_key = (a.settings.home / "master.key.new").read_text().strip()
    assert where.endswith("master.key.new")
    # b's data keys are unwrapped in memory: it carries on until its operator restarts it...
    assert b.secrets.reveal(OWNER, "KEPT").reveal() == "value-kept-across-master-rotation"
    b.secrets.create(OWNER, "STILL", "value-written-by-b-after-master-rotation")
    # ... with the new LOGIC_MASTER_KEY; with the old one it stops with a clear error (on
    # one machine, SQLite's case, it finds the new key in the shared home's master.key.new).
    if settings.database_url is None:
        Store.open(b.settings).close()
    else:
        with pytest.raises(MasterKeyError):
            Store.open(b.settings)
    restarted = Store.open(b.settings.model_copy(update={"master_key": SecretStr(new_key)}))
    try:
        assert restarted.secrets.reveal(OWNER, "STILL").reveal() == "value-written-by-b-after-master-rotation"
    finally:
        restarted.close()


def with_keys(node: Store, key: str, next_key: str | None = None) -> Settings:
    """The node's settings with LOGIC_MASTER_KEY (and LOGIC_MASTER_KEY_NEXT) set so."""
    return node.settings.model_copy(
        update={"master_key": SecretStr(key), "master_key_next": SecretStr(next_key) if next_key else None}
    )


def test_a_master_key_rotation_in_two_phases_never_leaves_a_node_without_a_key_that_opens(nodes, master_key):
    """1. Every node gets LOGIC_MASTER_KEY_NEXT beside the key in use (a rolling restart);
    2. one node rotates: the ring is re-wrapped under the next key, nothing written to a file;
    3. every node, in any order, makes it LOGIC_MASTER_KEY. At every step each node, running
    or restarted, opens the ring and reads and writes every secret."""
    a, b = nodes
    a.secrets.create(OWNER, "KEPT", "value-kept-across-two-phases")
    new_key = base64.b64encode(os.urandom(32)).decode()
    # 1. a rolling restart with both keys (the ring is still under the old one)
    a2, b2 = Store.open(with_keys(a, master_key, new_key)), Store.open(with_keys(b, master_key, new_key))
    a.close()
    b.close()
    try:
        assert a2.key_source == "LOGIC_MASTER_KEY"
        # 2. one node rotates
        assert a2.rotate_master_key() == "LOGIC_MASTER_KEY_NEXT"
        assert not (a2.settings.home / "master.key.new").exists()  # the operator has the key already
        with pytest.raises(MasterKeyError, match="wrapped by LOGIC_MASTER_KEY_NEXT already"):
            b2.rotate_master_key()  # a second rotation (on another node) changes nothing
        # the other node, running: writes, then follows a data-key rotation made after it
        b2.secrets.create(OWNER, "BY_B", "written-by-b-after-the-re-wrap")
        a2.rotate_data_key()
        assert b2.secrets.reveal(OWNER, "KEPT").reveal() == "value-kept-across-two-phases"
        # 3. restarts in any order: still with both keys, with the new key alone; the old
        # key alone is refused, as it must be
        for keys in [(master_key, new_key), (new_key, None), (new_key, master_key)]:
            node = Store.open(with_keys(b2, *keys))
            try:
                assert node.secrets.reveal(OWNER, "BY_B").reveal() == "written-by-b-after-the-re-wrap"
                assert node.secrets.reveal(OWNER, "KEPT").reveal() == "value-kept-across-two-phases"
            finally:
                node.close()
        with pytest.raises(MasterKeyError, match="does not match"):
            Store.open(with_keys(b2, master_key))
    finally:
        a2.close()
        b2.close()


def test_a_next_master_key_that_is_not_a_key_is_refused_without_quoting_it(nodes, master_key):
    a, _ = nodes
    with pytest.raises(MasterKeyError, match="LOGIC_MASTER_KEY_NEXT is not valid base64") as refused:
        Store.open(with_keys(a, master_key, "not-a-key!!"))
    assert "not-a-key" not in str(refused.value)


def test_claims_name_their_node_and_a_lease_taken_over_cannot_finish(nodes):
    a, b = nodes
    a.events.add_event(OWNER, "e", None, "test", 0, [("function", "f1")])
    first = a.events.claim("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z")
    row = a.db.one("SELECT claimed_by, lease_token FROM deliveries WHERE id = ?", (first[0].id,))
    assert tuple(row) == ("node-a", first[0].token)
    # a stalls past its lease; b takes the delivery over
    again = b.events.claim("2026-01-01T00:00:05.000000Z", "2026-01-01T00:00:30.000000Z")
    assert [d.id for d in again] == [first[0].id] and again[0].token == first[0].token + 1
    assert a.events.heartbeat([(first[0].id, first[0].token)], "2026-01-01T00:01:00.000000Z") == {first[0].id}
    from store.errors import LeaseLost

    with pytest.raises(LeaseLost), a.transaction():
        a.events.finish(first[0].id, token=first[0].token)
    b.events.finish(again[0].id, token=again[0].token)
    assert a.db.one("SELECT status FROM deliveries WHERE id = ?", (first[0].id,))[0] == "done"


def test_two_schedulers_enqueue_a_tick_once(nodes):
    a, b = nodes
    assert a.events.add_scheduled(OWNER, "fn-1", "2026-01-01T00:01:00.000000Z", "* * * * *")
    assert not b.events.add_scheduled(OWNER, "fn-1", "2026-01-01T00:01:00.000000Z", "* * * * *")
    assert a.db.one("SELECT count(*) FROM deliveries WHERE scheduled_at IS NOT NULL")[0] == 1


def test_reads_audited_on_two_nodes_give_the_secret_its_last_access(nodes):
    a, b = nodes
    a.secrets.create(OWNER, "SHARED", "value-read-by-both-nodes")
    for store, at in ((a, "2030-01-01T00:00:01.000000Z"), (b, "2030-01-01T00:00:02.000000Z")):
        with store.transaction():
            store.secrets.record_access([Access(OWNER, "SHARED", "logic_function", "f", "f", "r", at)])
    assert a.secrets.info(OWNER, "SHARED").last_accessed_at == "2030-01-01T00:00:02.000000Z"
    a.secrets.prune_audit("2031-01-01T00:00:00.000000Z")  # folded into the row first
    assert b.secrets.info(OWNER, "SHARED").last_accessed_at == "2030-01-01T00:00:02.000000Z"


def test_owners_take_turns_across_nodes_by_the_whole_clusters_runs(nodes):
    """Threat: one tenant's flood starving another's work because each node only counts its
    own runs: turns follow what runs on every node, fewest first."""
    a, b = nodes
    for n in range(20):
        a.events.add_event("user:flood", f"f{n}", None, "test", 0, [("function", "fa")])
    for n in range(2):
        a.events.add_event("user:quiet", f"q{n}", None, "test", 0, [("function", "fb")])
    now, later = "2026-01-01T00:00:00.000000Z", "2026-01-01T01:00:00.000000Z"
    first = a.events.claim(now, later, per_owner=5)
    second = b.events.claim(now, later, per_owner=5)  # b runs nothing yet, but a runs a flood one
    third = b.events.claim(now, later, per_owner=5)
    assert [d.owner for d in (*first, *second, *third)] == ["user:flood", "user:quiet", "user:flood"]


def test_the_cap_of_runs_in_flight_is_per_node(nodes):
    a, b = nodes
    for n in range(4):
        a.events.add_event("user:flood", f"f{n}", None, "test", 0, [("function", "fa")])
    now, later = "2026-01-01T00:00:00.000000Z", "2026-01-01T01:00:00.000000Z"
    assert len(a.events.claim(now, later, per_owner=1)) == 1
    capped = a.events.claim(now, later, per_owner=1)
    assert capped == [] and capped.waiting  # a is at its cap for this owner
    other = b.events.claim(now, later, per_owner=1)
    if a.db.dialect == "postgresql":  # the cap is "half of this node's workers": b has its own
        assert [d.owner for d in other] == ["user:flood"]
    else:  # processes on one SQLite file share one machine's workers: one cap for all of them
        assert other == [] and other.waiting


def test_a_claim_that_caps_an_owner_says_more_of_its_work_waits(nodes):
    """A thread that took an owner's last free slot must hear that the owner's other work
    waits for it (it claims again right after its run), not sleep a poll period."""
    a, _ = nodes
    for n in range(3):
        a.events.add_event("user:busy", f"b{n}", None, "test", 0, [("function", "fa")])
    claimed = a.events.claim("2026-01-01T00:00:00.000000Z", "2026-01-01T01:00:00.000000Z", per_owner=1)
    assert len(claimed) == 1 and claimed.waiting and not claimed.more
