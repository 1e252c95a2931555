"""The SQLite database: pragmas, transactions, and every migration path.

The migration tests are generic: a migration appended to MIGRATIONS later is
covered without editing this file (each version gets a seeded row in every
new table, and every later version must keep it).
"""

from __future__ import annotations

import re
import sqlite3
import threading

import pytest

from store.database import Database
from store.errors import NotInitialized, SchemaTooNew, StoreError
from store.migrations import MIGRATIONS
from tests.support import BUSY_TIMEOUT_MS

LATEST = len(MIGRATIONS)


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "t.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    yield database
    database.close()


def test_pragmas_are_on(db):
    db.migrate()
    assert db.one("PRAGMA journal_mode")[0] == "wal"
    assert db.one("PRAGMA foreign_keys")[0] == 1
    assert db.one("PRAGMA busy_timeout")[0] == 10_000


def test_pragmas_hold_on_every_thread(db):
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(
            (db.one("PRAGMA foreign_keys")[0], db.one("PRAGMA busy_timeout")[0], db.one("PRAGMA journal_mode")[0])
        )
    )
    thread.start()
    thread.join()
    assert seen == [(1, 10_000, "wal")]


def test_busy_timeout_follows_settings(tmp_path):
    database = Database(tmp_path / "b.db", create=True, busy_timeout_ms=1234)
    assert database.one("PRAGMA busy_timeout")[0] == 1234
    database.close()


