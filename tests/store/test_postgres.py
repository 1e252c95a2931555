"""What only the PostgreSQL backend does: placeholders, rows, flags, refused text, real
faults (a row lock held elsewhere, a server stopped and started, a connection killed),
advisory locks, snapshots, and the query plans of the claim.

The faults are real: another connection holds the lock, `pg_terminate_backend` kills a
pooled session, and the server itself is stopped (`Cluster.stop()`, on a cluster of the
test's own, since the shared one serves the other tests of this xdist worker).
"""

from __future__ import annotations

import ast
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

import store.postgres
from store import Settings, Store
from store.errors import InvalidInput, StoreBusy, StoreError, StoreUnreachable
from store.postgres import PgTx, lock_key, to_pg
from tests.pg_cluster import Cluster, start_cluster
from tests.support import event_queue

OWNER = "user:pg"
STORE_DIR = Path(__file__).resolve().parents[2] / "store"
EARLY = "2000-01-01T00:00:00.000000Z"  # before every lease: nothing has expired
LATE = "2999-01-01T00:00:00.000000Z"
LATER = "3000-01-01T00:00:00.000000Z"  # past every lease


@pytest.fixture
def backend() -> str:
    return "postgresql"


def scalar(conn: psycopg.Connection, sql: str, params: tuple = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def raw(settings: Settings) -> psycopg.Connection:
    """A connection of the test's own to the store's database (the "other node")."""
    assert settings.database_url is not None
    return psycopg.connect(settings.database_url.get_secret_value(), autocommit=True)


def with_timeout(settings: Settings, busy_timeout_ms: int) -> Store:
    """Another Store on the same database whose lock waits give up quickly."""
    return Store.open(settings.model_copy(update={"busy_timeout_ms": busy_timeout_ms}))


# placeholders -------------------------------------------------------------

_SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH)\b")
_FRAGMENT = re.compile(r"\b(WHERE|AND|FROM|VALUES|SET|ORDER BY|LIMIT|JOIN)\b")
# Independent of to_pg: quoted text ('...' with '' inside, "...") and what lies between.
_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?")


