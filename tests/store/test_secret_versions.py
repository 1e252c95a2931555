"""Secret versions: every update keeps the replaced value, sealed to its version number;
restore makes one current again as a new version; bad restores change nothing; a moved
version row fails to decrypt; only the newest N are kept; delete removes them all."""

from __future__ import annotations

import pytest

from store import Settings, Store
from store.errors import Conflict, DecryptionError, InvalidInput, NotFound
from store.secrets import Access

OWNER = "user:alice"


def _values(store: Store, owner: str = OWNER, name: str = "API_KEY") -> list[str]:
    """Each kept version's value, newest first, opened the way restore opens it."""
    rows = store.db.all(
        "SELECT v.version, CAST(v.ciphertext AS BLOB) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
        "WHERE s.owner = ? AND s.name = ? ORDER BY v.version DESC",
        (owner, name),
    )
    return [store.ring.unseal(r[1], owner, name, version=r[0]).reveal() for r in rows]


def _current(store: Store, name: str = "API_KEY", owner: str = OWNER) -> str:
    return store.secrets.reveal(owner, name).reveal()


@pytest.fixture
def three(store):
    """API_KEY with values one, two, three (three current, as version 3)."""
    store.secrets.create(OWNER, "API_KEY", "value-one", by="alice (cli)")
    store.secrets.update(OWNER, "API_KEY", "value-two", by="bob (token:7)")
    store.secrets.update(OWNER, "API_KEY", "value-three", by="carol (console:2)")
    return store


def test_each_update_keeps_the_replaced_value_as_a_version(three):
    listing = three.secrets.versions(OWNER, "API_KEY")
    assert [(v.number, v.current, v.created_by) for v in listing] == [
        (3, True, "carol (console:2)"),
        (2, False, "bob (token:7)"),
        (1, False, "alice (cli)"),
    ]
    info = three.secrets.info(OWNER, "API_KEY")
    assert info.version == 3 and listing[0].created_at == info.updated_at
    assert listing[2].created_at == info.created_at  # version 1 became current when it was created
    assert _values(three) == ["value-two", "value-one"]
    assert _current(three) == "value-three"


def test_a_listing_holds_no_value(three):
    listing = three.secrets.versions(OWNER, "API_KEY")
    text = repr(listing) + repr([v.to_json() for v in listing])
    assert all(value not in text for value in ("value-one", "value-two", "value-three"))
    assert set(listing[0].to_json()) == {"version", "created_at", "created_by", "current", "restored_from"}


def test_restore_makes_an_old_value_current_as_a_new_version(three, admin):
    three.secrets.set_usages(OWNER, "logic_function", "f1", "reader", ["API_KEY"])
    at = "2026-01-02T03:04:05.000000Z"
    three.secrets.record_access([Access(OWNER, "API_KEY", "logic_function", "f1", "reader", "r1", at)])
    before = three.secrets.info(OWNER, "API_KEY")

    after = three.secrets.restore(OWNER, "API_KEY", 1, by="dave (cli)")

    assert _current(three) == "value-one"  # what the next run reads
    assert after.version == 4 and after.last_accessed_at == at == before.last_accessed_at
    assert after.logic_functions == ["reader"] and after.usage_count == 1
    assert after.created_at == before.created_at and after.updated_at > before.updated_at
    listing = three.secrets.versions(OWNER, "API_KEY")
    assert [(v.number, v.current, v.restored_from, v.created_by) for v in listing] == [
        (4, True, 1, "dave (cli)"),
        (3, False, None, "carol (console:2)"),
        (2, False, None, "bob (token:7)"),
        (1, False, None, "alice (cli)"),
    ]
    assert _values(three) == ["value-three", "value-two", "value-one"]
    # the value replaced by the restore can itself be restored, and says where it came from
    three.secrets.restore(OWNER, "API_KEY", 3)
    assert _current(three) == "value-three"
    assert three.secrets.versions(OWNER, "API_KEY")[1].restored_from == 1  # version 4, restored from 1


@pytest.mark.parametrize(
    "version, error, words",
    [
        (0, InvalidInput, "whole number from 1"),
        (-2, InvalidInput, "whole number from 1"),
        (True, InvalidInput, "whole number"),
        ("1", InvalidInput, "whole number"),
        (1.0, InvalidInput, "whole number"),
        (3, Conflict, "already the current value"),
        (4, NotFound, "has no version 4 (the current one is 3); versions that can be restored: 1, 2"),
        (99, NotFound, "has no version 99"),
        (2**64, NotFound, f"has no version {2**64}"),  # no SQLite integer: refused before any SQL
    ],
)
def test_a_bad_restore_is_refused_and_changes_nothing(three, db_rows, version, error, words):
    before = db_rows()
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        three.secrets.restore(OWNER, "API_KEY", version)
    assert db_rows() == before


def test_restore_of_another_owners_secret_or_an_unknown_one_is_not_found(three, db_rows):
    three.secrets.create("user:bob", "OTHER", "bobs-value")
    three.secrets.update("user:bob", "OTHER", "bobs-second")
    before = db_rows()
    with pytest.raises(NotFound, match="secret OTHER does not exist"):
        three.secrets.restore(OWNER, "OTHER", 1)
    with pytest.raises(NotFound, match="secret MISSING does not exist"):
        three.secrets.restore(OWNER, "MISSING", 1)
    with pytest.raises(NotFound):
        three.secrets.versions(OWNER, "OTHER")
    assert db_rows() == before
    assert _current(three, "OTHER", "user:bob") == "bobs-second"