def test_file_is_created_private(tmp_path):
    database = Database(tmp_path / "p.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    assert (tmp_path / "p.db").stat().st_mode & 0o777 == 0o600
    database.close()


def test_missing_database_says_run_init(tmp_path):
    with pytest.raises(NotInitialized, match="run `logic init` first"):
        Database(tmp_path / "missing.db", busy_timeout_ms=BUSY_TIMEOUT_MS)
    assert not (tmp_path / "missing.db").exists()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the database at"):
        Database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_transaction_commits_and_rolls_back(db):
    db.migrate()
    with db.transaction() as conn:
        conn.execute("INSERT INTO users (name, created_at) VALUES ('a', 'now')")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO users (name, created_at) VALUES ('b', 'now')")
        with db.transaction() as inner:  # joins the outer one
            inner.execute("INSERT INTO users (name, created_at) VALUES ('c', 'now')")
        raise RuntimeError("boom")
    assert [r[0] for r in db.all("SELECT name FROM users")] == ["a"]
    assert not db.conn.in_transaction
    with db.transaction() as conn:  # the connection is usable again
        conn.execute("INSERT INTO users (name, created_at) VALUES ('d', 'now')")
    assert [r[0] for r in db.all("SELECT name FROM users ORDER BY name")] == ["a", "d"]


def test_a_failed_commit_does_not_leave_a_transaction_open(db):
    db.migrate()
    db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO child VALUES (42)")  # checked only at COMMIT
    assert not db.conn.in_transaction
    with db.transaction() as conn:
        conn.execute("INSERT INTO parent VALUES (1)")
    assert db.one("SELECT count(*) FROM child")[0] == 0


def test_writers_queue_instead_of_failing(tmp_path):
    path = tmp_path / "w.db"
    Database(path, create=True, busy_timeout_ms=BUSY_TIMEOUT_MS).migrate()
    a, b = Database(path, busy_timeout_ms=BUSY_TIMEOUT_MS), Database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    errors = []

    def write(database, name):
        try:
            for i in range(20):
                with database.transaction() as conn:
                    conn.execute("INSERT INTO users (name, created_at) VALUES (?, 'now')", (f"{name}{i}",))
        except Exception as exc:  # pragma: no cover - the failure we test against
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(a, "a")), threading.Thread(target=write, args=(b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert a.one("SELECT count(*) FROM users")[0] == 40
    a.close()
    b.close()


# migrations --------------------------------------------------------------------


def _schema(database: Database) -> dict[str, str]:
    return {
        r["name"]: re.sub(r"\s+", " ", r["sql"])
        for r in database.all("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")
    }


def _check_options(sql: str) -> dict[str, list[str]]:
    return {
        m.group(1): re.findall(r"'([^']*)'", m.group(2))
        for m in re.finditer(r"CHECK\s*\(\s*(\w+)\s+IN\s*\(([^)]*)\)\s*\)", sql)
    }


def _seed(database: Database, version: int) -> None:
    """Insert one row into every table that has none yet, with values valid for its columns."""
    tables = [
        r[0]
        for r in database.all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
    ]
    pending = list(tables)
    for _ in range(len(tables) + 1):  # parents before children
        for table in list(pending):
            fks = {r["from"]: (r["table"], r["to"]) for r in database.all(f'PRAGMA foreign_key_list("{table}")')}
            if any(database.one(f'SELECT 1 FROM "{parent}"') is None for parent, _ in fks.values() if parent != table):
                continue
            pending.remove(table)
            if database.one(f'SELECT 1 FROM "{table}"') is not None:
                continue
            sql = database.one("SELECT sql FROM sqlite_master WHERE name = ?", (table,))[0]
            checks = _check_options(sql)
            row = {}
            columns = database.all(f'PRAGMA table_info("{table}")')
            rowid_pk = sum(1 for c in columns if c["pk"]) == 1
            for col in columns:
                name, kind = col["name"], (col["type"] or "").upper()
                if name in fks:
                    parent, to = fks[name]
                    row[name] = database.one(f'SELECT "{to or "rowid"}" FROM "{parent}" LIMIT 1')[0]
                elif name in checks:
                    row[name] = checks[name][0]
                elif col["pk"] and kind == "INTEGER" and rowid_pk:
                    continue
                elif "INT" in kind:
                    row[name] = 7
                elif "BLOB" in kind:
                    row[name] = b"seed-blob"
                elif "REAL" in kind or "FLOA" in kind:
                    row[name] = 1.5
                else:
                    row[name] = f"v{version}-{table}-{name}"
            cols = ", ".join(f'"{c}"' for c in row)
            with database.transaction() as conn:
                conn.execute(
                    f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" for _ in row)})', list(row.values())
                )
    assert not pending, f"could not seed {pending}"


def _rows(database: Database) -> dict[str, list[dict]]:
    tables = [
        r[0] for r in database.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    return {t: [dict(r) for r in database.all(f'SELECT * FROM "{t}"')] for t in tables}


def test_migrations_are_numbered_from_one():
    assert LATEST >= 3
    assert all(callable(m) for m in MIGRATIONS)


def test_migrate_from_empty(tmp_path):
    database = Database(tmp_path / "e.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    assert database.schema_version == 0
    assert database.migrate() == LATEST
    assert database.schema_version == LATEST
    assert {"users", "orgs", "memberships", "tokens", "keyring", "secrets", "secret_usages", "secret_access"} <= set(
        _schema(database)
    )
    assert database.migrate() == LATEST  # idempotent
    database.close()


@pytest.mark.parametrize("start", range(LATEST + 1))
def test_migrate_from_every_earlier_version_keeps_data(tmp_path, start):
    fresh = Database(tmp_path / "fresh.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    fresh.migrate()
    database = Database(tmp_path / "old.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    kept: dict[str, list[dict]] = {}
    for version in range(1, start + 1):
        assert database.migrate(target=version) == version
        _seed(database, version)
    kept = _rows(database)
    assert database.migrate() == LATEST
    assert _schema(database) == _schema(fresh)
    after = _rows(database)
    for table, rows in kept.items():
        for row in rows:
            assert any(all(new.get(k) == v for k, v in row.items()) for new in after[table]), (table, row)
    fresh.close()
    database.close()


def test_each_migration_runs_in_one_transaction(tmp_path, monkeypatch):
    import store.migrations as migrations_module

    def broken(m):
        m.execute("CREATE TABLE half_done (id INTEGER)")
        raise RuntimeError("migration failed")

    monkeypatch.setattr(migrations_module, "MIGRATIONS", [*MIGRATIONS, broken])
    database = Database(tmp_path / "m.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    with pytest.raises(RuntimeError):
        database.migrate()
    assert database.schema_version == LATEST
    assert "half_done" not in _schema(database)
    database.close()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "n.db"
    database = Database(path, create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    database.migrate()
    database.execute(f"PRAGMA user_version = {LATEST + 5}")
    before = _schema(database)
    with pytest.raises(
        SchemaTooNew,
        match=rf"schema version {LATEST + 5}, newer than this logic-runtime "
        rf"supports \({LATEST}\): upgrade logic-runtime",
    ):
        database.migrate()
    with pytest.raises(SchemaTooNew):
        Database(path, busy_timeout_ms=BUSY_TIMEOUT_MS).check_schema()
    assert database.schema_version == LATEST + 5
    assert _schema(database) == before
    database.close()


def test_migrate_rejects_an_unknown_target(db):
    with pytest.raises(ValueError):
        db.migrate(target=LATEST + 1)


def test_two_processes_migrating_at_once(tmp_path):
    """A second migrator that read the old version must not re-run a migration."""
    path = tmp_path / "c.db"
    first = Database(path, create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    second = Database(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    real = second.schema_version  # both saw version 0
    first.migrate()

    class Stale(Database):
        calls = 0

        @property
        def schema_version(self):
            Stale.calls += 1
            return real if Stale.calls == 1 else super().schema_version

    second.__class__ = Stale
    assert second.migrate() == LATEST
    first.close()
    second.close()


def test_connections_of_finished_threads_are_closed(store):
    import threading

    def touch():
        store.db.one("SELECT 1")

    for _ in range(20):
        t = threading.Thread(target=touch)
        t.start()
        t.join()
    touch()  # a new connection sweeps the ones whose thread ended
    assert store.db.open_connections <= 2


# after_commit: who hears of a write hears only of a committed one ------------------------


def test_after_commit_runs_once_the_outer_transaction_commits(tmp_path):
    db = _after_commit_db(tmp_path)
    heard = []
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        db.after_commit(lambda: heard.append(db.one("SELECT count(*) FROM t")[0]))
        with db.transaction():  # a nested one joins: still nothing heard
            db.after_commit(lambda: heard.append("nested"))
        assert heard == []
    assert heard == [1, "nested"]  # the row was visible: the commit came first


def test_after_commit_is_never_called_for_a_rolled_back_transaction(tmp_path):
    db = _after_commit_db(tmp_path)
    heard = []
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        db.after_commit(lambda: heard.append("rolled back"))
        raise RuntimeError("boom")
    with db.transaction():
        pass
    assert heard == [] and db.one("SELECT count(*) FROM t")[0] == 0


def test_after_commit_outside_a_transaction_runs_at_once_and_a_failing_one_is_logged(tmp_path, caplog):
    db = _after_commit_db(tmp_path)
    heard = []
    db.after_commit(lambda: heard.append("now"))
    with db.transaction():
        db.after_commit(lambda: 1 / 0)
        db.after_commit(lambda: heard.append("still"))
    assert heard == ["now", "still"] and "after-commit callback failed" in caplog.text


def _after_commit_db(tmp_path):
    db = Database(tmp_path / "a.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    with db.transaction() as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    return db
