"""Attacks on the change audit's chain, made as an intruder holding the database file would
make them: plain SQL on the real SQLite file (the append-only trigger dropped first, as they
would), never through our code. `verify` must name the first bad row by id every time, and
say what the chain cannot prove (a whole-file rollback) unless a kept head anchors it.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from store import Store
from store.changes import GENESIS_MAC

ROWS = 7  # the init row (id 1) and six more


def record(store: Store, n: int, at: str = "2026-06-01T00:00:00.000000Z") -> None:
    store.changes.record(
        at=at,
        actor="alice",
        via="token:3",
        owner="user:alice",
        action="secret.update",
        target_kind="secret",
        target=f"KEY_{n}",
        details={"version": n},
    )


@pytest.fixture
def chain(store: Store) -> Store:
    for n in range(2, ROWS + 1):
        record(store, n)
    assert store.changes.verify().ok
    return store


def attack(store: Store, *statements: str, params: tuple = ()) -> None:
    """Run SQL on the database file from another connection, as an intruder would."""
    conn = sqlite3.connect(store.settings.db_path)
    try:
        conn.execute("DROP TRIGGER IF EXISTS changes_append_only")
        for sql in statements:
            conn.execute(sql, params if "?" in sql else ())
        conn.commit()
    finally:
        conn.close()


def broken_at(store: Store, first_bad_id: int | None, words: str) -> None:
    result = store.changes.verify()
    assert not result.ok, result
    assert result.first_bad_id == first_bad_id, result
    assert words in (result.problem or ""), result.problem


def test_an_untouched_chain_verifies_and_names_its_head(chain):
    result = chain.changes.verify()
    assert (result.ok, result.rows, result.head_id, result.problem) == (True, ROWS, ROWS, None)
    newest = chain.db.one("SELECT mac FROM changes WHERE id = ?", (ROWS,))[0]
    assert result.head_mac == newest


@pytest.mark.parametrize(
    "column, value",
    [
        ("at", "2020-01-01T00:00:00.000000Z"),
        ("actor", "mallory"),
        ("via", "cli"),
        ("owner", "user:mallory"),
        ("owner", None),
        ("action", "secret.create"),
        ("target_kind", "function"),
        ("target", "OTHER"),
        ("details", '{"version":99}'),
        ("details", '{"version": 4}'),  # the same JSON, spelled differently: still an edit
        ("mac", "f" * 64),
    ],
)
def test_an_edited_field_names_its_row(chain, column, value):
    attack(chain, f"UPDATE changes SET {column} = ? WHERE id = 4", params=(value,))
    broken_at(chain, 4, "row 4 was edited")


def test_an_edited_row_with_a_mac_recomputed_without_the_key_fails(chain):
    # The intruder knows the format but not the key: any key of their choosing is wrong.
    import hashlib
    import hmac

    row = chain.db.one("SELECT * FROM changes WHERE id = 4")
    prev = chain.db.one("SELECT mac FROM changes WHERE id = 3")[0]
    parts = ["change", 4, row["at"], "mallory", row["via"], row["owner"], row["action"]]
    parts += [row["target_kind"], row["target"], row["details"], prev]
    forged = hmac.new(b"\0" * 32, json.dumps(parts, separators=(",", ":")).encode(), hashlib.sha256).hexdigest()
    attack(chain, "UPDATE changes SET actor = 'mallory', mac = ? WHERE id = 4", params=(forged,))
    broken_at(chain, 4, "row 4 was edited")


def test_a_removed_row_names_the_gap(chain):
    attack(chain, "DELETE FROM changes WHERE id = 4")
    broken_at(chain, 4, "row 4 was removed before row 5")


def test_removed_rows_in_a_row(chain):
    attack(chain, "DELETE FROM changes WHERE id IN (3, 4, 5)")
    broken_at(chain, 3, "rows 3-5 were removed before row 6")


def test_the_first_row_removed(chain):
    attack(chain, "DELETE FROM changes WHERE id = 1")
    broken_at(chain, 1, "row 1 was removed before row 2 (pruned without a checkpoint?)")


def test_rows_cut_off_the_end_are_found_by_the_head(chain):
    attack(chain, f"DELETE FROM changes WHERE id >= {ROWS - 1}")
    broken_at(chain, ROWS - 1, f"rows {ROWS - 1}-{ROWS} were removed from the end of the chain")


def test_a_later_write_does_not_hide_a_cut_at_the_end(chain):
    attack(chain, f"DELETE FROM changes WHERE id = {ROWS}")
    record(chain, 100)  # links to the head it trusts, not to the newest row left
    broken_at(chain, ROWS, f"row {ROWS} was removed before row {ROWS + 1}")


def test_every_row_removed_is_found(chain):
    attack(chain, "DELETE FROM changes")
    broken_at(chain, 1, f"rows 1-{ROWS} were removed from the end of the chain")


def test_the_head_removed_too_is_found(chain):
    attack(chain, f"DELETE FROM changes WHERE id = {ROWS}", "DELETE FROM change_head")
    broken_at(chain, None, "the head record is missing")


def test_a_head_rewound_to_an_earlier_row_without_the_key_fails(chain):
    mac = chain.db.one("SELECT mac FROM changes WHERE id = 5")[0]
    attack(
        chain,
        "DELETE FROM changes WHERE id > 5",
        "UPDATE change_head SET last_id = 5, last_mac = ?",
        params=(mac,),
    )
    broken_at(chain, None, "the head record is not genuine")


def test_swapped_contents_are_found_at_the_first_of_the_two(chain):
    columns = "at, actor, via, owner, action, target_kind, target, details, mac"
    attack(
        chain,
        f"CREATE TEMP TABLE keep AS SELECT id, {columns} FROM changes WHERE id IN (3, 5)",
        "UPDATE changes SET (at, actor, via, owner, action, target_kind, target, details, mac) = "
        f"(SELECT {columns} FROM keep WHERE keep.id = 8 - changes.id) WHERE id IN (3, 5)",
    )
    broken_at(chain, 3, "row 3 was edited, moved or inserted")


def test_swapped_ids_are_found(chain):
    attack(
        chain,
        "UPDATE changes SET id = 1000 WHERE id = 3",
        "UPDATE changes SET id = 3 WHERE id = 5",
        "UPDATE changes SET id = 5 WHERE id = 1000",
    )
    broken_at(chain, 3, "row 3 was edited, moved or inserted")


def test_a_row_appended_with_a_copied_mac_is_found(chain):
    attack(
        chain,
        f"INSERT INTO changes (id, at, actor, via, owner, action, target_kind, target, details, mac) "
        f"SELECT {ROWS + 1}, at, actor, via, owner, action, target_kind, 'FORGED', details, mac "
        f"FROM changes WHERE id = {ROWS}",
    )
    broken_at(chain, ROWS + 1, f"row {ROWS + 1} was edited, moved or inserted")


def test_a_row_inserted_in_the_middle_is_found(chain):
    attack(
        chain,
        "UPDATE changes SET id = id + 100 WHERE id >= 4",
        "UPDATE changes SET id = id - 99 WHERE id >= 104",
        "INSERT INTO changes (id, at, actor, via, owner, action, target_kind, target, details, mac) "
        "SELECT 4, at, 'mallory', via, owner, action, target_kind, 'FORGED', details, mac FROM changes WHERE id = 3",
    )
    broken_at(chain, 4, "row 4 was edited, moved or inserted")


def test_a_row_replayed_from_another_chain_is_found(chain, tmp_path):
    """Two installations never share a key: a genuine row of one is garbage in the other."""
    from store import Settings

    other, _ = Store.initialize(Settings(home=tmp_path / "other-home"))
    try:
        record(other, 2)
        stolen = other.db.one("SELECT * FROM changes WHERE id = 2")
    finally:
        other.close()
    attack(
        chain,
        "DELETE FROM changes WHERE id = 2",
        "INSERT INTO changes (id, at, actor, via, owner, action, target_kind, target, details, mac) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params=tuple(stolen),
    )
    broken_at(chain, 2, "row 2 was edited")


def test_a_replaced_audit_key_is_named(chain):
    attack(chain, "UPDATE change_audit_key SET wrapped = randomblob(60)")
    chain.close()
    reopened = Store.open(chain.settings)  # a fresh process: no key cached
    try:
        broken_at(reopened, None, "the change audit's key does not unwrap under the master key")
    finally:
        reopened.close()


def test_a_removed_audit_key_is_named(chain):
    attack(chain, "DELETE FROM change_audit_key")
    chain.close()
    reopened = Store.open(chain.settings)
    try:
        broken_at(reopened, None, "the change audit's key is missing")
    finally:
        reopened.close()


# what verify cannot prove alone: the whole file rolled back to an older copy -------------


def test_a_rolled_back_database_passes_alone_but_not_against_a_kept_head(chain):
    snapshot = sqlite3.connect(":memory:")
    live = sqlite3.connect(chain.settings.db_path)
    live.backup(snapshot)  # the intruder's earlier copy, at head ROWS
    record(chain, 50)
    record(chain, 51)
    kept = chain.changes.verify()
    assert kept.ok and kept.head_id == ROWS + 2
    snapshot.backup(live)  # ... put back later: two changes vanish with their rows and head
    live.close()
    snapshot.close()
    rolled_back = chain.changes.verify()
    assert rolled_back.ok and rolled_back.head_id == ROWS  # the documented limit
    anchored = chain.changes.verify(anchor=(kept.head_id, kept.head_mac))
    assert not anchored.ok and anchored.first_bad_id == ROWS + 1
    assert f"the chain ends at row {ROWS}, before the kept head (row {ROWS + 2})" in anchored.problem


def test_a_kept_head_that_no_longer_matches_fails(chain):
    kept = chain.changes.verify()
    assert chain.changes.verify(anchor=(kept.head_id, kept.head_mac)).anchored is True
    assert chain.changes.verify(anchor=(3, kept.head_mac)).first_bad_id == 3


# pruning keeps the chain verifiable -------------------------------------------------------

OLD, NEW = "2025-01-01T00:00:00.000000Z", "2026-06-01T00:00:00.000000Z"


@pytest.fixture
def old_chain(tmp_path):
    """A chain whose first five rows are old and last three recent (written at those times)."""
    from store import Settings

    settings = Settings(home=tmp_path / "aged-home")
    store, _ = Store.initialize(settings)
    # Start a chain of our own: an intruder-free way to control the first row's time.
    attack(store, "DELETE FROM changes", "DELETE FROM change_head")
    for n in range(1, 6):
        record(store, n, at=OLD)
    for n in range(6, 9):
        record(store, n, at=NEW)
    assert store.changes.verify().ok
    yield store
    store.close()


def test_pruning_leaves_a_checkpoint_and_the_rest_verifies(old_chain):
    assert old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW) == 5
    ids = [r[0] for r in old_chain.db.all("SELECT id FROM changes ORDER BY id")]
    assert ids == [6, 7, 8]
    result = old_chain.changes.verify()
    assert (result.ok, result.rows, result.checkpoint_id, result.head_id) == (True, 3, 5, 8)
    assert old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW) == 0  # nothing old is left
    record(old_chain, 9)
    assert old_chain.changes.verify().ok


def test_pruning_everything_then_writing_again(old_chain):
    assert old_chain.changes.prune("2027-01-01T00:00:00.000000Z", now=NEW) == 8
    empty = old_chain.changes.verify()
    assert (empty.ok, empty.rows, empty.checkpoint_id, empty.head_id) == (True, 0, 8, 8)
    record(old_chain, 9)
    after = old_chain.changes.verify()
    assert (after.ok, after.rows, after.head_id) == (True, 1, 9)
    assert old_chain.db.one("SELECT id FROM changes")[0] == 9


def test_pruning_in_batches_keeps_one_checkpoint_per_batch(old_chain):
    assert old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW, limit=2) == 2
    assert old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW, limit=2) == 2
    assert old_chain.changes.verify().checkpoint_id == 4
    assert old_chain.db.one("SELECT COUNT(*) FROM change_checkpoints")[0] == 2


def test_pruning_stops_at_the_first_recent_row(old_chain):
    """Retention drops a prefix only: an old row behind a recent one stays (no gap)."""
    attack(old_chain, "DELETE FROM changes WHERE id > 0")  # start again
    attack(old_chain, "DELETE FROM change_head")
    record(old_chain, 1, at=OLD)
    record(old_chain, 2, at=NEW)
    record(old_chain, 3, at=OLD)  # a clock that went back
    assert old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW) == 1
    assert old_chain.changes.verify().ok


@pytest.mark.parametrize(
    "column, value",
    [("last_id", 4), ("last_mac", "0" * 64), ("rows_pruned", 1), ("at", OLD), ("mac", "a" * 64)],
)
def test_a_forged_checkpoint_fails(old_chain, column, value):
    old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW)
    attack(old_chain, f"UPDATE change_checkpoints SET {column} = ?", params=(value,))
    result = old_chain.changes.verify()
    assert not result.ok and "checkpoint 1" in result.problem and "is not genuine" in result.problem


def test_a_checkpoint_invented_to_cover_removed_rows_fails(old_chain):
    mac = old_chain.db.one("SELECT mac FROM changes WHERE id = 3")[0]
    attack(
        old_chain,
        "DELETE FROM changes WHERE id <= 3",
        "INSERT INTO change_checkpoints (at, last_id, last_mac, rows_pruned, mac) VALUES (?, 3, ?, 3, ?)",
        params=(NEW, mac, "b" * 64),
    )
    broken_at(old_chain, 3, "checkpoint 1 (rows up to 3 pruned) is not genuine")


def test_a_deleted_checkpoint_shows_the_pruned_rows_as_removed(old_chain):
    old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW)
    attack(old_chain, "DELETE FROM change_checkpoints")
    broken_at(old_chain, 1, "rows 1-5 were removed before row 6 (pruned without a checkpoint?)")


def test_a_newest_checkpoint_deleted_falls_back_and_finds_the_gap(old_chain):
    old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW, limit=2)
    old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW, limit=2)
    attack(old_chain, "DELETE FROM change_checkpoints WHERE last_id = 4")
    broken_at(old_chain, 3, "rows 3-4 were removed before row 5")


def test_a_row_put_back_before_the_checkpoint_fails(old_chain):
    old = old_chain.db.one("SELECT * FROM changes WHERE id = 2")
    old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW)
    attack(
        old_chain,
        "INSERT INTO changes (id, at, actor, via, owner, action, target_kind, target, details, mac) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params=tuple(old),
    )
    broken_at(old_chain, 2, "row 2 lies before the checkpoint after row 5")


def test_pruning_never_erases_the_evidence_of_an_edit(old_chain):
    """An edited old row must not vanish behind a checkpoint that vouches for what follows."""
    attack(old_chain, "UPDATE changes SET actor = 'mallory' WHERE id = 2")
    assert old_chain.changes.prune("2026-01-01T00:00:00.000000Z", now=NEW) == 0
    assert old_chain.db.one("SELECT COUNT(*) FROM changes")[0] == 8
    assert old_chain.db.one("SELECT COUNT(*) FROM change_checkpoints")[0] == 0
    broken_at(old_chain, 2, "row 2 was edited")


def test_genesis_is_where_an_unpruned_chain_starts(old_chain):
    row = old_chain.db.one("SELECT * FROM changes WHERE id = 1")
    assert row["mac"] != GENESIS_MAC
    attack(old_chain, "UPDATE changes SET id = 0 WHERE id = 1")
    broken_at(old_chain, 0, "row 0 lies before the start of the chain: it was inserted")