def test_a_version_row_moved_to_another_secret_fails_to_decrypt(three, db_rows):
    three.secrets.create(OWNER, "TARGET", "target-one")
    three.secrets.update(OWNER, "TARGET", "target-two")  # TARGET keeps its version 1
    with three.db.transaction() as conn:
        target = conn.execute("SELECT id FROM secrets WHERE name = 'TARGET'").fetchone()[0]
        conn.execute("DELETE FROM secret_versions WHERE secret_id = ?", (target,))
        # API_KEY's version 1 (value-one) pretends to be TARGET's version 1
        conn.execute("UPDATE secret_versions SET secret_id = ? WHERE version = 1 AND secret_id != ?", (target, target))
    before = db_rows()
    with pytest.raises(DecryptionError, match="version 1 of secret TARGET of user:alice cannot be decrypted"):
        three.secrets.restore(OWNER, "TARGET", 1)
    assert db_rows() == before and _current(three, "TARGET") == "target-two"


def test_a_version_row_moved_to_another_number_fails_to_decrypt(three, db_rows):
    with three.db.transaction() as conn:  # swap the numbers of versions 1 and 2
        conn.execute("UPDATE secret_versions SET version = -1 WHERE version = 1")
        conn.execute("UPDATE secret_versions SET version = 1 WHERE version = 2")
        conn.execute("UPDATE secret_versions SET version = 2 WHERE version = -1")
    before = db_rows()
    for number in (1, 2):
        with pytest.raises(DecryptionError, match=f"version {number} of secret API_KEY"):
            three.secrets.restore(OWNER, "API_KEY", number)
    assert db_rows() == before and _current(three) == "value-three"


def test_a_version_ciphertext_copied_over_the_current_value_fails_to_decrypt(three):
    with three.db.transaction() as conn:
        conn.execute(
            "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secret_versions WHERE version = 2) "
            "WHERE name = 'API_KEY'"
        )
    with pytest.raises(DecryptionError, match="secret API_KEY of user:alice cannot be decrypted"):
        three.secrets.reveal(OWNER, "API_KEY")


def test_an_update_over_a_corrupted_value_still_works_and_keeps_no_garbage(three):
    with three.db.transaction() as conn:
        conn.execute("UPDATE secrets SET ciphertext = ? WHERE name = 'API_KEY'", (b"\0\0",))
    three.secrets.update(OWNER, "API_KEY", "value-four")
    assert _current(three) == "value-four"
    listing = three.secrets.versions(OWNER, "API_KEY")
    assert [v.number for v in listing] == [4, 2, 1]  # the unreadable version 3 was not kept


def test_only_the_newest_versions_are_kept(settings):
    store, _ = Store.initialize(settings.model_copy(update={"secret_versions_kept": 3}))
    try:
        store.secrets.create(OWNER, "API_KEY", "v1")
        for n in range(2, 8):
            store.secrets.update(OWNER, "API_KEY", f"v{n}")
        assert [v.number for v in store.secrets.versions(OWNER, "API_KEY")] == [7, 6, 5, 4]
        assert _values(store) == ["v6", "v5", "v4"]
        with pytest.raises(NotFound, match="version 2 of secret API_KEY is no longer kept.*restored: 4, 5, 6"):
            store.secrets.restore(OWNER, "API_KEY", 2)
        store.secrets.restore(OWNER, "API_KEY", 4)  # a restore prunes too
        assert [v.number for v in store.secrets.versions(OWNER, "API_KEY")] == [8, 7, 6, 5]
        assert _current(store) == "v4"
    finally:
        store.close()


def test_zero_versions_kept_keeps_none(settings):
    store, _ = Store.initialize(settings.model_copy(update={"secret_versions_kept": 0}))
    try:
        store.secrets.create(OWNER, "API_KEY", "v1")
        store.secrets.update(OWNER, "API_KEY", "v2")
        assert [v.number for v in store.secrets.versions(OWNER, "API_KEY")] == [2]
        assert store.db.one("SELECT count(*) FROM secret_versions")[0] == 0
        with pytest.raises(NotFound, match="versions that can be restored: none"):
            store.secrets.restore(OWNER, "API_KEY", 1)
    finally:
        store.close()


def test_the_kept_count_is_a_setting(monkeypatch, logic_home):
    monkeypatch.setenv("LOGIC_SECRET_VERSIONS_KEPT", "4")
    assert Settings().secret_versions_kept == 4
    assert Settings(secret_versions_kept=0).secret_versions_kept == 0
    monkeypatch.setenv("LOGIC_SECRET_VERSIONS_KEPT", "-1")
    with pytest.raises(ValueError):
        Settings()


def test_delete_removes_every_version(three):
    if three.db.dialect == "sqlite":  # PostgreSQL always enforces foreign keys
        assert three.db.one("PRAGMA foreign_keys")[0] == 1  # what makes the CASCADE happen
    three.secrets.create(OWNER, "KEPT", "kept-one")
    three.secrets.update(OWNER, "KEPT", "kept-two")
    three.secrets.delete(OWNER, "API_KEY")
    rows = three.db.all("SELECT s.name FROM secret_versions v JOIN secrets s ON s.id = v.secret_id")
    assert [r[0] for r in rows] == ["KEPT"]
    assert three.db.one("SELECT count(*) FROM secret_versions")[0] == 1  # no orphan left behind
    # a secret created again under the name starts over, with nothing of the old one
    three.secrets.create(OWNER, "API_KEY", "fresh")
    assert [v.number for v in three.secrets.versions(OWNER, "API_KEY")] == [1]
    with pytest.raises(NotFound):
        three.secrets.restore(OWNER, "API_KEY", 2)


def test_a_secret_in_use_is_not_deleted_and_keeps_its_versions(three):
    three.secrets.set_usages(OWNER, "integration", "i1", "hook", ["API_KEY"])
    with pytest.raises(Conflict):
        three.secrets.delete(OWNER, "API_KEY")
    assert _values(three) == ["value-two", "value-one"]