def sql_literals() -> list[tuple[str, int, str]]:
    """Every string in store/ that is SQL or a piece of it, as (file, line, text); an
    f-string's fields read as `1` (they are identifiers, lists of marks, fragments)."""
    found = []
    for path in sorted(STORE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        inside_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            if id(node) in inside_fstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(str(v.value) if isinstance(v, ast.Constant) else "1" for v in node.values)
            else:
                continue
            if "%s" in text:
                continue  # already psycopg's own words (run on a raw connection in postgres.py)
            if _SQL.match(text) or ("?" in text and _FRAGMENT.search(text)):
                found.append((path.name, node.lineno, text))
    return found


def test_every_sql_literal_in_the_store_is_collected():
    literals = sql_literals()
    files = {name for name, _, _ in literals}
    assert len(literals) > 250
    assert {"secrets.py", "events.py", "events_pg.py", "migrations.py", "functions.py", "changes.py"} <= files


def test_the_rewrite_keeps_every_store_statement_as_written(store):
    """psycopg, given to_pg's text and one value per `?` outside quotes, must produce the
    statement as written with those values in place: `?` and `%` inside quotes, and a
    `%` operator outside them, reach the server unchanged."""
    cursor = psycopg.ClientCursor(raw(store.settings))
    wrong = []
    for name, line, sql in sql_literals():
        pieces = []
        values: list[str] = []
        last = 0
        for match in _QUOTED_OR_MARK.finditer(sql):
            pieces.append(sql[last : match.start()])
            if match.group() == "?":
                values.append(f"p{len(values)}")
                pieces.append(f"'{values[-1]}'")
            else:
                pieces.append(match.group())
            last = match.end()
        expected = "".join(pieces) + sql[last:]
        try:
            got = cursor.mogrify(to_pg(sql), tuple(values))
        except psycopg.ProgrammingError as exc:  # wrong number of placeholders
            got = f"<{exc}>"
        if got != expected:
            wrong.append((name, line, sql, got))
    cursor.connection.close()
    assert not wrong, wrong[:3]


def test_question_marks_and_percent_signs_inside_quotes_reach_the_server(store):
    row = store.db.one(
        "SELECT '50%' AS percent, 'why?' AS question, 'it''s ?' AS escaped, 7 % 4 AS modulo, ? AS param, "
        '1 AS "odd?%name"',
        ("given",),
    )
    assert tuple(row) == ("50%", "why?", "it's ?", 3, "given", 1)
    assert row.keys() == ["percent", "question", "escaped", "modulo", "param", "odd?%name"]


def test_no_sqlite_only_construct_in_repository_sql():
    """What PostgreSQL refuses (or reads otherwise) stays out of the shared SQL; SQLite's
    own module (database.py) and the migrations' dialect branches may say it."""
    banned = re.compile(r"\bOR\s+(IGNORE|REPLACE)\b|\bLIMIT\s+-1\b|\bx''|\bPRAGMA\b|\bmax\([^()]*,", re.IGNORECASE)
    found = [
        (name, line, sql)
        for name, line, sql in sql_literals()
        if name not in {"database.py", "migrations.py"} and banned.search(sql)
    ]
    assert not found


# rows and values ----------------------------------------------------------


def test_a_row_reads_by_index_by_name_and_as_a_dict(store):
    store.environment.set(OWNER, "COLOUR", "blue")
    row = store.db.one("SELECT name, value FROM env_vars WHERE owner = ?", (OWNER,))
    assert (row[0], row[1], row["name"], row["value"]) == ("COLOUR", "blue", "COLOUR", "blue")
    assert dict(row) == {"name": "COLOUR", "value": "blue"}
    assert tuple(row) == ("COLOUR", "blue")
    with store.db.transaction() as tx:  # rows inside a transaction are the same kind
        inside = tx.execute("SELECT value AS v FROM env_vars WHERE owner = ?", (OWNER,)).fetchone()
    assert dict(inside) == {"v": "blue"}


def test_flags_are_stored_as_0_and_1(store):
    """SQLite has no boolean: flags are INTEGER columns, and a Python bool is stored (and
    compared) as 0/1 on PostgreSQL too, never as a boolean the column refuses."""
    store.db.execute("INSERT INTO users (name, is_admin, created_at) VALUES (?, ?, ?)", ("flag-t", True, "t"))
    store.db.execute("INSERT INTO users (name, is_admin, created_at) VALUES (?, ?, ?)", ("flag-f", False, "t"))
    rows = store.db.all("SELECT name, is_admin FROM users WHERE name LIKE 'flag-%' ORDER BY name")
    assert [tuple(r) for r in rows] == [("flag-f", 0), ("flag-t", 1)]
    assert all(type(r[1]) is int for r in rows)
    assert store.db.one("SELECT name FROM users WHERE is_admin = ? AND name LIKE 'flag-%'", (True,))[0] == "flag-t"


@pytest.mark.parametrize("where", ["environment variable", "event data"])
def test_a_nul_character_in_text_is_invalid_input_and_writes_nothing(store, db_rows, where):
    before = db_rows()
    with pytest.raises(InvalidInput, match="NUL character") as caught, store.transaction():
        store.environment.set(OWNER, "WRITTEN_FIRST", "fine")  # rolled back with the refused write
        if where == "environment variable":
            store.environment.set(OWNER, "NUL", "before\x00after")
        else:
            store.events.add_event(OWNER, "ping", '{"a": "before\x00after"}', "test", 0, [("function", "f")])
    assert "before" not in caught.value.message
    assert db_rows() == before
    store.environment.set(OWNER, "AFTERWARDS", "fine")  # the connection was not left broken
    assert [v.name for v in store.environment.list(OWNER)] == ["AFTERWARDS"]


# faults -------------------------------------------------------------------


def test_a_row_lock_held_elsewhere_is_store_busy_naming_nothing_and_writes_nothing(store, settings, db_rows):
    store.secrets.create(OWNER, "LOCKED", "old-value-7f3a")
    before = db_rows()
    holder = raw(settings)
    holder.execute("BEGIN")
    holder.execute("SELECT 1 FROM secrets WHERE name = 'LOCKED' FOR UPDATE")
    impatient = with_timeout(settings, 200)
    try:
        with pytest.raises(StoreBusy) as caught:
            impatient.secrets.update(OWNER, "LOCKED", "new-value-9c1d")
        message = caught.value.message
        assert "busy" in message and "try again" in message
        for leaked in ("SELECT", "UPDATE", "secrets", "LOCKED", "new-value", "old-value", OWNER):
            assert leaked not in message
        assert caught.value.status == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert db_rows() == before
    impatient.secrets.update(OWNER, "LOCKED", "new-value-9c1d")  # the lock gone, it goes through
    assert store.secrets.reveal(OWNER, "LOCKED").reveal() == "new-value-9c1d"
    impatient.close()


def test_a_connection_killed_mid_transaction_is_cannot_be_reached_and_the_next_one_works(store, settings, db_rows):
    before = db_rows()
    killer = raw(settings)
    with pytest.raises(StoreError, match="cannot be reached") as caught, store.transaction():
        store.environment.set(OWNER, "HALF", "1")
        backend_pid = store.db._local.tx.conn.info.backend_pid
        killer.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        store.environment.set(OWNER, "DONE", "1")
    killer.close()
    assert "HALF" not in caught.value.message and "env_vars" not in caught.value.message
    assert db_rows() == before
    store.environment.set(OWNER, "LATER", "1")  # the pool replaced the dead connection
    assert [v.name for v in store.environment.list(OWNER)] == ["LATER"]
    assert store.fault() is None


def test_idle_pooled_connections_killed_are_replaced_unseen(store, settings):
    store.environment.set(OWNER, "A", "1")
    with raw(settings) as killer:
        killed = scalar(
            killer,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'logic-runtime%%'",
        )
    assert killed >= 1
    store.environment.set(OWNER, "B", "2")
    assert [v.name for v in store.environment.list(OWNER)] == ["A", "B"]


@pytest.fixture
def own_cluster(pg_server: str) -> Iterator[Cluster]:
    """A cluster only this test uses (it is stopped and started); pg_server's skip rules."""
    cluster = start_cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def own_store(own_cluster: Cluster, logic_home: Path) -> Iterator[Store]:
    opened, _ = Store.initialize(
        Settings(home=logic_home, database_url=SecretStr(own_cluster.url()), busy_timeout_ms=1000)
    )
    opened.environment.set(OWNER, "BEFORE", "1")
    yield opened
    opened.close()


@pytest.mark.parametrize("operation", ["write", "read"])
def test_a_stopped_server_cannot_be_reached_and_fault_says_so(own_cluster, own_store, operation):
    own_cluster.stop()
    with pytest.raises(StoreUnreachable, match="cannot be reached") as caught:
        if operation == "write":
            own_store.environment.set(OWNER, "DURING", "1")
        else:
            own_store.environment.list(OWNER)
    assert f"127.0.0.1:{own_cluster.port}" in caught.value.message
    assert own_store.fault() == "database unreachable"


def test_after_the_server_is_back_the_same_store_works_and_fault_clears(own_cluster, own_store, monkeypatch):
    own_cluster.stop()
    with pytest.raises(StoreError):
        own_store.environment.set(OWNER, "DURING", "1")
    assert own_store.fault() is not None
    monkeypatch.setattr(store.postgres, "PROBE_INTERVAL_S", 0.0)  # probe on every call, not once a second
    assert own_store.fault() is not None  # the probe fails while the server is down
    own_cluster.start()
    assert own_store.fault() is None  # the probe's write succeeds: healthy without any write of ours
    # The same Store, not reopened, as a client that honours "try again" sees it. Each try
    # waits up to the busy timeout for the pool, whose reconnection backs off (1, 2, 4 s...):
    # today it takes up to a few tries (the report of issue 14's tests has the numbers).
    for _ in range(30):
        try:
            own_store.environment.set(OWNER, "AFTER", "2")
            break
        except StoreBusy:
            continue
    assert [v.name for v in own_store.environment.list(OWNER)] == ["AFTER", "BEFORE"]
    assert own_store.fault() is None


# advisory locks -----------------------------------------------------------


def advisory_locks(conn: psycopg.Connection) -> int:
    return int(
        scalar(
            conn,
            # this test's database is its own: every advisory lock on it is ours
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    )


def free(conn: psycopg.Connection, name: str) -> bool:
    """Could another session take `name` exclusively now? (Taken and released at once.)"""
    return bool(scalar(conn, "SELECT pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))", lock_key(name)))


def test_shared_holders_do_not_block_each_other_and_exclude_an_exclusive_one(store, settings):
    both_hold = threading.Barrier(3, timeout=10)
    checked = threading.Barrier(3, timeout=10)
    errors: list[BaseException] = []

    def hold_shared() -> None:
        try:
            with store.db.transaction():
                store.db.lock("shared-test", shared=True)
                both_hold.wait()  # broken (timeout) if the second holder waited for the first
                checked.wait()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold_shared) for _ in range(2)]
    for thread in threads:
        thread.start()
    both_hold.wait()
    with raw(settings) as other:
        assert not free(other, "shared-test")  # two shared holders: no exclusive lock
        assert free(other, "another-name")
        with store.db.transaction():
            assert not store.db.try_lock("shared-test")
    checked.wait()
    for thread in threads:
        thread.join(10)
    assert not errors
    with raw(settings) as other:
        assert free(other, "shared-test")
        assert advisory_locks(other) == 0


