"""The floor of a warm run: one IPC round trip plus one SQLite commit, measured here.

The echo child is forked once and answers each frame with one frame over an
AF_UNIX stream socket, in the workers' own framing (`runtime.workers.protocol`),
with messages the size of a real run request and "done" reply; both sides spin
before sleeping for as long as the workers do (`worker_spin_us`). The commit is
one BEGIN IMMEDIATE / INSERT of a run-record-sized row / COMMIT, in a WAL
database with the store's pragmas (synchronous=NORMAL).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path

from runtime.workers import protocol
from store import Settings

from .lab import context

_REQUEST = {
    "op": "run",
    "version_key": "f:1",
    "filename": "warm.py",
    "entry": "main",
    "declared_secrets": ["API_KEY"],
    "context": context("{}"),
    "timeout_s": 30.0,
    "memory_mb": 256,
    "limits": {"log_max_bytes": 65536, "result_max_bytes": 262144, "events_max": 100, "event_data_max_bytes": 102400},
}
_SPIN_S = Settings(master_key=None).worker_spin_us / 1e6
_REPLY = {"op": "done", "status": "success", "result_json": "40", "error": None, "cached": True}
_RECORD = json.dumps(
    {
        "id": "x" * 32,
        "function_id": "y" * 32,
        "function_version": 1,
        "trigger": {"type": "event", "event_id": "bench", "scheduled_at": None},
        "status": "success",
        "started_at": "2026-01-01T00:00:00.000000Z",
        "finished_at": "2026-01-01T00:00:00.000300Z",
        "duration_ms": 0.2,
        "logs": [],
        "result": 40,
        "error": None,
        "secrets_accessed": ["API_KEY"],
        "events_published": [],
    }
)


class EchoChild:
    """A forked process that answers every frame with a "done" frame."""

    def __init__(self):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 0
            try:
                parent.close()
                reader = protocol.FrameReader(child, 1 << 20)
                reply = protocol.encode(_REPLY)
                while reader.read(spin_s=_SPIN_S) is not None:
                    child.sendall(reply)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child.close()
        self.sock = parent
        self.reader = protocol.FrameReader(parent, 1 << 20)
        self.request = protocol.encode(_REQUEST)

    def round_trip(self) -> None:
        self.sock.sendall(self.request)
        if self.reader.read(time.monotonic() + 10, _SPIN_S) is None:
            raise RuntimeError("the echo child went away")

    def close(self) -> None:
        self.sock.close()
        os.waitpid(self.pid, 0)


class Commit:
    """One run-record-sized INSERT committed in a WAL database, as the store does it."""

    def __init__(self, directory: Path):
        self.conn = sqlite3.connect(directory / "floor.db", isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, function_id TEXT, started_at TEXT, record TEXT)")
        self.conn.execute("CREATE INDEX runs_fn ON runs (function_id, started_at)")

    def commit(self) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (uuid.uuid4().hex, "f", "2026", _RECORD))
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
