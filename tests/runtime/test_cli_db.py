"""`logic db migrate`: an operator's explicit schema upgrade (no master key needed)."""

from __future__ import annotations

import json
import sqlite3

from store.database import Database
from store.migrations import MIGRATIONS

LATEST = len(MIGRATIONS)


def _tables(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_migrate_brings_an_older_database_up_to_date_without_the_master_key(cli, logic_home):
    logic_home.mkdir(mode=0o700)
    old = Database(logic_home / "logic.db", busy_timeout_ms=1000, create=True)
    assert old.migrate(target=10) == 10  # as the release before secret versions left it
    old.close()
    assert not (logic_home / "master.key").exists()  # migrations never read a value

    result = cli("db", "migrate", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "database": str(logic_home / "logic.db"),
        "from_version": 10,
        "to_version": LATEST,
    }
    assert {"secret_versions", "changes"} <= _tables(logic_home / "logic.db")

    again = cli("db", "migrate")
    assert (again.exit_code, again.stdout.strip()) == (0, f"The database is up to date (schema version {LATEST}).")


def test_migrate_says_what_it_did(cli, logic_home):
    logic_home.mkdir(mode=0o700)
    old = Database(logic_home / "logic.db", busy_timeout_ms=1000, create=True)
    old.migrate(target=LATEST - 1)
    old.close()
    result = cli("db", "migrate")
    assert result.stdout.strip() == f"Migrated the database from schema version {LATEST - 1} to {LATEST}."


def test_migrate_without_a_database_or_with_a_newer_one_is_a_clear_error(cli, logic_home):
    missing = cli("db", "migrate")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: no database at {logic_home / 'logic.db'}: run `logic init` first"
    assert not (logic_home / "logic.db").exists()  # nothing created

    assert cli("init").exit_code == 0
    conn = sqlite3.connect(logic_home / "logic.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    newer = cli("db", "migrate")
    assert newer.exit_code == 1 and "has schema version 999, newer than this logic-runtime supports" in newer.stderr