def test_an_exclusive_holder_excludes_everyone_until_commit(store, settings):
    impatient = with_timeout(settings, 200)
    with raw(settings) as other:
        with store.db.transaction():
            store.db.lock("exclusive-test")
            assert not free(other, "exclusive-test")
            outcome: dict[str, object] = {}

            def try_from_another_node() -> None:
                with impatient.db.transaction():
                    outcome["try_lock"] = impatient.db.try_lock("exclusive-test")
                try:
                    with impatient.db.transaction():
                        impatient.db.lock("exclusive-test", shared=True)
                except StoreBusy as exc:
                    outcome["shared"] = exc

            thread = threading.Thread(target=try_from_another_node)
            thread.start()
            thread.join(10)
            assert outcome["try_lock"] is False
            assert isinstance(outcome.get("shared"), StoreBusy)  # waited past its busy timeout
        assert free(other, "exclusive-test")  # released at commit
        assert advisory_locks(other) == 0  # and not kept by the pooled connection
    impatient.close()


def test_a_lock_is_released_at_rollback(store, settings):
    with raw(settings) as other:
        with pytest.raises(RuntimeError), store.db.transaction():
            store.db.lock("rollback-test")
            assert advisory_locks(other) == 1
            raise RuntimeError("the unit of work fails")
        assert free(other, "rollback-test")
        assert advisory_locks(other) == 0
        with store.db.transaction():
            assert store.db.try_lock("rollback-test")


# snapshots ----------------------------------------------------------------


def count_env(tx: PgTx) -> int:
    return int(tx.execute("SELECT count(*) FROM env_vars WHERE owner = ?", (OWNER,)).fetchone()[0])


def commit_elsewhere(store: Store, name: str) -> None:
    thread = threading.Thread(target=store.environment.set, args=(OWNER, name, "1"))
    thread.start()
    thread.join(10)


def test_a_snapshot_sees_one_state_while_another_connection_commits(store):
    store.environment.set(OWNER, "FIRST", "1")
    with store.db.transaction() as tx:  # READ COMMITTED: each statement sees the newest commit
        assert count_env(tx) == 1
        commit_elsewhere(store, "SECOND")
        assert count_env(tx) == 2
    with store.db.snapshot() as tx:  # one state from its first statement to its end
        assert count_env(tx) == 2
        commit_elsewhere(store, "THIRD")
        assert count_env(tx) == 2
        assert tx.execute("SELECT name FROM env_vars WHERE name = 'THIRD'").fetchone() is None
    assert len(store.environment.list(OWNER)) == 3


# the claim's query plans --------------------------------------------------


def plans(conn: psycopg.Connection, sql: str, params: tuple) -> dict[str, str]:
    """EXPLAIN of the statement as run (a custom plan, for these values) and as a prepared
    statement's generic plan (psycopg prepares a statement after a few runs, and
    PostgreSQL may then keep a plan made without the values)."""
    text = to_pg(sql)
    custom = "\n".join(r[0] for r in conn.execute("EXPLAIN " + text, params))
    marks = iter(range(1, 100))
    numbered = re.sub(r"%s", lambda _: f"${next(marks)}", text).replace("%%", "%")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute("PREPARE claim_step AS " + numbered)
    values = ", ".join(["%s"] * len(params))
    explain = f"EXPLAIN EXECUTE claim_step({values})" if params else "EXPLAIN EXECUTE claim_step"
    generic = "\n".join(r[0] for r in psycopg.ClientCursor(conn).execute(explain, params))
    conn.execute("DEALLOCATE claim_step")
    conn.execute("RESET plan_cache_mode")
    return {"custom": custom, "generic": generic}


