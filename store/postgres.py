"""The Backend (backend.py) on PostgreSQL: a psycopg 3 connection pool, transactions,
placeholders, rows, named locks and the translation of faults.

Repositories write SQL once, with `?` placeholders; here each statement's `?` becomes
psycopg's `%s` (and a literal `%` is doubled), once per statement text. Rows index by
position and by name, like sqlite3.Row. A transaction is READ COMMITTED; what SQLite's
single writer made safe is guarded where it matters by `lock(name)`, a transaction-level
advisory lock (released at commit or rollback, so a node that dies frees it) or by a row
lock in the repository's own SQL.

Faults are translated where statements run, into errors that say what to do: a lock
waited for past the busy timeout, a deadlock or a serialization failure is `StoreBusy`
(the caller retries), a full disk `DiskFull`, a database that cannot be reached a
`StoreError` naming host and database (never the password). A constraint that refuses a
write is `ConstraintViolation`, which repositories turn into their own clear error.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
import psycopg.adapt
import psycopg.errors
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .backend import ConstraintViolation, Dialect
from .errors import DiskFull, InvalidInput, NotInitialized, StoreBusy, StoreError, StoreUnreachable
from .process_doorbell import pack

log = logging.getLogger("logic.store")

PROBE_INTERVAL_S = 1.0  # the health probe, at most this often while writes fail
# Advisory locks take two int4 keys: ours are (hashtext("logic-runtime " || kind), hashtext(key))
# for a name "kind:key" (or just "kind"), so one kind's keys never share a lock with another
# kind's (a tenant whose name hashes like "keyring" cannot hold up the key ring), nor with
# other applications' locks on the same database.
LOCK_PREFIX = "logic-runtime "


def lock_key(name: str) -> tuple[str, str]:
    """The two texts whose hashtext() are the advisory lock's keys for `name`."""
    kind, _, key = name.partition(":")
    return LOCK_PREFIX + kind, key


DOORBELL_CHANNEL = "logic_deliveries"
DOORBELL_EVERY_S = 0.01  # one NOTIFY per node at most this often, whatever the publish rate
STREAMS_CHANNEL = "logic_streams"  # references to committed live-stream items (runtime/events/stream_feed.py)
NOTIFY_PAYLOAD_MAX = 7_900  # bytes of one NOTIFY's payload (PostgreSQL allows under 8,000)
STREAM_REFS_PENDING_MAX = 10_000  # references waiting for their NOTIFY; past it the oldest go
STREAMS_LISTENER = "logic-runtime streams-listen"  # how a node with stream readers shows in pg_stat_activity
LISTENERS_LOOK_S = 1.0  # how often a node sending references looks whether anyone listens

_Error = TypeVar("_Error", bound=StoreError)


# rows ---------------------------------------------------------------------


class Row(tuple[Any, ...]):
    """A result row: by position and by column name, with keys() (so dict(row) works)."""

    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_index": {name: i for i, name in enumerate(names)}, "__slots__": ()})


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    # The result's field names, not `cursor.description`: that builds a Column object per
    # field for every statement (a tenth of the group commit's time on PostgreSQL).
    result = cursor.pgresult
    if result is None or not result.nfields:
        return tuple
    return _row_class(tuple(result.fname(i).decode() for i in range(result.nfields)))


