-- index changes_by_owner on changes
CREATE INDEX changes_by_owner ON changes (owner, id);
-- index changes_by_target on changes
CREATE INDEX changes_by_target ON changes (owner, target_kind, target, id);
-- index console_sessions_token on console_sessions
CREATE INDEX console_sessions_token ON console_sessions (token_id);
-- index deliveries_by_event on deliveries
CREATE INDEX deliveries_by_event ON deliveries (event_id);
-- index deliveries_pending_by_owner on deliveries
CREATE INDEX deliveries_pending_by_owner ON deliveries (owner, id, status) WHERE status = 'pending';
-- index deliveries_running on deliveries
CREATE INDEX deliveries_running ON deliveries (owner, lease_until, status) WHERE status = 'running';
-- index idx_orgs_name on orgs
CREATE UNIQUE INDEX "idx_orgs_name"
    ON "orgs" ("name");
-- index idx_users_name on users
CREATE UNIQUE INDEX "idx_users_name"
    ON "users" ("name");
-- index integration_logs_by_integration on integration_logs
CREATE INDEX integration_logs_by_integration ON integration_logs (integration_id, id);
-- index ledger_versions_by_ledger on ledger_versions
CREATE INDEX ledger_versions_by_ledger ON ledger_versions (ledger_id, id);
-- index runs_by_function on runs
CREATE INDEX runs_by_function ON runs (function_id, started_at);
-- index secret_access_by_secret on secret_access
CREATE INDEX secret_access_by_secret ON secret_access (owner, secret_name, at);
-- index triggers_by_event on triggers
CREATE INDEX triggers_by_event ON triggers (event_name) WHERE kind = 'event';
-- index triggers_by_ledger on triggers
CREATE INDEX triggers_by_ledger ON triggers (ledger_name) WHERE kind = 'ledger_change';
-- index triggers_by_next_fire on triggers
CREATE INDEX triggers_by_next_fire ON triggers (next_fire_at) WHERE kind = 'schedule';
-- table change_audit_key on change_audit_key
CREATE TABLE change_audit_key (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL);
-- table change_checkpoints on change_checkpoints
CREATE TABLE change_checkpoints (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        last_id INTEGER NOT NULL,
        last_mac TEXT NOT NULL,
        rows_pruned INTEGER NOT NULL,
        mac TEXT NOT NULL);
-- table change_head on change_head
CREATE TABLE change_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_id INTEGER NOT NULL,
        last_mac TEXT NOT NULL,
        mac TEXT NOT NULL);
-- table changes on changes
CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        owner TEXT,
        action TEXT NOT NULL,
        target_kind TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}',
        mac TEXT NOT NULL);
-- table console_sessions on console_sessions
CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL) WITHOUT ROWID;
-- table deliveries on deliveries
CREATE TABLE deliveries (
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
        finished_at TEXT);
-- table env_vars on env_vars
CREATE TABLE env_vars (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (owner, name)) WITHOUT ROWID;
-- table events on events
CREATE TABLE events (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT,
        published_at TEXT NOT NULL,
        source TEXT NOT NULL,
        depth INTEGER NOT NULL DEFAULT 0);
-- table function_versions on function_versions
CREATE TABLE function_versions (
        function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (function_id, version));
-- table functions on functions
CREATE TABLE functions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (owner, name));
-- table integration_logs on integration_logs
CREATE TABLE integration_logs (
        id INTEGER PRIMARY KEY,
        integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
        event_id TEXT,
        at TEXT NOT NULL,
        record TEXT NOT NULL);
-- table integrations on integrations
CREATE TABLE integrations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        event_prefix TEXT NOT NULL,
        config TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (owner, name));
-- table keyring on keyring
CREATE TABLE keyring (
        id INTEGER PRIMARY KEY,
        wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL);
-- table ledger_versions on ledger_versions
CREATE TABLE ledger_versions (
        id INTEGER PRIMARY KEY,
        ledger_id INTEGER NOT NULL REFERENCES ledgers(id) ON DELETE CASCADE,
        data TEXT NOT NULL,
        updated_at TEXT,
        replaced_at TEXT NOT NULL,
        size_bytes INTEGER NOT NULL);
-- table ledgers on ledgers
CREATE TABLE ledgers (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT,
        UNIQUE (owner, name));