def test_a_claim_seeks_the_partial_indexes_and_never_walks_the_finished_rows(store, settings, monkeypatch):
    """PostgreSQL's version of tests/security/test_tenant_fairness.py's test: with a few
    thousand finished deliveries (history a claim must never step over) and some pending
    across owners, every statement of a publish's quota check, a claim, finish, heartbeat
    and release is an index scan; per-owner ones use the pending or running partial index."""
    events = event_queue(store)
    store.db.execute(
        "INSERT INTO deliveries (owner, target_kind, target_id, status, created_at, finished_at, run_id) "
        "SELECT 'user:' || (g % 20), 'function', 'f', 'done', ?, ?, 'r' || g FROM generate_series(1, 4000) AS g",
        (EARLY, EARLY),
    )
    for i in range(60):
        events.add_event(f"user:{i % 6}", f"e{i}", None, "test", 0, [("function", "f")], check_capacity=False)
    store.db.execute("ANALYZE deliveries")
    statements: list[tuple[str, tuple]] = []
    real = PgTx.execute

    def spy(self: PgTx, sql: str, params=(), /):
        statements.append((sql, tuple(params)))
        return real(self, sql, params)

    monkeypatch.setattr(PgTx, "execute", spy)
    events.add_event("user:1", "one more", None, "test", 0, [("function", "f")])  # the quota's counts
    taken = events.claim(EARLY, LATE, limit=3, per_owner=2)
    assert len(taken) == 3 and taken.more
    events.finish(taken[0].id, run_id="r-plan", token=taken[0].token)  # a run's finish: one statement
    assert events.heartbeat([(taken[1].id, taken[1].token)], LATE) == set()
    events.finish(taken[1].id, status="failed", error="x", token=taken[1].token)  # finish without a run
    events.release(taken[2].id, token=taken[2].token)
    events.claim(LATER, LATER, limit=1)  # leases that ran out: the expired path
    monkeypatch.setattr(PgTx, "execute", real)

    on_deliveries = [
        (sql, params)
        for sql, params in statements
        if "deliveries" in sql and sql.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH", "DELETE"))
    ]
    assert len(on_deliveries) >= 7
    with raw(settings) as conn:
        conn.prepare_threshold = None  # our own PREPARE only
        for sql, params in on_deliveries:
            for kind, plan in plans(conn, sql, params).items():
                assert "Seq Scan on deliveries" not in plan, (kind, sql, plan)
                scans = re.findall(r"Index (?:Only )?Scan using (\w+) on deliveries|Bitmap Index Scan on (\w+)", plan)
                scans = ["".join(names) for names in scans]
                assert scans, (kind, sql, plan)
                assert set(scans) <= {"deliveries_pending_by_owner", "deliveries_running", "deliveries_pkey"}, (
                    kind,
                    sql,
                    plan,
                )
                if "owner = " in sql:  # per owner: that owner's range of a partial index
                    assert {"deliveries_pending_by_owner", "deliveries_running"} & set(scans), (kind, sql, plan)


def test_every_connection_of_a_node_names_the_node_and_its_role_in_pg_stat_activity(store, settings):
    """An operator looking at pg_stat_activity sees which node (and what for) holds each
    connection: the pool's, the doorbell's sender and the listener."""
    stop = threading.Event()
    listener = store.db.listen(lambda _count: None, stop)
    try:
        store.db.announce(1)  # the doorbell's sender connects to ring
        node = store.db.node
        wanted = {f"logic-runtime {node}", f"logic-runtime {node} doorbell", f"logic-runtime {node} listen"}
        with raw(settings) as conn:
            deadline = time.monotonic() + 10
            names: set[str] = set()
            while not wanted <= names and time.monotonic() < deadline:
                activity = "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                names = {r[0] for r in conn.execute(activity)}
                time.sleep(0.05)  # the listener connects in a thread of its own
        assert wanted <= names, names
    finally:
        stop.set()
        if listener is not None:
            listener.join(10)