class _BoolAsInteger(psycopg.adapt.Dumper):
    """Flags are INTEGER 0/1 on both backends (SQLite has no boolean)."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


# placeholders -------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """`?` outside quotes becomes `%s`; every `%` becomes `%%` (psycopg's own escape)."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgTx:
    """A pooled connection inside a transaction, with the SQL and faults translated."""

    dialect: Dialect = "postgresql"

    def __init__(self, db: PostgresDatabase, conn: psycopg.Connection[Any]):
        self.db = db
        self.conn = conn
        self.wrote = False

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        try:
            cursor = self.conn.execute(to_pg(sql), tuple(params), prepare=None)
        except psycopg.Error as exc:
            raise self.db.translate(exc) from exc
        if cursor.rowcount > 0 and cursor.statusmessage and not cursor.statusmessage.startswith("SELECT"):
            self.wrote = True
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        rows = [tuple(row) for row in rows]
        if not rows:
            return
        try:
            with self.conn.cursor() as cursor:
                cursor.executemany(to_pg(sql), rows)
        except psycopg.Error as exc:
            raise self.db.translate(exc) from exc
        self.wrote = True


# the database -------------------------------------------------------------


class PostgresDatabase:
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, busy_timeout_ms: int, pool_max: int, node: str, create: bool = False):
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.node = node
        try:
            info = conninfo_to_dict(url)
        except psycopg.Error:  # libpq's text quotes the URL, password included
            raise StoreError(
                "LOGIC_DATABASE_URL is not a URL libpq can read: postgresql://user:password@host:port/dbname"
            ) from None
        self._where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        self._local = threading.local()
        self._fault: tuple[str, int] | None = None
        self._faults_seen = 0
        self._probed_at = float("-inf")
        self._doorbell = _Doorbell(self)
        self._stream_notifier = _StreamNotifier(self)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_max),
            kwargs={"autocommit": True, **_keepalives(info)},
            configure=self._configure,
            timeout=busy_timeout_ms / 1000,
            max_idle=300,
            # After a server restart, reconnect within about a busy timeout, not after the
            # pool's backoff of up to minutes.
            reconnect_timeout=max(1.0, busy_timeout_ms / 1000),
            open=False,
            name=f"logic-{node}",
        )
        _check_login(url, self._where, busy_timeout_ms)
        try:
            self.pool.open(wait=True, timeout=max(1.0, busy_timeout_ms / 1000))
        except PoolTimeout as exc:
            self.pool.close()
            raise StoreUnreachable(
                f"the database at {self._where} cannot be reached: check LOGIC_DATABASE_URL and that "
                "PostgreSQL is running"
            ) from exc
        try:
            self._bootstrap()
            if not create and self.schema_version == 0:
                raise NotInitialized(
                    f"no logic-runtime schema in the database at {self._where}: run `logic init` first"
                )
        except BaseException:
            self.close()
            raise

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.row_factory = _row_factory
        conn.adapters.register_dumper(bool, _BoolAsInteger)
        timeout = int(self.busy_timeout_ms)
        conn.execute(
            pgsql.SQL("SET lock_timeout = {}; SET application_name = {}").format(
                pgsql.Literal(f"{timeout}ms"), pgsql.Literal(application_name(self.node))
            )
        )

    @property
    def where(self) -> str:
        return self._where

    @property
    def open_connections(self) -> int:
        return int(self.pool.get_stats().get("pool_size", 0))

    def close(self) -> None:
        self._doorbell.close()
        self._stream_notifier.close()
        self.pool.close()

    # transactions ----------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        try:
            return self.pool.getconn()
        except PoolTimeout as exc:
            # No connection came: every one is in use, or the server cannot be reached (the
            # pool keeps trying to connect behind the scenes). Tell the two apart.
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
            except psycopg.Error:
                raise self._noted(
                    StoreUnreachable(f"the database at {self._where} cannot be reached: try again shortly"),
                    "database unreachable",
                ) from exc
            raise self._noted(
                StoreBusy(f"every connection to the database at {self._where} is busy: try again"),
                "database busy",
            ) from exc

    @contextmanager
    def _begin(self, statement: str) -> Iterator[PgTx]:
        local = self._local
        if getattr(local, "depth", 0):
            local.depth += 1
            try:
                yield local.tx
            finally:
                local.depth -= 1
            return
        conn = self._begun(statement)
        tx = PgTx(self, conn)
        try:
            local.depth, local.tx, local.after_commit = 1, tx, []
            try:
                yield tx
            except BaseException:
                local.depth, local.tx, local.after_commit = 0, None, []
                _rollback(conn)
                raise
            local.depth, local.tx = 0, None
            callbacks, local.after_commit = local.after_commit, []
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                _rollback(conn)
                raise self.translate(exc) from exc
        finally:
            self.pool.putconn(conn)
        if tx.wrote and self._fault is not None:
            self._fault = None  # a commit that wrote proves writes work again
        for callback in callbacks:
            _run_quietly(callback)

    def _begun(self, statement: str) -> psycopg.Connection[Any]:
        """A pooled connection with `statement` (BEGIN ...) run on it. A pooled connection may
        have died since it was last used (the server restarted): nothing ran on it yet, so
        it is dropped and one fresh connection tried before giving up."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.execute(statement)
                return conn
            except psycopg.OperationalError as exc:
                conn.close()
                self.pool.putconn(conn)  # a closed connection is discarded, not reused
                if attempt == 2:
                    raise self.translate(exc) from exc
            except psycopg.Error as exc:
                self.pool.putconn(conn)
                raise self.translate(exc) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self) -> Iterator[PgTx]:
        with self._begin("BEGIN") as tx:
            yield tx

    @contextmanager
    def snapshot(self) -> Iterator[PgTx]:
        with self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as tx:
            yield tx

    def after_commit(self, callback: Callable[[], None]) -> None:
        if getattr(self._local, "depth", 0):
            self._local.after_commit.append(callback)
        else:
            _run_quietly(callback)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if getattr(self._local, "depth", 0):
            return self._local.tx.execute(sql, params).fetchone()
        return self._read(sql, params, lambda cursor: cursor.fetchone())

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if getattr(self._local, "depth", 0):
            return cast(list[Any], self._local.tx.execute(sql, params).fetchall())
        return cast(list[Any], self._read(sql, params, lambda cursor: cursor.fetchall()))

    def _read(self, sql: str, params: Sequence[Any], fetch: Callable[[Any], Any]) -> Any:
        """One statement on its own (autocommit); a pooled connection that died since its
        last use (a server restart) is dropped and the read tried once more on a fresh one."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return fetch(conn.execute(to_pg(sql), tuple(params)))
            except psycopg.OperationalError as exc:
                conn.close()  # discarded by the pool
                if attempt == 2:
                    raise self.translate(exc) from exc
            except psycopg.Error as exc:
                raise self.translate(exc) from exc
            finally:
                self.pool.putconn(conn)
        raise AssertionError("unreachable")

    # named locks -----------------------------------------------------------

    def lock(self, name: str, *, shared: bool = False) -> None:
        """Hold `name` until this transaction ends; shared holders exclude only exclusive ones."""
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self._local.tx.execute(f"SELECT {function}(hashtext(?), hashtext(?))", lock_key(name))

    def try_lock(self, name: str) -> bool:
        """Take `name` until this transaction ends if nobody holds it; False if someone does."""
        row = self._local.tx.execute("SELECT pg_try_advisory_xact_lock(hashtext(?), hashtext(?))", lock_key(name))
        return bool(row.fetchone()[0])

    # the doorbell ----------------------------------------------------------

    def announce(self, deliveries: int) -> None:
        """Tell worker nodes that `deliveries` new ones are committed (after commit only)."""
        self.after_commit(lambda: self._doorbell.ring(deliveries))

    def listen(self, on_ring: Callable[[int | None], None], stop: threading.Event) -> threading.Thread:
        """A thread that calls on_ring(n) when another node announces n deliveries, and
        on_ring(None) after (re)connecting, when announcements may have been missed."""

        def rung(payload: str) -> None:
            node, _, count = payload.partition("\n")
            if node != self.node:  # anyone may NOTIFY: a payload is only ever a hint
                plausible = count.isascii() and count.isdigit() and len(count) <= 9
                on_ring(int(count) if plausible else None)

        # Announcements sent while we were not listening are lost: on (re)connecting, look now.
        return _listening(
            self, DOORBELL_CHANNEL, rung, lambda: on_ring(None), stop, name=application_name(self.node, "listen")
        )

    def share_stream_item(self, ref: Callable[[], str]) -> None:
        """Queue `ref()` for the next NOTIFY on STREAMS_CHANNEL (debounced, and only while some
        node listens: _StreamNotifier)."""
        self._stream_notifier.add(ref)

    def listen_stream_items(
        self, on_message: Callable[[bytes], None], on_lost: Callable[[], None], stop: threading.Event
    ) -> threading.Thread:
        """A thread calling on_message with each message of references another node NOTIFYs,
        and on_lost after a reconnect (what was sent meanwhile is gone)."""
        connects = 0

        def received(payload: str) -> None:
            sender = payload.partition("\n")[0].rpartition(" ")[0]
            if sender != self._stream_notifier.sender:
                on_message(payload.encode())

        def connected() -> None:
            nonlocal connects
            connects += 1
            if connects > 1:
                on_lost()

        name = f"{STREAMS_LISTENER} {self.node}".encode()[:63].decode("utf-8", "ignore")
        return _listening(self, STREAMS_CHANNEL, received, connected, stop, name=name)

    # faults ----------------------------------------------------------------

    def translate(self, exc: psycopg.Error) -> Exception:
        """The error to raise instead of `exc` (its message is ours, without the statement's
        parameters), or `exc` itself for a bug (bad SQL)."""
        if isinstance(exc, psycopg.errors.IntegrityError):
            # The primary message names the constraint or our trigger's reason, never a value.
            return ConstraintViolation(f"the write was refused: {exc.diag.message_primary or 'a constraint'}")
        if isinstance(
            exc, psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        ):
            return self._noted(
                StoreBusy(f"the database at {self._where} is busy with other writes: try again"), "database locked"
            )
        if isinstance(exc, psycopg.errors.DiskFull):
            return self._noted(
                DiskFull(f"the database server at {self._where} has no disk space left: free some and try again"),
                "disk full",
            )
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return self._noted(
                StoreBusy(f"the database at {self._where} took too long to answer: try again"), "database busy"
            )
        if isinstance(exc, psycopg.DataError):
            return InvalidInput("a value cannot be stored: a number out of range, or text with a NUL character")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return self._noted(
                StoreUnreachable(f"the database at {self._where} cannot be reached: try again shortly"),
                "database unreachable",
            )
        return exc

    def _noted(self, error: _Error, reason: str) -> _Error:
        self._faults_seen += 1
        self._fault = (reason, self._faults_seen)
        return error

    def fault(self) -> str | None:
        fault = self._fault
        if fault is None:
            return None
        now = time.monotonic()
        if now - self._probed_at < PROBE_INTERVAL_S:
            return fault[0]
        self._probed_at = now
        if self._probe() and self._fault == fault:
            self._fault = None
        current = self._fault
        return None if current is None else current[0]

    def _probe(self) -> bool:
        """Can a write commit now? The schema row rewritten as it is, waiting for no lock."""
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=2, application_name=application_name(self.node, "probe")
            ) as conn:
                conn.execute("SET lock_timeout = '100ms'")
                conn.execute("UPDATE logic_schema SET version = version WHERE id = 1")
        except psycopg.Error:
            return False
        return True

    # schema ----------------------------------------------------------------

    def _bootstrap(self) -> None:
        """What every migration relies on: the schema version row and the `blob` domain (so
        the store's CAST(... AS BLOB) guards read the same on both backends)."""
        with self.transaction() as tx:
            self.lock("migrate")
            tx.execute(
                "CREATE TABLE IF NOT EXISTS logic_schema "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
            tx.execute("INSERT INTO logic_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            exists = tx.execute("SELECT 1 FROM pg_type WHERE typname = 'blob'").fetchone()
            if exists is None:
                tx.execute("CREATE DOMAIN blob AS bytea")

    @property
    def schema_version(self) -> int:
        row = self.one("SELECT version FROM logic_schema WHERE id = 1")
        return 0 if row is None else int(row[0])

    def migrate(self, target: int | None = None) -> int:
        from .migrations import upgrade

        return upgrade(
            self, target, lambda tx, version: tx.execute("UPDATE logic_schema SET version = ? WHERE id = 1", (version,))
        )

    def check_schema(self) -> None:
        self.migrate()


def _check_login(url: str, where: str, busy_timeout_ms: int) -> None:
    """Connect once before the pool does, so a refused login is named as such at once (the
    pool would retry it until its timeout and report the server as unreachable)."""
    try:
        psycopg.connect(url, connect_timeout=max(1, int(busy_timeout_ms / 1000))).close()
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "authentication failed" in text or getattr(exc, "sqlstate", None) in ("28P01", "28000"):
            raise StoreError(
                f"the database at {where} refused the login: check the user and password in LOGIC_DATABASE_URL"
            ) from None
        raise StoreUnreachable(
            f"the database at {where} cannot be reached: check LOGIC_DATABASE_URL and that PostgreSQL is running"
        ) from None


def _keepalives(info: dict[str, Any]) -> dict[str, Any]:
    """TCP keepalives unless the URL says otherwise: a partitioned node's sessions (and the
    locks they hold) end in seconds, not after the kernel's two hours."""
    defaults = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
    return {k: v for k, v in defaults.items() if k not in info}


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if conn.closed:
        return
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        conn.close()  # the pool discards a closed connection


def _run_quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("an after-commit callback failed")


class _Notifier:
    """Debounced NOTIFY: what is added adds up, and one sender thread sends it at most every
    DOORBELL_EVERY_S on a connection of its own (NOTIFY inside every publish transaction
    would queue each commit on PostgreSQL's notification lock)."""

    channel = ""
    role = ""

    def __init__(self, db: PostgresDatabase):
        self.db = db
        self._lock = threading.Lock()
        self._rung = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def _wake(self) -> None:
        """After adding (under the lock): start the sender if need be, and wake it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name=f"{self.role}-notify", daemon=True)
            self._thread.start()
        self._rung.set()

    def _take(self) -> list[str]:
        """(Under the lock) the payloads to send now, forgetting them."""
        raise NotImplementedError

    def _failed(self) -> None:
        log.warning("event=%s_notify_failed", self.role)

    def _wanted(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether to send what was taken (else it is dropped)."""
        return True

    def _send_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._closed:
            self._rung.wait()
            self._rung.clear()
            with self._lock:
                payloads = self._take()
            if not payloads or self._closed:
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self.db.url,
                        autocommit=True,
                        connect_timeout=5,
                        application_name=application_name(self.db.node, self.role),
                    )
                for payload in payloads if self._wanted(conn) else ():
                    conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
            except psycopg.Error:
                self._failed()
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(DOORBELL_EVERY_S)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self._rung.set()


class _Doorbell(_Notifier):
    """How many deliveries this node committed since its last NOTIFY."""

    channel = DOORBELL_CHANNEL
    role = "doorbell"

    def __init__(self, db: PostgresDatabase):
        super().__init__(db)
        self._pending = 0

    def ring(self, deliveries: int) -> None:
        if deliveries <= 0 or self._closed:
            return
        with self._lock:
            self._pending += deliveries
            self._wake()

    def _take(self) -> list[str]:
        count, self._pending = self._pending, 0
        return [f"{self.db.node}\n{count}"] if count else []

    def _failed(self) -> None:
        log.warning("event=doorbell_failed (workers will find the work by their poll)")


class _StreamNotifier(_Notifier):
    """References to live-stream items committed here, each NOTIFY holding as many as fit,
    sent only while a node with readers LISTENs (its connection's name in pg_stat_activity,
    looked at every LISTENERS_LOOK_S): with nobody reading, a reference is not even made."""

    channel = STREAMS_CHANNEL
    role = "streams"

    def __init__(self, db: PostgresDatabase):
        super().__init__(db)
        self._refs: deque[str] = deque()
        self.sender = f"{db.node}/{secrets.token_hex(4)}"  # this process, in its messages' headers
        self._number = 0  # of the last message
        self._lost = False  # references dropped since the last message (numbers show it)
        self._someone = False  # a streams listener was connected at the last look...
        self._looked_at = float("-inf")  # ... made then (time.monotonic())

    def add(self, ref: Callable[[], str]) -> None:
        if self._closed or (not self._someone and time.monotonic() - self._looked_at < LISTENERS_LOOK_S):
            return
        with self._lock:
            if len(self._refs) >= STREAM_REFS_PENDING_MAX:  # a live view: the oldest go first
                self._refs.popleft()
                self._lost = True
            self._refs.append(ref())
            self._wake()

    def _wanted(self, conn: psycopg.Connection[Any]) -> bool:
        now = time.monotonic()
        if now - self._looked_at >= LISTENERS_LOOK_S:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE %s)",
                (STREAMS_LISTENER + " %",),  # no LIKE wildcard in the name itself
            ).fetchone()
            self._someone, self._looked_at = bool(row and row[0]), now
        return self._someone

    def _take(self) -> list[str]:
        refs, self._refs = list(self._refs), deque()
        if self._lost:
            self._number += 1  # a number nobody gets: the listeners see the gap
            self._lost = False
        payloads = []
        for group in pack(refs, NOTIFY_PAYLOAD_MAX):
            self._number += 1
            payloads.append("\n".join([f"{self.sender} {self._number}", *group]))
        return payloads


def application_name(node: str, role: str = "") -> str:
    """What pg_stat_activity shows for a connection of this node (63 bytes at most)."""
    name = f"logic-runtime {node}" + (f" {role}" if role else "")
    return name.encode("utf-8")[:63].decode("utf-8", "ignore")


def _listening(
    db: PostgresDatabase,
    channel: str,
    on_payload: Callable[[str], None],
    on_connect: Callable[[], None],
    stop: threading.Event,
    *,
    name: str,
) -> threading.Thread:
    """A thread that LISTENs on `channel` until `stop`, on a connection of its own named
    `name` (made again after a failure), calling on_connect after each (re)connect."""

    def listen() -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                with psycopg.connect(
                    db.url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name=name,
                    **_keepalives({}),
                ) as conn:
                    conn.execute(f"LISTEN {channel}")
                    backoff = 0.1
                    on_connect()
                    while not stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if stop.is_set():  # a listener that stopped delivers nothing more
                                return
                            try:
                                on_payload(note.payload)  # anyone who may connect may NOTIFY
                            except Exception:  # a payload must never end the listener
                                log.exception("event=listen_payload_failed channel=%s", channel)
            except psycopg.Error:
                if stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)

    thread = threading.Thread(target=listen, name=f"listen-{channel}", daemon=True)
    thread.start()
    return thread
