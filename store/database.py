"""The SQLite database: connections, pragmas, transactions, migrations, faults.

One file in WAL mode with a busy timeout and foreign keys on, so several
processes may share it (the server, a CLI command, a later worker host).
Each thread gets its own connection; writes happen inside `transaction()`,
which takes the write lock up front (BEGIN IMMEDIATE) so two writers queue
instead of failing half-way.

Machine faults are translated here, where statements run, into errors that
say what to do: a full disk (SQLITE_FULL, or an I/O error while the disk has
next to no space left) is `DiskFull`, a lock held past the busy timeout
(SQLITE_BUSY, or this process's own writers queued that long) is `StoreBusy`,
any other I/O error a `StoreError`. A failed transaction is rolled back, so
nothing is half-written. `fault()` tells the health check why writes fail:
the last failure sets it, the next commit that wrote something clears it,
and while it is set a cheap probe (a one-page write on a fresh connection
that waits for no lock) runs at most every PROBE_INTERVAL_S, so it recovers
without a restart even when nobody writes.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlite_utils

from .backend import Dialect
from .errors import DiskFull, NotInitialized, StoreBusy, StoreError
from .migrations import upgrade
from .process_doorbell import BatchedBell, ProcessDoorbell

# An I/O error while the disk holding the database has less than this free is a full
# disk (SQLite reports ENOSPC on its shared-memory file as SQLITE_IOERR_SHMSIZE, and
# Python does not expose errno); and a full disk is not called healthy again below it.
DISK_FREE_MIN_BYTES = 256 * 1024
PROBE_INTERVAL_S = 1.0  # the health probe's write, at most this often while writes fail

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13

_Error = TypeVar("_Error", bound=StoreError)


class Database:
    """The Backend (backend.py) on one SQLite file."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path | str, *, busy_timeout_ms: int, create: bool = False):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        if not create and not self.path.exists():
            raise NotInitialized(f"no database at {self.path}: run `logic init` first")
        self._local = threading.local()
        self._all: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._fault: tuple[str, int] | None = None  # (reason, serial number) of the last write failure
        self._faults_seen = 0
        self._probed_at = float("-inf")
        self._holder_waits = False  # the thread holding _write_lock waits in BEGIN IMMEDIATE
        self._doorbell = ProcessDoorbell(Path(f"{self.path}-doorbell"))
        self._stream_bell = ProcessDoorbell(Path(f"{self.path}-streams"))
        self._stream_sender = BatchedBell(self._stream_bell)
        if create and not self.path.exists():
            # Only ciphertext inside, but names and audit are nobody else's business.
            with space_on_disk(self.path.parent):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            conn = self.conn  # opens, sets WAL
            sqlite_utils.Database(conn).enable_wal()
        except StoreError:  # a full disk, a lock (translated in .conn)
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            # A file that is not SQLite (or not readable) is a clear error, not a traceback.
            self.close()
            self._raise_fault(exc)
            raise StoreError(f"cannot open the database at {self.path}: {exc}") from exc

    # connections -----------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so no
            # library can commit our transaction half-way.
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_ms / 1000
                )
            except sqlite3.OperationalError as exc:
                self._raise_fault(exc)
                raise
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL survives kill -9
            except sqlite3.OperationalError as exc:
                _close_quietly(conn)
                self._raise_fault(exc)
                raise
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
        self._doorbell.close()
        self._stream_sender.close()
        self._stream_bell.close()
        with self._lock:
            for _thread, conn in self._all.values():
                _close_quietly(conn)
            self._all.clear()
        self._local = threading.local()

    # transactions ----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested calls join the outer transaction.

        Raises DiskFull or StoreBusy (see the module docstring); whatever fails, the
        transaction is rolled back."""
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
        # The queue is bounded by the same timeout: a thread does not wait behind a
        # writer that is itself stuck on another process's lock.
        if not self._write_lock.acquire(timeout=self.busy_timeout_ms / 1000):
            if self._holder_waits:  # the writer ahead of us waits for another process's lock
                raise self._busy()
            raise self._noted(
                StoreBusy(f"the database ({self.path}) is busy with other writes: try again"), "database locked"
            )
        try:
            self._holder_waits = True
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                self._raise_fault(exc)
                raise
            finally:
                self._holder_waits = False
            changes = conn.total_changes
            self._local.depth = 1
            self._local.after_commit = []
            self._local.announced = False  # a rolled-back transaction's ring is not sent
            try:
                yield conn
            except BaseException as exc:
                self._local.depth = 0
                self._local.after_commit = []
                self._rollback(conn)  # SQLite may already have rolled back (e.g. disk full)
                if isinstance(exc, sqlite3.OperationalError):
                    self._raise_fault(exc)
                raise
            self._local.depth = 0
            callbacks, self._local.after_commit = self._local.after_commit, []
            try:
                conn.execute("COMMIT")
            except BaseException as exc:
                # A failed COMMIT leaves the transaction open; close it, or every later
                # BEGIN on this connection fails.
                self._rollback(conn)
                if isinstance(exc, sqlite3.OperationalError):
                    self._raise_fault(exc)
                raise
            # A commit that wrote rows proves writes work again; an empty one (a claim
            # that found nothing) proves nothing, as it writes nothing to the disk.
            if self._fault is not None and conn.total_changes != changes:
                self._fault = None
        finally:
            self._write_lock.release()
        for callback in callbacks:
            _run_quietly(callback)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A deferred read transaction: one consistent view, no write lock taken (inside a
        transaction, that transaction's view)."""
        conn = self.conn
        if self._local.depth or conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def lock(self, name: str, *, shared: bool = False) -> None:
        """Nothing to take: BEGIN IMMEDIATE already excludes every other writer."""

    def try_lock(self, name: str) -> bool:
        return True

    def announce(self, deliveries: int) -> None:
        """Ring the processes listening on this file once the transaction commits (one ring
        per transaction, however many publishes it holds)."""
        if deliveries <= 0 or self._local.__dict__.get("announced"):
            return
        self._local.announced = True
        self.after_commit(self._ring_announced)

    def _ring_announced(self) -> None:
        self._local.announced = False
        self._doorbell.ring()

    def listen(self, on_ring: Callable[[int | None], None], stop: threading.Event) -> threading.Thread | None:
        """A thread calling on_ring(0) when another process on this file commits deliveries
        (`logic serve --role api` or a CLI command beside a delivering process:
        process_doorbell.py); None, and the poll alone, if its socket cannot be made."""
        return self._doorbell.listen(lambda _message: on_ring(0), stop)  # how many is for the claim to find

    def share_stream_item(self, ref: Callable[[], str]) -> None:
        """Send the reference `ref()` (made only if someone listens) to the other processes on
        this file with live stream readers, batched (process_doorbell.BatchedBell)."""
        if self._stream_bell.anyone_listening():
            self._stream_sender.send(ref())

    def listen_stream_items(
        self, on_message: Callable[[bytes], None], on_lost: Callable[[], None], stop: threading.Event
    ) -> threading.Thread | None:
        """A thread calling on_message with each message of references another process sends,
        until `stop` (a lost one shows as a gap in their numbers: on_lost is never called here)."""
        return self._stream_bell.listen(on_message, stop)

    @property
    def where(self) -> str:
        return str(self.path)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this thread's transaction has committed (never if it rolls
        back); at once outside a transaction. For telling others what is now durable (a live
        stream), so nobody hears of a write that did not happen. Callbacks must be quick;
        one that raises is logged and the others still run."""
        if getattr(self._local, "depth", 0):
            self._local.after_commit.append(callback)
        else:
            _run_quietly(callback)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # A connection that cannot even roll back is not used again: closing it rolls
            # back, and this thread's next statement opens a fresh one.
            with self._lock:
                self._all.pop(id(conn), None)
            _close_quietly(conn)
            self._local.conn = None

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            self._raise_fault(exc)
            raise

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        try:
            return cast("sqlite3.Row | None", self.conn.execute(sql, params).fetchone())
        except sqlite3.OperationalError as exc:
            self._raise_fault(exc)
            raise

    def all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            self._raise_fault(exc)
            raise

    # faults ----------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error) -> StoreError | None:
        """The error to raise for a machine fault, or None for anything else.

        Its message is ours alone: nothing of the statement or its parameters."""
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(exc)
        if primary == _SQLITE_FULL or (primary is None and "database or disk is full" in text):
            return self._disk_full()
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or (primary is None and "is locked" in text):
            return self._busy()
        if primary == _SQLITE_IOERR or (primary is None and "disk I/O error" in text):
            if _disk_free(self.path.parent) < DISK_FREE_MIN_BYTES:
                return self._disk_full()
            name = getattr(exc, "sqlite_errorname", None) or "SQLITE_IOERR"
            return self._noted(
                StoreError(f"the database ({self.path}) could not be read or written ({name}): check the disk"),
                "disk I/O error",
            )
        return None

    def _raise_fault(self, exc: sqlite3.Error) -> None:
        """Raise the translation of a machine fault (from exc); return for anything else."""
        fault = self._translate(exc)
        if fault is not None:
            raise fault from exc

    def _busy(self) -> StoreBusy:
        return self._noted(
            StoreBusy(f"another process holds the database ({self.path}) locked: try again"), "database locked"
        )

    def _disk_full(self) -> DiskFull:
        return self._noted(disk_full(self.path.parent), "disk full")

    def _noted(self, error: _Error, reason: str) -> _Error:
        self._faults_seen += 1
        self._fault = (reason, self._faults_seen)
        return error

    def fault(self) -> str | None:
        """Why writes fail now ("disk full", "database locked", "disk I/O error"), or None.

        Cheap while writes work (no statement runs); while they fail, the probe runs at
        most every PROBE_INTERVAL_S and clears the fault when it succeeds."""
        fault = self._fault
        if fault is None:
            return None
        now = time.monotonic()
        if now - self._probed_at < PROBE_INTERVAL_S:
            return fault[0]
        self._probed_at = now
        if self._probe(fault[0]) and self._fault == fault:  # no newer failure meanwhile
            self._fault = None
        current = self._fault
        return None if current is None else current[0]

    def _probe(self, reason: str) -> bool:
        """Can a write commit now? One page (the header's user_version, rewritten as it is)
        on a connection of its own that waits for no lock."""
        if reason == "disk full" and _disk_free(self.path.parent) < DISK_FREE_MIN_BYTES:
            return False  # a page may still fit into the WAL; a real write would not
        if not self._write_lock.acquire(blocking=False):
            return False  # a write of ours is under way: its outcome will tell
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            try:
                conn.execute("BEGIN IMMEDIATE")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute(f"PRAGMA user_version = {version}")
                conn.execute("COMMIT")
            finally:
                _close_quietly(conn)  # closing rolls back whatever did not commit
        except sqlite3.Error:
            return False
        finally:
            self._write_lock.release()
        return True

    # schema ----------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        row = cast(sqlite3.Row, self.one("PRAGMA user_version"))  # a PRAGMA always returns its row
        return cast(int, row[0])

    def migrate(self, target: int | None = None) -> int:
        """Apply every migration after the current version, each in its own transaction."""
        return upgrade(self, target, lambda conn, version: conn.execute(f"PRAGMA user_version = {int(version)}"))

    def check_schema(self) -> None:
        """Refuse a database this code does not understand; bring an older one up to date."""
        self.migrate()


def disk_full(home: Path) -> DiskFull:
    """The error for a full disk under `home` (here, and for the key files in store.py)."""
    return DiskFull(f"no space left on the disk holding LOGIC_HOME ({home}): free some space and try again")


@contextmanager
def space_on_disk(home: Path) -> Iterator[None]:
    """Turn ENOSPC from plain file writes under `home` into DiskFull."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise disk_full(home) from exc


def _disk_free(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return DISK_FREE_MIN_BYTES  # unknown: do not call the disk full on a guess


log = logging.getLogger("logic.store")


def _run_quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a listener's bug must not turn a committed write into an error
        log.exception("an after-commit callback failed")


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass
