"""Machine faults through the interfaces: the real CLI and a real `logic serve`.

A full disk is a real one where the test may mount it (root: a 1.5 MB tmpfs as
LOGIC_HOME, filled with a file, then freed), and an injected one everywhere
(every SQLite connection of this process fails its writes as SQLite does on
ENOSPC), so the same answers are checked without root. A lock is real: a
second sqlite3 connection holds BEGIN EXCLUSIVE on the database file.

What each must show: the CLI prints one `Error: ...` line saying what to do
and exits 1; the API answers 507, or 503 with Retry-After, as `{"error": ...}`;
/healthz reports the store as degraded while writes fail; nothing is
half-written; once the disk has room or the lock is gone, the same process
works again without a restart.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import store.database
from runtime.http.app import create_app
from runtime.service import Service
from store import Settings, Store

LOGIC = [sys.executable, "-m", "runtime.cli"]
BIG = "v" * 60_000  # a value that needs many new pages: more than a nearly full disk has
DEGRADED = {"ok": False, "store": "degraded", "reason": "disk full"}


def disk_full_message(home: Path) -> str:
    return f"no space left on the disk holding LOGIC_HOME ({home}): free some space and try again"


def busy_message(home: Path) -> str:
    return f"another process holds the database ({home / 'logic.db'}) locked: try again"


def environment(home: Path, **settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env.update({"LOGIC_HOME": str(home), **{f"LOGIC_{k.upper()}": v for k, v in settings.items()}})
    return env


def logic(env: dict, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LOGIC, *args], env=env, input=input, capture_output=True, text=True, timeout=60)


def assert_one_error_line(result, message: str) -> None:
    """`result`: a subprocess's (returncode) or click's CliRunner's (exit_code)."""
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert (code, result.stderr.splitlines()) == (1, [f"Error: {message}"]), result.stderr


def names(env: dict) -> list[str]:
    listed = logic(env, "secrets", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [s["name"] for s in json.loads(listed.stdout)]


def intact(home: Path, expected: dict[str, str]) -> None:
    """The database passes SQLite's integrity check and holds exactly these secrets."""
    conn = sqlite3.connect(home / "logic.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    opened = Store.open(Settings(home=home))
    try:
        owner = opened.identity.first_admin().owner
        assert {s.name for s in opened.secrets.list(owner)} == set(expected)
        for name, value in expected.items():
            assert opened.secrets.reveal(owner, name).reveal() == value
    finally:
        opened.close()


# a real full disk (root) ----------------------------------------------------------


class SmallDisk:
    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self, leave: int = 0) -> None:
        """Fill the disk to ENOSPC, then give back `leave` bytes."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))
        assert shutil.disk_usage(self.path).free <= leave + 4096

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs, mounted for this test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a tmpfs (the injected one runs anyway)")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount here to make a small disk")
    point = tmp_path / "small-disk"
    point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1500k,mode=0700", "tmpfs", str(point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield SmallDisk(point)
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_the_cli_on_a_full_disk_says_so_and_works_once_there_is_room(small_disk):
    home = small_disk.path / "home"
    env = environment(home)
    small_disk.fill()
    assert_one_error_line(logic(env, "init"), disk_full_message(home))  # not even the key file fits
    small_disk.free()
    assert logic(env, "init").returncode == 0
    assert logic(env, "secrets", "create", "KEPT", input="kept-value").returncode == 0
    # No room at all: SQLite cannot even map its shared memory (an I/O error, ENOSPC).
    # A little room: the database opens, and the write fails (SQLITE_FULL).
    for leave in (0, 40 * 1024):
        small_disk.fill(leave)
        assert_one_error_line(logic(env, "secrets", "create", "NEW", input=BIG), disk_full_message(home))
        small_disk.free()
    assert names(env) == ["KEPT"]  # nothing half-written
    assert logic(env, "secrets", "create", "NEW", input=BIG).returncode == 0
    intact(home, {"KEPT": "kept-value", "NEW": BIG})


def test_the_server_on_a_full_disk_answers_507_degrades_and_recovers(small_disk, make_server, wait_for):
    home = small_disk.path / "home"
    server = make_server(home=str(home))  # LOGIC_HOME on the small disk
    server.home.mkdir(parents=True, exist_ok=True)  # the server's log stays off the small disk
    server.start()
    with server.client() as api:
        assert api.post("/v1/secrets", json={"name": "KEPT", "value": "kept-value"}).status_code == 201
        small_disk.fill()
        refused = api.post("/v1/secrets", json={"name": "NEW", "value": BIG})
        assert (refused.status_code, refused.json()["error"]) == (507, disk_full_message(home))
        health = httpx.get(server.url + "/healthz")
        assert (health.status_code, health.json()) == (503, DEGRADED)
        listed = api.get("/v1/secrets")  # reads go on
        assert [s["name"] for s in listed.json()["secrets"]] == ["KEPT"]
        small_disk.free()
        # No write needed: the health probe notices within about a second.
        wait_for(lambda: httpx.get(server.url + "/healthz").status_code == 200)
        assert httpx.get(server.url + "/healthz").json() == {"ok": True}
        assert api.post("/v1/secrets", json={"name": "NEW", "value": BIG}).status_code == 201
    assert server.stop() == 0
    intact(home, {"KEPT": "kept-value", "NEW": BIG})


# an injected full disk (no root) -------------------------------------------------------

_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|PRAGMA\s+user_version\s*=)", re.IGNORECASE)


class FullDisk(sqlite3.Connection):
    """Writes fail with SQLITE_FULL while `FullDisk.full` is set (a simpler twin of
    tests/store/test_faults.py's, which fails COMMIT and ROLLBACK too)."""

    full = False

    def execute(self, sql: str, *args):
        if FullDisk.full and _WRITE.match(sql):
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode, exc.sqlite_errorname = 13, "SQLITE_FULL"
            raise exc
        return super().execute(sql, *args)


@pytest.fixture
def full_disk(monkeypatch):
    monkeypatch.setattr(sqlite3, "connect", functools.partial(sqlite3.connect, factory=FullDisk))
    monkeypatch.setattr(FullDisk, "full", False)
    monkeypatch.setattr(store.database, "PROBE_INTERVAL_S", 0.0)  # probe on every health check
    return FullDisk


def test_the_api_on_an_injected_full_disk(settings, full_disk):
    token = Store.initialize(settings)[1].token
    service = Service.open(settings)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(create_app(service)) as fast, TestClient(create_app(service, publish_fast_path=False)) as plain:
            assert fast.post("/v1/secrets", headers=headers, json={"name": "KEPT", "value": "kept"}).status_code == 201
            full_disk.full = True
            message = disk_full_message(settings.home)
            expected = (507, {"error": message, "error_description": message})
            for client in (fast, plain):
                for method, url, body in (
                    ("POST", "/v1/secrets", {"name": "NEW", "value": "new"}),
                    ("PUT", "/v1/secrets/KEPT", {"value": "changed"}),
                    ("POST", "/v1/events", {"name": "sensor-test", "data": "1"}),
                    ("POST", "/v1/logic/functions", {"name": "f", "source": "def main(event):\n    return 1\n"}),
                ):
                    response = client.request(method, url, headers=headers, json=body)
                    assert (response.status_code, response.json()) == expected, (method, url)
                    assert "retry-after" not in response.headers
            health = fast.get("/healthz")
            assert (health.status_code, health.json()) == (503, DEGRADED)
            assert [s["name"] for s in fast.get("/v1/secrets", headers=headers).json()["secrets"]] == ["KEPT"]
            full_disk.full = False
            health = fast.get("/healthz")  # the probe's write goes through: no restart, no other write
            assert (health.status_code, health.json()) == (200, {"ok": True})
            assert fast.post("/v1/secrets", headers=headers, json={"name": "NEW", "value": "new"}).status_code == 201
            assert fast.post("/v1/events", headers=headers, json={"name": "sensor-test"}).status_code == 202
        owner = service.actor().owner
        assert service.store.secrets.reveal(owner, "KEPT").reveal() == "kept"  # the PUT changed nothing
        assert service.store.fault() is None
    finally:
        service.close()


def test_the_cli_on_an_injected_full_disk(cli, settings, full_disk):
    assert cli("init").exit_code == 0
    assert cli("secrets", "create", "KEPT", input="kept").exit_code == 0
    full_disk.full = True
    for args in (("secrets", "create", "NEW"), ("secrets", "update", "KEPT"), ("users", "create", "carol")):
        assert_one_error_line(cli(*args, input="new"), disk_full_message(settings.home))
    full_disk.full = False
    assert cli("secrets", "create", "NEW", input="new").exit_code == 0
    assert cli("users", "create", "carol").exit_code == 0
    listed = cli("secrets", "list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["KEPT", "NEW"]


# a lock held by another process ------------------------------------------------------


def hold_lock(db_path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_the_cli_while_another_process_holds_the_lock(tmp_path):
    home = tmp_path / "home"
    env = environment(home, busy_timeout_ms="200")
    assert logic(env, "init").returncode == 0
    holder = hold_lock(home / "logic.db")
    try:
        started = time.monotonic()
        assert_one_error_line(logic(env, "secrets", "create", "NEW", input="new"), busy_message(home))
        assert time.monotonic() - started < 8  # LOGIC_BUSY_TIMEOUT_MS, not the default 10 s
        assert names(env) == []  # reads go on (WAL)
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert logic(env, "secrets", "create", "NEW", input="new").returncode == 0
    assert names(env) == ["NEW"]


def test_the_server_while_another_process_holds_the_lock(make_server, wait_for):
    server = make_server(busy_timeout_ms=200)
    server.start()
    holder = hold_lock(server.home / "logic.db")
    try:
        with server.client() as api:
            for url, body in (
                ("/v1/secrets", {"name": "NEW", "value": "new"}),
                ("/v1/events", {"name": "sensor-test", "data": "1"}),
            ):  # the fast path
                response = api.post(url, json=body)
                assert response.status_code == 503, response.text
                assert response.json()["error"] == busy_message(server.home)
                assert response.headers["retry-after"] == "1"
            health = httpx.get(server.url + "/healthz")
            assert (health.status_code, health.json()) == (503, {**DEGRADED, "reason": "database locked"})
            assert api.get("/v1/secrets").json() == {"secrets": []}
            holder.execute("COMMIT")
            wait_for(lambda: httpx.get(server.url + "/healthz").status_code == 200)
            assert api.post("/v1/secrets", json={"name": "NEW", "value": "new"}).status_code == 201
            assert api.post("/v1/events", json={"name": "sensor-test"}).status_code == 202
    finally:
        if holder.in_transaction:
            holder.execute("COMMIT")
        holder.close()
    assert server.stop(signal.SIGTERM) == 0
