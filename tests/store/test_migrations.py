"""Migration 9 (per-trigger enabled, schedule windows) on a database that has triggers already.

tests/store/test_database.py checks every migration path generically; this checks what
version 9 means for rows written before it."""

from __future__ import annotations

from store.database import Database
from store.migrations import MIGRATIONS
from tests.support import BUSY_TIMEOUT_MS

V9 = MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "_v9_trigger_windows")) + 1


def test_triggers_from_before_version_9_stay_enabled_and_unbounded(tmp_path):
    db = Database(tmp_path / "old.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    db.migrate(target=V9 - 1)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO functions (id, owner, name, enabled, version, created_at, updated_at) "
            "VALUES ('f1', 'user:root', 'fn', 1, 1, 't', 't')"
        )
        conn.execute(
            "INSERT INTO triggers (function_id, kind, event_name, cron, timezone, next_fire_at) VALUES "
            "('f1', 'event', 'ping', NULL, NULL, NULL), ('f1', 'schedule', NULL, '* * * * *', NULL, 'n')"
        )
    assert db.migrate() == len(MIGRATIONS)
    rows = [tuple(r) for r in db.all("SELECT kind, enabled, start_at, end_at FROM triggers ORDER BY id")]
    assert rows == [("event", 1, None, None), ("schedule", 1, None, None)]
    db.close()