-- table memberships on memberships
CREATE TABLE memberships (
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (org_id, user_id));
-- table orgs on orgs
CREATE TABLE "orgs" (
   "id" INTEGER PRIMARY KEY,
   "name" TEXT NOT NULL,
   "created_at" TEXT NOT NULL
);
-- table owner_queue on owner_queue
CREATE TABLE owner_queue (owner TEXT PRIMARY KEY, open INTEGER NOT NULL) WITHOUT ROWID;
-- table queue_stats on queue_stats
CREATE TABLE queue_stats (id INTEGER PRIMARY KEY, open INTEGER NOT NULL);
-- table runs on runs
CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
        function_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        record TEXT NOT NULL, input BLOB, replay_of TEXT);
-- table secret_access on secret_access
CREATE TABLE secret_access (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        secret_name TEXT NOT NULL,
        consumer_kind TEXT NOT NULL,
        consumer_id TEXT NOT NULL,
        consumer_name TEXT NOT NULL,
        run_id TEXT,
        at TEXT NOT NULL);
-- table secret_usages on secret_usages
CREATE TABLE secret_usages (
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE RESTRICT,
        consumer_kind TEXT NOT NULL CHECK (consumer_kind IN ('logic_function', 'integration')),
        consumer_id TEXT NOT NULL,
        consumer_name TEXT NOT NULL,
        PRIMARY KEY (secret_id, consumer_kind, consumer_id));
-- table secret_versions on secret_versions
CREATE TABLE secret_versions (
        id INTEGER PRIMARY KEY,
        secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT,
        restored_from INTEGER,
        UNIQUE (secret_id, version));
-- table secrets on secrets
CREATE TABLE secrets (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_accessed_at TEXT, version INTEGER NOT NULL DEFAULT 1, updated_by TEXT, restored_from INTEGER,
        UNIQUE (owner, name));
-- table tokens on tokens
CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        label TEXT,
        created_at TEXT NOT NULL,
        last_used_at TEXT);
-- table triggers on triggers
CREATE TABLE "triggers" (
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
        change_type TEXT);
-- table users on users
CREATE TABLE "users" (
   "id" INTEGER PRIMARY KEY,
   "name" TEXT NOT NULL,
   "is_admin" INTEGER DEFAULT 0,
   "created_at" TEXT NOT NULL
);
-- trigger changes_append_only on changes
CREATE TRIGGER changes_append_only BEFORE UPDATE ON changes
        BEGIN SELECT RAISE(ABORT, 'the change audit is append-only'); END;
-- trigger deliveries_open_delete on deliveries
CREATE TRIGGER deliveries_open_delete AFTER DELETE ON deliveries
        WHEN old.status IN ('pending', 'running')
        BEGIN UPDATE queue_stats SET open = open - 1 WHERE id = 1; END;
-- trigger deliveries_open_insert on deliveries
CREATE TRIGGER deliveries_open_insert AFTER INSERT ON deliveries
        WHEN new.status IN ('pending', 'running')
        BEGIN UPDATE queue_stats SET open = open + 1 WHERE id = 1; END;
-- trigger deliveries_open_update on deliveries
CREATE TRIGGER deliveries_open_update AFTER UPDATE OF status ON deliveries
        WHEN (old.status IN ('pending', 'running')) != (new.status IN ('pending', 'running'))
        BEGIN UPDATE queue_stats SET open = open + (CASE WHEN new.status IN ('pending', 'running')
            THEN 1 ELSE -1 END) WHERE id = 1; END;
-- trigger owner_queue_delete on deliveries
CREATE TRIGGER owner_queue_delete AFTER DELETE ON deliveries
        WHEN old.status IN ('pending', 'running')
        BEGIN UPDATE owner_queue SET open = open - 1 WHERE owner = old.owner; END;
-- trigger owner_queue_insert on deliveries
CREATE TRIGGER owner_queue_insert AFTER INSERT ON deliveries
        WHEN new.status IN ('pending', 'running')
        BEGIN INSERT INTO owner_queue (owner, open) VALUES (new.owner, 1)
              ON CONFLICT (owner) DO UPDATE SET open = open + 1; END;
-- trigger owner_queue_update on deliveries
CREATE TRIGGER owner_queue_update AFTER UPDATE OF status ON deliveries
        WHEN (old.status IN ('pending', 'running')) != (new.status IN ('pending', 'running'))
        BEGIN UPDATE owner_queue SET open = open + (CASE WHEN new.status IN ('pending', 'running')
            THEN 1 ELSE -1 END) WHERE owner = new.owner; END;
