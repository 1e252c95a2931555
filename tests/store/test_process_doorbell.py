"""The doorbell between processes on one SQLite file: UNIX datagram sockets in
<database>-doorbell/, rung once per committed transaction that published (two
Database objects stand for two processes: each has its own doorbell)."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from store.database import Database
from tests.support import BUSY_TIMEOUT_MS


@contextmanager
def listening(db: Database) -> Iterator[queue.Queue]:
    rings: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = db.listen(rings.put, stop)
    assert thread is not None
    try:
        yield rings
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def db(tmp_path) -> Iterator[Database]:
    database = Database(tmp_path / "t.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    yield database
    database.close()


@pytest.fixture
def other(db) -> Iterator[Database]:
    database = Database(db.path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    yield database
    database.close()


def publish(db: Database, *deliveries: int) -> None:
    with db.transaction():
        for count in deliveries:
            db.announce(count)


def test_a_listening_process_hears_each_committed_publish_of_another(db, other, tmp_path):
    """The doorbell between processes on one file (two Database objects here, as two
    processes have): a committed transaction that announced deliveries rings once, however
    many; a rolled-back one rings nothing; a socket left by a dead process is removed."""
    rings: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = db.listen(rings.put, stop)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a killed process's socket, still on disk
    dead.bind(str(tmp_path / "t.db-doorbell" / "1-dead.sock"))
    dead.close()
    try:
        with other.transaction():
            other.announce(2)
            other.announce(3)
        assert rings.get(timeout=10) == 0  # 0: new work, how much is for the claim to find
        with pytest.raises(RuntimeError), other.transaction():
            other.announce(7)
            raise RuntimeError("rolled back")
        with other.transaction():
            other.announce(1)
        assert rings.get(timeout=10) == 0  # one datagram queue, in order: a ring of the
        assert rings.empty()  # rolled-back transaction would have come before this one
        assert not (tmp_path / "t.db-doorbell" / "1-dead.sock").exists()
        with db.transaction():
            db.announce(4)  # its own publishes ring in process (the event bus), not here
        with other.transaction():
            other.announce(1)
        assert rings.get(timeout=10) == 0
        with pytest.raises(queue.Empty):  # three rings were due, and no fourth comes
            rings.get(timeout=0.3)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert list((tmp_path / "t.db-doorbell").iterdir()) == []  # its socket went with it
    assert (tmp_path / "t.db-doorbell").stat().st_mode & 0o777 == 0o700


def test_a_home_deeper_than_a_socket_path_may_be_still_rings(tmp_path):
    """UNIX socket paths hold 108 bytes; both sides go through a descriptor of the folder."""
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    deep.mkdir(parents=True)
    assert len(str(deep / "logic.db-doorbell" / "1234567-abcdef01.sock")) > 108
    db = Database(deep / "logic.db", create=True, busy_timeout_ms=BUSY_TIMEOUT_MS)
    other = Database(deep / "logic.db", busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        with listening(db) as rings:
            publish(other, 1)
            assert rings.get(timeout=10) == 0
    finally:
        other.close()
        db.close()


def test_a_strangers_datagrams_are_hints_and_the_listener_goes_on(db, other):
    """Threat: anyone who may write the folder sends junk (empty, binary, long). Each is at
    most a look at the queue (the claim decides what there is); the listener stays up."""
    with listening(db) as rings:
        (name,) = [p.name for p in (db.path.parent / "t.db-doorbell").iterdir()]
        stranger = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for junk in (b"", b"\xff\xfe" * 8, b"9" * 4000, b"-1"):
            stranger.sendto(junk, str(db.path.parent / "t.db-doorbell" / name))
        stranger.close()
        assert [rings.get(timeout=10) for _ in range(4)] == [0, 0, 0, 0]
        publish(other, 1)
        assert rings.get(timeout=10) == 0


def test_nobody_listening_costs_a_publish_no_socket(db, other):
    """Without a listener there is no folder to list, and nothing is sent or made."""
    publish(other, 3)
    assert not (db.path.parent / "t.db-doorbell").exists()
    assert other._doorbell._sender is None
