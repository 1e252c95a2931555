"""The SQLite database: connections, pragmas, transactions, migrations.

One file in WAL mode with a busy timeout and foreign keys on, so several
processes may share it (the server, a CLI command, a later worker host).
Each thread gets its own connection; writes happen inside `transaction()`,
which takes the write lock up front (BEGIN IMMEDIATE) so two writers queue
instead of failing half-way.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from .errors import NotInitialized, SchemaTooNew, StoreError
from .migrations import MIGRATIONS


class Database:
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000, create: bool = False):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        if not create and not self.path.exists():
            raise NotInitialized(f"no database at {self.path}: run `logic init` first")
        self._local = threading.local()
        self._all: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        if create and not self.path.exists():
            # Only ciphertext inside, but names and audit are nobody else's business.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            conn = self.conn  # opens, sets WAL
            sqlite_utils.Database(conn).enable_wal()
        except sqlite3.DatabaseError as exc:
            # A file that is not SQLite (or not readable) is a clear error, not a traceback.
            self.close()
            raise StoreError(f"cannot open the database at {self.path}: {exc}") from exc

    # connections -----------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so no
            # library can commit our transaction half-way.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL survives kill -9
            self._local.conn = conn
            self._local.depth = 0
            with self._lock:
                # Server threads come and go (the API's thread pool retires idle ones):
                # close the connections of threads that ended, or file handles pile up.
                for other, (thread, old) in list(self._all.items()):
                    if not thread.is_alive():
                        _close_quietly(old)
                        del self._all[other]
                self._all[id(conn)] = (threading.current_thread(), conn)
        return conn

    @property
    def open_connections(self) -> int:
        return len(self._all)

    def close(self) -> None:
        with self._lock:
            for _thread, conn in self._all.values():
                _close_quietly(conn)
            self._all.clear()
        self._local = threading.local()

    # transactions ----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested calls join the outer transaction."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        # Threads of this process queue on a lock; SQLite's busy handler (for other
        # processes) sleeps with backoff instead, which wastes most of a busy second.
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            self._local.depth = 1
            try:
                yield conn
            except BaseException:
                self._local.depth = 0
                if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    conn.execute("ROLLBACK")
                raise
            self._local.depth = 0
            try:
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT leaves the transaction open; close it, or every later
                # BEGIN on this connection fails.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    # schema ----------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, target: int | None = None) -> int:
        """Apply every migration after the current version, each in its own transaction."""
        latest = len(MIGRATIONS)
        target = latest if target is None else target
        if not 0 <= target <= latest:
            raise ValueError(f"no schema version {target}: versions are 0..{latest}")
        current = self.schema_version
        self._refuse_newer(current, latest)
        for version in range(current + 1, target + 1):
            with self.transaction() as conn:
                # Another process may have migrated while we waited for the write lock.
                now = self.schema_version
                self._refuse_newer(now, latest)
                if now >= version:
                    continue
                MIGRATIONS[version - 1](sqlite_utils.Database(conn))
                conn.execute(f"PRAGMA user_version = {version}")
        return self.schema_version

    def _refuse_newer(self, current: int, latest: int) -> None:
        if current > latest:
            raise SchemaTooNew(
                f"the database at {self.path} has schema version {current}, newer than this "
                f"logic-runtime supports ({latest}): upgrade logic-runtime"
            )

    def check_schema(self) -> None:
        """Refuse a database this code does not understand; bring an older one up to date."""
        self.migrate()


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass
