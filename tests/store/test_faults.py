"""Machine faults at the store boundary: a full disk, a lock held elsewhere, a bad disk.

Each becomes one error that says what to do (DiskFull, StoreBusy, StoreError),
raised from the sqlite3 error and never quoting the statement or its
parameters; the transaction is rolled back (every row is compared before and
after); `fault()` reports the store as degraded and recovers without a
restart, after a commit that wrote or through the probe.

The full disk is injected where the store meets SQLite: every connection this
process opens is a `FullDisk` connection whose writes fail the way SQLite
fails them (so this runs without root; tests/e2e/test_disk_full.py fills a
real tmpfs). The lock is real: a second sqlite3 connection holds BEGIN
EXCLUSIVE on the file.
"""

from __future__ import annotations

import errno
import functools
import re
import sqlite3
import threading
import time

import pytest

import store.database
from store import Settings, Store, masterkey
from store.database import Database
from store.errors import DiskFull, StoreBusy, StoreError

pytestmark = pytest.mark.sqlite_only  # SQLite's faults; PostgreSQL's: tests/store/test_postgres.py

SECRET_VALUE = "fault-test-value-3e9c"
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|PRAGMA\s+user_version\s*=)", re.IGNORECASE)


def operational_error(message: str, code: int, name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode, exc.sqlite_errorname = code, name
    return exc


class FullDisk(sqlite3.Connection):
    """A connection whose writes fail while `FullDisk.at` is set: "statement" (the write
    itself fails, as when a page spills), "commit" (COMMIT fails, as when WAL frames are
    written), "rollback" (COMMIT and then ROLLBACK fail) or "open" (every statement).
    As in SQLite, a COMMIT that has nothing to write succeeds whatever the disk."""

    at: str | None = None
    error = staticmethod(lambda: operational_error("database or disk is full", 13, "SQLITE_FULL"))
    wrote = False  # since this connection's BEGIN

    def execute(self, sql: str, *args):
        at, statement, write = FullDisk.at, sql.strip().upper(), _WRITE.match(sql)
        if statement.startswith("BEGIN"):
            self.wrote = False
        if at is not None and (
            at == "open"
            or write
            and (at == "statement" or "PRAGMA" in statement)
            or statement == "COMMIT"
            and self.wrote
            or at == "rollback"
            and statement == "ROLLBACK"
        ):
            raise FullDisk.error()
        cursor = super().execute(sql, *args)
        self.wrote = self.wrote or bool(write)
        return cursor

    def executemany(self, sql: str, *args):  # always a write (batches insert with it)
        if FullDisk.at in ("open", "statement"):
            raise FullDisk.error()
        cursor = super().executemany(sql, *args)
        self.wrote = True
        return cursor


@pytest.fixture
def full_disk(monkeypatch):
    """Every connection opened from here on is a FullDisk; the disk starts healthy."""
    monkeypatch.setattr(sqlite3, "connect", functools.partial(sqlite3.connect, factory=FullDisk))
    monkeypatch.setattr(FullDisk, "at", None)
    return FullDisk


@pytest.fixture
def opened(settings: Settings, full_disk):
    Store.initialize(settings)[0].close()
    s = Store.open(settings)
    yield s
    s.close()


def _owner(s: Store) -> str:
    return s.identity.first_admin().owner


# a full disk -------------------------------------------------------------------


@pytest.mark.parametrize("at", ["statement", "commit", "rollback"])
def test_a_full_disk_is_disk_full_and_nothing_is_written(opened, full_disk, db_rows, settings, at):
    owner = _owner(opened)
    before = db_rows()
    full_disk.at = at
    with pytest.raises(DiskFull) as caught:
        opened.secrets.create(owner, "API_KEY", SECRET_VALUE)
    assert str(caught.value) == (
        f"no space left on the disk holding LOGIC_HOME ({settings.home}): free some space and try again"
    )
    assert caught.value.status == 507 and caught.value.retry_after is None
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert not opened.db.conn.in_transaction
    assert opened.fault() == "disk full"
    full_disk.at = None
    assert db_rows() == before  # nothing half-written
    opened.secrets.create(owner, "API_KEY", SECRET_VALUE)  # recovery, same Store, same process
    assert opened.secrets.reveal(owner, "API_KEY").reveal() == SECRET_VALUE
    assert opened.fault() is None


def test_the_message_never_quotes_the_statement_or_its_parameters(opened, full_disk, monkeypatch):
    # Were SQLite ever to put the statement in its message, it would still not reach ours.
    monkeypatch.setattr(
        FullDisk,
        "error",
        staticmethod(
            lambda: operational_error(
                f"database or disk is full: INSERT ... VALUES ('{SECRET_VALUE}')", 13, "SQLITE_FULL"
            )
        ),
    )
    full_disk.at = "statement"
    for write in (
        lambda: opened.secrets.create(_owner(opened), "API_KEY", SECRET_VALUE),
        lambda: opened.db.execute("INSERT INTO users (name, created_at) VALUES (?, 'now')", (SECRET_VALUE,)),
    ):
        with pytest.raises(DiskFull) as caught:
            write()
        assert SECRET_VALUE not in str(caught.value) and SECRET_VALUE not in repr(caught.value)
        assert "INSERT" not in caught.value.message


def test_an_io_error_is_disk_full_only_when_the_disk_is_out_of_space(opened, full_disk, monkeypatch, settings):
    monkeypatch.setattr(
        FullDisk, "error", staticmethod(lambda: operational_error("disk I/O error", 778, "SQLITE_IOERR_WRITE"))
    )
    full_disk.at = "commit"
    with pytest.raises(StoreError) as caught:
        opened.identity.create_user("carol")
    assert type(caught.value) is StoreError  # plenty of space here: a bad disk, said as such
    assert caught.value.message == (
        f"the database ({settings.db_path}) could not be read or written (SQLITE_IOERR_WRITE): check the disk"
    )
    assert opened.fault() == "disk I/O error"
    monkeypatch.setattr(store.database, "_disk_free", lambda _path: 4096)  # ENOSPC, as Python hides errno
    with pytest.raises(DiskFull):
        opened.identity.create_user("carol")
    full_disk.at = None
    assert "carol" not in {u.name for u in opened.identity.users()}
    opened.identity.create_user("carol")


def test_opening_on_a_full_disk_is_disk_full_not_a_traceback(settings, full_disk, monkeypatch):
    Store.initialize(settings)[0].close()
    # SQLite reports the shared-memory file it cannot grow as an I/O error.
    monkeypatch.setattr(
        FullDisk, "error", staticmethod(lambda: operational_error("disk I/O error", 4874, "SQLITE_IOERR_SHMSIZE"))
    )
    monkeypatch.setattr(store.database, "_disk_free", lambda _path: 0)
    full_disk.at = "open"
    with pytest.raises(DiskFull, match="free some space"):
        Store.open(settings)
    full_disk.at = None
    Store.open(settings).close()


def test_no_room_for_the_key_file_is_disk_full(settings, monkeypatch):
    write_key_file = masterkey.write_key_file

    def enospc(path, key, **_):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(masterkey, "write_key_file", enospc)
    with pytest.raises(DiskFull, match=re.escape(f"({settings.home}): free some space")):
        Store.initialize(settings)
    assert not settings.db_path.exists()
    monkeypatch.setattr(masterkey, "write_key_file", write_key_file)
    opened, result = Store.initialize(settings)
    opened.close()
    assert result.created


# health ------------------------------------------------------------------------


def test_fault_recovers_through_the_probe_without_any_write(opened, full_disk, monkeypatch):
    monkeypatch.setattr(store.database, "PROBE_INTERVAL_S", 0.0)
    full_disk.at = "statement"
    with pytest.raises(DiskFull):
        opened.identity.create_user("carol")
    assert opened.fault() == "disk full"  # the probe ran, and its write failed too
    assert opened.fault() == "disk full"
    full_disk.at = None
    assert opened.fault() is None  # the probe's write went through: healthy, nothing else written
    assert "carol" not in {u.name for u in opened.identity.users()}


def test_the_probe_is_rate_limited_and_an_empty_commit_proves_nothing(opened, full_disk, monkeypatch):
    monkeypatch.setattr(store.database, "PROBE_INTERVAL_S", 3600.0)
    probes = []
    real_probe = Database._probe
    monkeypatch.setattr(Database, "_probe", lambda self, reason: probes.append(reason) or real_probe(self, reason))
    full_disk.at = "commit"
    with pytest.raises(DiskFull):
        opened.identity.create_user("carol")
    assert [opened.fault() for _ in range(5)] == ["disk full"] * 5
    assert probes == ["disk full"]  # once in the interval, however often health is asked
    full_disk.at = None
    with opened.db.transaction():  # a commit that wrote nothing (a claim that found no work)
        opened.db.one("SELECT count(*) FROM users")
    assert opened.fault() == "disk full"
    opened.identity.create_user("carol")  # a commit that wrote rows
    assert opened.fault() is None
    assert probes == ["disk full"]


def test_a_healthy_store_answers_fault_without_a_statement(opened, monkeypatch):
    monkeypatch.setattr(Database, "_probe", lambda self, reason: pytest.fail("probed a healthy store"))
    assert opened.fault() is None


# a lock held by another process ------------------------------------------------------


@pytest.fixture
def busy(settings: Settings):
    """A store with a 200 ms busy timeout, and a holder that takes the write lock from outside."""
    Store.initialize(settings)[0].close()
    s = Store.open(settings.model_copy(update={"busy_timeout_ms": 200}))
    holder = sqlite3.connect(settings.db_path, isolation_level=None)
    yield s, holder
    holder.close()
    s.close()


def test_a_lock_held_elsewhere_is_store_busy_then_works_after_commit(busy, settings, monkeypatch, db_rows):
    s, holder = busy
    monkeypatch.setattr(store.database, "PROBE_INTERVAL_S", 0.0)
    owner = _owner(s)
    before = db_rows()
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    with pytest.raises(StoreBusy) as caught:
        s.secrets.create(owner, "API_KEY", SECRET_VALUE)
    assert time.monotonic() - started < 5  # the 200 ms timeout, not the default 10 s
    assert caught.value.message == f"another process holds the database ({settings.db_path}) locked: try again"
    assert (caught.value.status, caught.value.retry_after) == (503, 1)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert s.secrets.list(owner) == []  # reads go on (WAL)
    assert s.fault() == "database locked"  # the probe waits for no lock, and fails
    holder.execute("COMMIT")
    assert db_rows() == before
    assert s.fault() is None  # the probe got the lock
    s.secrets.create(owner, "API_KEY", SECRET_VALUE)
    assert s.secrets.reveal(owner, "API_KEY").reveal() == SECRET_VALUE


def test_this_processs_writers_wait_no_longer_than_the_busy_timeout(busy, settings):
    s, _holder = busy
    inside, release = threading.Event(), threading.Event()

    def long_writer():
        with s.db.transaction() as conn:
            conn.execute("INSERT INTO users (name, created_at) VALUES ('long', 'now')")
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=long_writer)
    thread.start()
    try:
        assert inside.wait(10)
        started = time.monotonic()
        with pytest.raises(StoreBusy, match=re.escape(f"the database ({settings.db_path}) is busy")):
            s.identity.create_user("queued")
        assert time.monotonic() - started < 5
    finally:
        release.set()
        thread.join(10)
    s.identity.create_user("queued")
    assert {u.name for u in s.identity.users()} >= {"long", "queued"}
