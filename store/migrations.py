"""Ordered schema migrations; version N is MIGRATIONS[N-1], recorded in PRAGMA user_version.

Never edit a released migration: add a new one. Each runs in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import sqlite_utils
from sqlite_utils.db import Table


def _v1_identity(db: sqlite_utils.Database) -> None:
    cast(Table, db["users"]).create(
        {"id": int, "name": str, "is_admin": int, "created_at": str},
        pk="id",
        not_null={"name", "created_at"},
        defaults={"is_admin": 0},
    )
    cast(Table, db["users"]).create_index(["name"], unique=True)
    cast(Table, db["orgs"]).create(
        {"id": int, "name": str, "created_at": str}, pk="id", not_null={"name", "created_at"}
    )
    cast(Table, db["orgs"]).create_index(["name"], unique=True)
    db.execute("""CREATE TABLE memberships (
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (org_id, user_id))""")
    db.execute("""CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        label TEXT,
        created_at TEXT NOT NULL,
        last_used_at TEXT)""")


def _v2_secrets(db: sqlite_utils.Database) -> None:
    # Data keys, each wrapped (AES-GCM) by the master key; the newest active one seals new values.
    db.execute("""CREATE TABLE keyring (
        id INTEGER PRIMARY KEY,
        wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL)""")
    db.execute("""CREATE TABLE secrets (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_accessed_at TEXT,
        UNIQUE (owner, name))""")
    # Who declares a secret; a secret with rows here cannot be deleted (RESTRICT).
    db.execute("""CREATE TABLE secret_usages (
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE RESTRICT,
        consumer_kind TEXT NOT NULL CHECK (consumer_kind IN ('logic_function', 'integration')),
        consumer_id TEXT NOT NULL,
        consumer_name TEXT NOT NULL,
        PRIMARY KEY (secret_id, consumer_kind, consumer_id))""")


def _v3_audit(db: sqlite_utils.Database) -> None:
    # Names and ids only, never values; kept after the secret is deleted.
    db.execute("""CREATE TABLE secret_access (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        secret_name TEXT NOT NULL,
        consumer_kind TEXT NOT NULL,
        consumer_id TEXT NOT NULL,
        consumer_name TEXT NOT NULL,
        run_id TEXT,
        at TEXT NOT NULL)""")
    db.execute("CREATE INDEX secret_access_by_secret ON secret_access (owner, secret_name, at)")


def _v4_functions(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE functions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (owner, name))""")
    # Every deploy is a new version; runs name the version they ran.
    db.execute("""CREATE TABLE function_versions (
        function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (function_id, version))""")
    # The current version's triggers, flattened so events and ticks find them by index.
    db.execute("""CREATE TABLE triggers (
        id INTEGER PRIMARY KEY,
        function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('event', 'schedule')),
        event_name TEXT,
        cron TEXT,
        timezone TEXT,
        next_fire_at TEXT)""")
    db.execute("CREATE INDEX triggers_by_event ON triggers (event_name) WHERE kind = 'event'")
    db.execute("CREATE INDEX triggers_by_next_fire ON triggers (next_fire_at) WHERE kind = 'schedule'")
    db.execute("""CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
        function_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        record TEXT NOT NULL)""")
    db.execute("CREATE INDEX runs_by_function ON runs (function_id, started_at)")


def _v5_events(db: sqlite_utils.Database) -> None:
    # An event is durable before it is acknowledged; each matching target gets a delivery row.
    db.execute("""CREATE TABLE events (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT,
        published_at TEXT NOT NULL,
        source TEXT NOT NULL,
        depth INTEGER NOT NULL DEFAULT 0)""")
    # Work to do: a function run (for an event or a cron tick) or a webhook call.
    # Claimed by setting status 'running' with a lease; an expired lease is claimed again.
    db.execute("""CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        target_kind TEXT NOT NULL CHECK (target_kind IN ('function', 'integration')),
        target_id TEXT NOT NULL,
        event_id TEXT REFERENCES events(id) ON DELETE CASCADE,
        scheduled_at TEXT,
        cron TEXT,
        depth INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_until TEXT,
        run_id TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT)""")
    db.execute("CREATE INDEX deliveries_open ON deliveries (status, id) WHERE status IN ('pending', 'running')")
    db.execute("CREATE INDEX deliveries_by_event ON deliveries (event_id)")
    db.execute("""CREATE TABLE integrations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        event_prefix TEXT NOT NULL,
        config TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (owner, name))""")
    db.execute("""CREATE TABLE integration_logs (
        id INTEGER PRIMARY KEY,
        integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
        event_id TEXT,
        at TEXT NOT NULL,
        record TEXT NOT NULL)""")
    db.execute("CREATE INDEX integration_logs_by_integration ON integration_logs (integration_id, id)")


def _v6_queue_counter(db: sqlite_utils.Database) -> None:
    # The number of open deliveries, kept by triggers, so backpressure costs one row read
    # per publish instead of a count that grows with the backlog.
    db.execute("CREATE TABLE queue_stats (id INTEGER PRIMARY KEY, open INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO queue_stats (id, open) VALUES "
        "(1, (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'running')))"
    )
    db.execute("""CREATE TRIGGER deliveries_open_insert AFTER INSERT ON deliveries
        WHEN new.status IN ('pending', 'running')
        BEGIN UPDATE queue_stats SET open = open + 1 WHERE id = 1; END""")
    db.execute("""CREATE TRIGGER deliveries_open_update AFTER UPDATE OF status ON deliveries
        WHEN (old.status IN ('pending', 'running')) != (new.status IN ('pending', 'running'))
        BEGIN UPDATE queue_stats SET open = open + (CASE WHEN new.status IN ('pending', 'running')
            THEN 1 ELSE -1 END) WHERE id = 1; END""")
    db.execute("""CREATE TRIGGER deliveries_open_delete AFTER DELETE ON deliveries
        WHEN old.status IN ('pending', 'running')
        BEGIN UPDATE queue_stats SET open = open - 1 WHERE id = 1; END""")


def _v7_fair_queue(db: sqlite_utils.Database) -> None:
    # Claims take turns across owners (store/events.py claim): each owner's oldest pending
    # deliveries and its running count are index seeks, whatever the backlog. One index
    # per status, replacing the (status, id) index of both: under `status IN (...)` a
    # count of one owner's running rows walked every pending row as well. Running rows
    # are few (one per delivery thread at most), so leases that ran out are found there.
    db.execute("DROP INDEX deliveries_open")
    db.execute("CREATE INDEX deliveries_pending_by_owner ON deliveries (owner, id, status) WHERE status = 'pending'")
    db.execute("CREATE INDEX deliveries_running ON deliveries (owner, lease_until, status) WHERE status = 'running'")
    # Each owner's open deliveries, kept by triggers like queue_stats: the per-owner quota
    # costs one row read per publish (a count of ~1,000 index entries cost 70 us).
    db.execute("CREATE TABLE owner_queue (owner TEXT PRIMARY KEY, open INTEGER NOT NULL) WITHOUT ROWID")
    db.execute(
        "INSERT INTO owner_queue (owner, open) SELECT owner, count(*) FROM deliveries "
        "WHERE status IN ('pending', 'running') GROUP BY owner"
    )
    db.execute("""CREATE TRIGGER owner_queue_insert AFTER INSERT ON deliveries
        WHEN new.status IN ('pending', 'running')
        BEGIN INSERT INTO owner_queue (owner, open) VALUES (new.owner, 1)
              ON CONFLICT (owner) DO UPDATE SET open = open + 1; END""")
    db.execute("""CREATE TRIGGER owner_queue_update AFTER UPDATE OF status ON deliveries
        WHEN (old.status IN ('pending', 'running')) != (new.status IN ('pending', 'running'))
        BEGIN UPDATE owner_queue SET open = open + (CASE WHEN new.status IN ('pending', 'running')
            THEN 1 ELSE -1 END) WHERE owner = new.owner; END""")
    db.execute("""CREATE TRIGGER owner_queue_delete AFTER DELETE ON deliveries
        WHEN old.status IN ('pending', 'running')
        BEGIN UPDATE owner_queue SET open = open - 1 WHERE owner = old.owner; END""")


def _v8_console_sessions(db: sqlite_utils.Database) -> None:
    # A console session belongs to the API token it signed in with: revoking the token
    # deletes its sessions (CASCADE). Only a hash of the session id is kept (a copied
    # database holds no usable cookie); the CSRF token is per session.
    db.execute("""CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL) WITHOUT ROWID""")
    db.execute("CREATE INDEX console_sessions_token ON console_sessions (token_id)")


def _v9_trigger_windows(db: sqlite_utils.Database) -> None:
    # Per-trigger `enabled` and a schedule's window; existing triggers stay enabled, unbounded.
    db.execute("ALTER TABLE triggers ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE triggers ADD COLUMN start_at TEXT")
    db.execute("ALTER TABLE triggers ADD COLUMN end_at TEXT")


