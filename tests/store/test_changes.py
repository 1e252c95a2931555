"""The change audit's repository (store/changes.py): rows that commit with their change or not
at all, listings by owner and target, and a chain whose key survives every key rotation."""

from __future__ import annotations

import threading

import pytest

from store import Store
from store.backend import INTEGRITY_ERRORS
from store.masterkey import encode, generate

AT = "2026-06-01T00:00:00.000000Z"


def record(store: Store, target: str = "API_KEY", owner: str | None = "user:alice", **fields):
    values = {
        "at": AT,
        "actor": "alice",
        "via": "cli",
        "owner": owner,
        "action": "secret.create",
        "target_kind": "secret",
        "target": target,
        "details": {},
        **fields,
    }
    return store.changes.record(**values)


def test_init_starts_the_chain(store, admin):
    (first,) = store.changes.list(admin.owner, machine_wide=True)
    assert (first.id, first.actor, first.via, first.owner, first.action) == (1, admin.name, "cli", None, "init")
    assert store.changes.verify().ok


def test_a_row_commits_with_its_change_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.transaction():
        record(store, "ROLLED_BACK")
        raise RuntimeError("the change itself failed")
    assert store.changes.list("user:alice") == []
    second = record(store, "KEPT")
    assert second.id == 2  # no gap where the rolled-back row was
    assert store.changes.verify().ok and store.changes.verify().rows == 2


def test_listing_is_newest_first_by_owner_and_target(store):
    record(store, "A")
    record(store, "B")
    record(store, "A", action="secret.update")
    record(store, "reader", target_kind="function", action="function.deploy")
    record(store, "A", owner="user:bob")
    record(store, "data", owner=None, target_kind="key", action="keys.rotate")
    alice = store.changes.list("user:alice")
    assert [(c.target, c.action) for c in alice] == [
        ("reader", "function.deploy"),
        ("A", "secret.update"),
        ("B", "secret.create"),
        ("A", "secret.create"),
    ]
    assert [c.action for c in store.changes.list("user:alice", target_kind="secret", target="A")] == [
        "secret.update",
        "secret.create",
    ]
    assert [c.target for c in store.changes.list("user:bob")] == ["A"]
    assert [c.action for c in store.changes.list("user:alice", machine_wide=True)][:1] == ["keys.rotate"]
    page = store.changes.list("user:alice", limit=2)
    rest = store.changes.list("user:alice", limit=2, before_id=page[-1].id)
    assert [c.id for c in page + rest] == [c.id for c in alice]


def test_details_take_names_ids_and_numbers_only(store):
    from store.sensitive import Sensitive

    for bad in ({"value": Sensitive("x")}, {"nested": {"a": 1}}, {"raw": b"bytes"}, {"names": [object()]}):
        with pytest.raises(TypeError, match="only names, ids, numbers and flags are recorded"):
            record(store, details=bad)
    kept = record(store, details={"id": "f-1", "version": 3, "admin": False, "names": ["A", "B"], "none": None})
    assert kept.details == {"id": "f-1", "version": 3, "admin": False, "names": ["A", "B"], "none": None}
    assert store.changes.verify().ok


def test_our_own_code_cannot_update_a_row(store):
    with pytest.raises(INTEGRITY_ERRORS, match="append-only"), store.transaction():
        store.db.execute("UPDATE changes SET actor = 'x'")


def _reopen(store: Store, **env) -> Store:
    store.close()
    return Store.open(store.settings.model_copy(update=env))


def test_the_chain_verifies_across_data_and_master_key_rotations(store):
    record(store, "BEFORE")
    store.rotate_data_key()
    record(store, "AFTER_DATA")
    wrapped = store.db.one("SELECT wrapped FROM change_audit_key")[0]
    store.rotate_master_key()
    assert store.db.one("SELECT wrapped FROM change_audit_key")[0] != wrapped  # re-wrapped, same key
    record(store, "AFTER_MASTER")
    assert store.changes.verify().ok
    reopened = _reopen(store)  # a fresh process: the key comes from the re-wrapped row
    try:
        assert reopened.changes.verify().rows == 4
        record(reopened, "REOPENED")
        assert reopened.changes.verify().ok
    finally:
        reopened.close()


def test_the_chain_verifies_after_a_master_rotation_under_logic_master_key(settings):
    from pydantic import SecretStr

    key = encode(generate())
    env_settings = settings.model_copy(update={"master_key": SecretStr(key)})
    store, _ = Store.initialize(env_settings)
    try:
        record(store, "BEFORE")
        pending = store.rotate_master_key()
        new_key = (settings.home / "master.key.new").read_text().strip()
        assert pending.endswith("master.key.new")
    finally:
        store.close()
    (settings.home / "master.key.new").unlink()  # the operator moved it into LOGIC_MASTER_KEY
    reopened = Store.open(settings.model_copy(update={"master_key": SecretStr(new_key)}))
    try:
        assert reopened.changes.verify().ok and reopened.changes.verify().rows == 2
    finally:
        reopened.close()


def test_a_server_that_missed_a_master_rotation_still_verifies_and_records(store):
    other = Store.open(store.settings)  # another process rotates the master key
    try:
        other.rotate_master_key()
    finally:
        other.close()
    store.ring._audit_key = None  # as a process that had not read it yet
    record(store, "LATER")
    assert store.changes.verify().ok


def test_a_database_without_an_audit_key_makes_one_on_the_first_change(store):
    """A home upgraded from before the change audit: no key, no rows yet."""
    with store.transaction():
        on = " ON changes" if store.db.dialect == "postgresql" else ""
        store.db.execute(f"DROP TRIGGER changes_append_only{on}")
        for table in ("changes", "change_head", "change_audit_key"):
            store.db.execute(f"DELETE FROM {table}")
    store.ring._audit_key = None
    assert store.changes.verify().ok and store.changes.verify().rows == 0
    with pytest.raises(RuntimeError), store.transaction():
        record(store, "ROLLED_BACK")  # makes a key ... that rolls back with the row
        raise RuntimeError
    assert store.db.one("SELECT COUNT(*) FROM change_audit_key")[0] == 0
    record(store, "FIRST")  # so this one must make (and keep) a key again, not reuse a lost one
    reopened = _reopen(store)
    try:
        assert reopened.changes.verify().ok and reopened.changes.verify().rows == 1
    finally:
        reopened.close()


def test_concurrent_writers_keep_one_unbroken_chain(store):
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                record(store, f"T{n}_{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = store.changes.verify()
    assert result.ok and result.rows == 81 and result.head_id == 81


def test_a_second_process_appends_to_the_same_chain(store):
    other = Store.open(store.settings)
    try:
        record(other, "FROM_OTHER")
        record(store, "FROM_HERE")
        record(other, "FROM_OTHER_AGAIN")
    finally:
        other.close()
    assert store.changes.verify().rows == 4