def _v10_environment_and_ledgers(db: sqlite_utils.Database) -> None:
    # Plain-text configuration per owner (environment.py); shown, never secret.
    db.execute("""CREATE TABLE env_vars (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (owner, name)) WITHOUT ROWID""")
    # One JSON object per ledger (ledgers.py); `updated_at` NULL while it holds no data.
    db.execute("""CREATE TABLE ledgers (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT,
        UNIQUE (owner, name))""")
    # The data each write replaced, newest last; the last `ledger_versions_kept` are kept.
    db.execute("""CREATE TABLE ledger_versions (
        id INTEGER PRIMARY KEY,
        ledger_id INTEGER NOT NULL REFERENCES ledgers(id) ON DELETE CASCADE,
        data TEXT NOT NULL,
        updated_at TEXT,
        replaced_at TEXT NOT NULL,
        size_bytes INTEGER NOT NULL)""")
    db.execute("CREATE INDEX ledger_versions_by_ledger ON ledger_versions (ledger_id, id)")
    # Triggers gain the kind 'ledger_change' (a CHECK cannot be altered: rebuild the table).
    db.execute("""CREATE TABLE triggers_v10 (
        id INTEGER PRIMARY KEY,
        function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('event', 'schedule', 'ledger_change')),
        event_name TEXT,
        cron TEXT,
        timezone TEXT,
        next_fire_at TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        start_at TEXT,
        end_at TEXT,
        ledger_name TEXT,
        change_type TEXT)""")
    db.execute(
        "INSERT INTO triggers_v10 (id, function_id, kind, event_name, cron, timezone, next_fire_at, enabled, "
        "start_at, end_at) SELECT id, function_id, kind, event_name, cron, timezone, next_fire_at, enabled, "
        "start_at, end_at FROM triggers"
    )
    db.execute("DROP TABLE triggers")
    db.execute("ALTER TABLE triggers_v10 RENAME TO triggers")
    db.execute("CREATE INDEX triggers_by_event ON triggers (event_name) WHERE kind = 'event'")
    db.execute("CREATE INDEX triggers_by_next_fire ON triggers (next_fire_at) WHERE kind = 'schedule'")
    db.execute("CREATE INDEX triggers_by_ledger ON triggers (ledger_name) WHERE kind = 'ledger_change'")


def _v11_secret_versions(db: sqlite_utils.Database) -> None:
    # The values an update or restore replaced, newest last; each ciphertext's associated
    # data binds it to owner, name and version number (keyring.py), so a row moved to
    # another secret or number fails to decrypt. The last `secret_versions_kept` are kept.
    db.execute("ALTER TABLE secrets ADD COLUMN version INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE secrets ADD COLUMN updated_by TEXT")
    db.execute("ALTER TABLE secrets ADD COLUMN restored_from INTEGER")  # the version a restore copied
    db.execute("""CREATE TABLE secret_versions (
        id INTEGER PRIMARY KEY,
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT,
        restored_from INTEGER,
        UNIQUE (secret_id, version))""")


def _v12_change_audit(db: sqlite_utils.Database) -> None:
    # Who changed what, when and from where (names and ids, never values). Append-only:
    # each row's `mac` is an HMAC over its content and the previous row's mac (changes.py).
    db.execute("""CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        owner TEXT,
        action TEXT NOT NULL,
        target_kind TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}',
        mac TEXT NOT NULL)""")
    db.execute("CREATE INDEX changes_by_target ON changes (owner, target_kind, target, id)")
    db.execute("CREATE INDEX changes_by_owner ON changes (owner, id)")
    # Our own code never edits a row (a guard against our bugs; whoever holds the file can
    # drop it, which is what the MACs are for). Pruning deletes the oldest rows only.
    db.execute("""CREATE TRIGGER changes_append_only BEFORE UPDATE ON changes
        BEGIN SELECT RAISE(ABORT, 'the change audit is append-only'); END""")
    # The chain's key: random, made once, wrapped by the master key like the data keys (and
    # re-wrapped with them), never rotated away, so old rows verify after any rotation.
    db.execute("""CREATE TABLE change_audit_key (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL)""")
    # Where verify starts after pruning: the last pruned row's id and mac, itself MACed.
    db.execute("""CREATE TABLE change_checkpoints (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        last_mac TEXT NOT NULL,
        rows_pruned INTEGER NOT NULL,
        mac TEXT NOT NULL)""")
    # The newest row's id and mac, MACed and rewritten with every row: removing the newest
    # rows needs an older head too, which only an earlier copy of the database holds.
    db.execute("""CREATE TABLE change_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_id INTEGER NOT NULL,
        last_mac TEXT NOT NULL,
        mac TEXT NOT NULL)""")


def _v13_run_inputs(db: sqlite_utils.Database) -> None:
    # A run's trigger input for replay, sealed under the key ring (event data may hold
    # anything); the record keeps only a redacted copy for display.
    db.execute("ALTER TABLE runs ADD COLUMN input BLOB")
    db.execute("ALTER TABLE runs ADD COLUMN replay_of TEXT")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_identity,
    _v2_secrets,
    _v3_audit,
    _v4_functions,
    _v5_events,
    _v6_queue_counter,
    _v7_fair_queue,
    _v8_console_sessions,
    _v9_trigger_windows,
    _v10_environment_and_ledgers,
    _v11_secret_versions,
    _v12_change_audit,
    _v13_run_inputs,
]
