"""Support for the multi-node end-to-end test (issue 14): nodes, a partitionable network
namespace, a load generator and the full check.

- `Partition`: a network namespace joined to the host by a veth pair (host side
  10.77.N.1, inside 10.77.N.2, N free on this machine), so a node inside can be cut
  off (`down`) and healed (`up`). Unique names: two runs never collide.
- `Node`: one `logic serve --role ...` process (optionally inside the namespace), with
  its own log per start; `kill9`, `stop` and `start` again on the same address.
- `Load`: events published round-robin over the API nodes at a bounded rate; every
  202's event id is kept, every refusal counted by its cause (not accepted: not checked).
- `Database` and `full_check`: what PostgreSQL says after a fault, read with plain SQL
  (every accepted event delivered, no delivery with two runs, every cron tick once).

Everything here waits on conditions (a poll with a deadline), never a fixed sleep.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

LOGIC = [sys.executable, "-m", "runtime.cli"]
SUBNET_LOCK = Path("/tmp/logic-multinode-subnet.lock")  # two runs pick their subnets one at a time


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll until predicate() is truthy; its value. An AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(interval)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


# -- the partitionable namespace -------------------------------------------------------------


@dataclass
class Partition:
    """A network namespace on a veth pair; `down()` cuts it off, `up()` heals it."""

    name: str
    host_if: str
    inner_if: str
    host_ip: str
    inner_ip: str
    is_down: bool = False

    @classmethod
    def create(cls) -> Partition:
        tag = uuid.uuid4().hex[:8]
        SUBNET_LOCK.touch(exist_ok=True)
        with SUBNET_LOCK.open() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _ip("-4", "-o", "addr", "show").stdout
            subnet = next((n for n in range(256) if f" 10.77.{n}." not in used), None)
            if subnet is None:
                raise RuntimeError("no free 10.77.N.0/24 subnet for the partition's veth pair")
            # Interface names: at most 15 characters.
            part = cls(f"logic-mn-{tag}", f"lmh{tag}", f"lmn{tag}", f"10.77.{subnet}.1", f"10.77.{subnet}.2")
            try:
                _ip("netns", "add", part.name)
                _ip("link", "add", part.host_if, "type", "veth", "peer", "name", part.inner_if)
                _ip("link", "set", part.inner_if, "netns", part.name)
                _ip("addr", "add", f"{part.host_ip}/24", "dev", part.host_if)
                _ip("link", "set", part.host_if, "up")
                _ip("-n", part.name, "addr", "add", f"{part.inner_ip}/24", "dev", part.inner_if)
                _ip("-n", part.name, "link", "set", part.inner_if, "up")
                _ip("-n", part.name, "link", "set", "lo", "up")
            except BaseException:
                part.destroy()
                raise
        return part

    def down(self) -> None:
        _ip("link", "set", self.host_if, "down")
        self.is_down = True

    def up(self) -> None:
        _ip("link", "set", self.host_if, "up")
        self.is_down = False

    def destroy(self) -> None:
        _ip("link", "del", self.host_if, check=False)  # takes its peer with it
        _ip("netns", "del", self.name, check=False)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


# -- nodes -------------------------------------------------------------------------------------


@dataclass
class Node:
    """One `logic serve` process; `host`/`port` only for a node with the api role."""

    name: str
    roles: str
    env: dict[str, str]
    logs: Path
    host: str | None = None
    port: int = 0
    partition: Partition | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def node_id(self) -> str:
        return self.env["LOGIC_NODE_ID"]

    @property
    def log(self) -> Path:
        return self.logs / f"node-{self.name}-{self.starts}.log"

    def output(self) -> str:
        return "".join(
            (self.logs / f"node-{self.name}-{n}.log").read_text(errors="replace") for n in range(1, self.starts + 1)
        )

    def start(self, timeout: float = 60) -> None:
        """Start `logic serve`; return once it serves (/healthz) or, worker-only, once it says its roles."""
        self.starts += 1
        command = [*LOGIC, "serve", "--role", self.roles]
        if self.host is not None:
            command += ["--host", self.host, "--port", str(self.port)]
        if self.partition is not None:
            command = self.partition.exec_prefix() + command  # `ip netns exec` execs: same pid
        with self.log.open("w") as out:
            # Its own process group, so a cleanup can end it with whatever it started.
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(f"node {self.name} to come up", self._ready, timeout, interval=0.1)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"node {self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        if self.host is None:
            return "roles: " in self.log.read_text(errors="replace")
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (an orderly stop); SIGKILL past `timeout`. The exit code, None if killed."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return None

    def cleanup(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc = None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


# -- load --------------------------------------------------------------------------------------


@dataclass
class Accepted:
    event_id: str
    name: str
    node: str


class Load:
    """Publishes `name` events round-robin over `nodes` (api nodes) from `threads` threads at
    about `rate` events/s in all, until stopped. Every 202 is kept; anything else is counted."""

    def __init__(self, nodes: list[Node], token: str, name: str, *, rate: float, threads: int = 2):
        self.nodes = nodes
        self.token = token
        self.name = name
        self.rate = rate
        self.threads = threads
        self.accepted: list[Accepted] = []
        self.refused: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._turn = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.threads):
            t = threading.Thread(target=self._loop, args=(n,), name=f"load-{n}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def accepted_ids(self) -> dict[str, str]:
        """{event id: event name} of every publish answered 202 so far."""
        with self._lock:
            return {a.event_id: a.name for a in self.accepted}

    def accepted_by(self, node: str) -> int:
        with self._lock:
            return sum(1 for a in self.accepted if a.node == node)

    def _loop(self, n: int) -> None:
        interval = self.threads / self.rate  # each thread's share of the rate
        clients = {
            node.name: httpx.Client(timeout=10, headers={"Authorization": f"Bearer {self.token}"})
            for node in self.nodes
        }
        seq = 0
        try:
            while not self._stop.wait(interval):  # pacing the load, not waiting for a result
                with self._lock:
                    node = self.nodes[self._turn % len(self.nodes)]
                    self._turn += 1
                seq += 1
                publish(clients[node.name], node, self.name, f"{n}-{seq}", self)
        finally:
            for client in clients.values():
                client.close()


def publish(client: httpx.Client, node: Node, name: str, data: str, load: Load | None = None) -> str | None:
    """POST /v1/events to `node`; the event id on 202, else None (the cause counted on `load`)."""
    try:
        response = client.post(node.url + "/v1/events", json={"name": name, "data": data})
    except httpx.HTTPError as exc:  # a killed node refuses; a restarting database may time out
        if load is not None:
            with load._lock:
                load.refused[f"{node.name}: {type(exc).__name__}"] += 1
        return None
    if response.status_code != 202:
        if load is not None:
            with load._lock:
                load.refused[f"{node.name}: HTTP {response.status_code}"] += 1
        return None
    event_id = response.json()["id"]
    if load is not None:
        with load._lock:
            load.accepted.append(Accepted(event_id, name, node.name))
    return event_id


# -- the database, read by the test ----------------------------------------------------------------


class Database:
    """Plain SQL for the checks, through psycopg. A new connection per query, so a database
    restart between two polls is no matter; queries take no parameters."""

    def __init__(self, url: str):
        self.url = url

    def rows(self, sql: str) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]

    def try_rows(self, sql: str) -> list[tuple] | None:
        """rows(), or None while the database cannot be reached (it is restarting)."""
        try:
            return self.rows(sql)
        except psycopg.OperationalError:
            return None


# -- the full check ------------------------------------------------------------------------------------


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso_minute(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:00.000000Z")


@dataclass
class Expectation:
    """What the deployed functions promise: deliveries per accepted event name, and the cron
    function with its first tick (the trigger's first next_fire_at after deploy)."""

    deliveries_per_event: dict[str, int]
    tick_function: str
    first_tick: datetime
    max_attempts: int
    tick_grace_s: float = 10.0  # a boundary older than this must have fired (a restart may delay it)


@dataclass
class CheckSummary:
    accepted: int
    deliveries: int
    runs: int
    retried: int  # deliveries claimed more than once (a node died or lost its lease): ran again, recorded once
    gave_up: int
    ticks: list[str] = field(default_factory=list)

    def line(self) -> str:
        span = f"{self.ticks[0][11:16]}..{self.ticks[-1][11:16]}" if self.ticks else "none"
        return (
            f"accepted={self.accepted} deliveries={self.deliveries} runs={self.runs} "
            f"retried={self.retried} gave_up={self.gave_up} ticks={len(self.ticks)} ({span})"
        )


def expected_ticks(expect: Expectation, now: datetime) -> list[str]:
    """Every minute boundary from the first tick up to `now` less the grace."""
    last = minute_floor(now - timedelta(seconds=expect.tick_grace_s))
    ticks, at = [], expect.first_tick
    while at <= last:
        ticks.append(iso_minute(at))
        at += timedelta(minutes=1)
    return ticks


def settled(db: Database, accepted: dict[str, str], expect: Expectation) -> datetime | None:
    """The moment every accepted event's deliveries and every tick due then were seen
    finished; None if some were not."""
    now = datetime.now(UTC)
    rows = db.try_rows(
        "SELECT event_id, scheduled_at, status, target_id FROM deliveries "
        "WHERE status IN ('pending', 'running') OR scheduled_at IS NOT NULL"
    )
    if rows is None:
        return None
    for event_id, _, status, _ in rows:
        if event_id is not None and event_id in accepted and status in ("pending", "running"):
            return None
    ticks = {at: status for _, at, status, target in rows if at is not None and target == expect.tick_function}
    finished = all(ticks.get(at) in ("done", "failed") for at in expected_ticks(expect, now))
    return now if finished else None


def full_check(db: Database, accepted: dict[str, str], expect: Expectation, *, timeout: float) -> CheckSummary:
    """Wait (bounded) until everything accepted so far has finished, then check it all:

    - every accepted event is stored with one delivery per target, each `done` (or `failed`
      as given up after max_attempts claims: the at-least-once promise's "recorded as failed");
    - no delivery has two runs (by `runs.delivery_id`, and again by each run's own trigger:
      no (function, event) or (function, tick) has two run records);
    - every done function delivery has exactly one run, and every run succeeded;
    - every cron boundary from the first tick to now fired exactly once.
    """
    # Judged as of the moment settled() saw everything finished: a tick of a boundary crossed
    # since (still pending or running when read) is the next check's.
    now: datetime = wait_until(
        f"{len(accepted)} accepted events and the due ticks to be delivered",
        lambda: settled(db, accepted, expect),
        timeout,
        interval=0.25,
    )
    due = expected_ticks(expect, now)
    deliveries = db.rows(
        "SELECT id, event_id, target_kind, target_id, scheduled_at, status, attempts, last_error, run_id "
        "FROM deliveries"
    )
    events = {r[0] for r in db.rows("SELECT id FROM events")}
    runs = db.rows("SELECT id, function_id, status, record, delivery_id FROM runs")
    read_at = datetime.now(UTC)

    lost = [e for e in accepted if e not in events]
    assert not lost, f"{len(lost)} accepted events are not stored, e.g. {lost[:3]}"

    per_event: Counter[str] = Counter()
    checked = []
    for row in deliveries:
        if row[1] in accepted:
            per_event[row[1]] += 1
            checked.append(row)
        elif row[3] == expect.tick_function and row[4] in due:
            checked.append(row)
    wrong = {e: per_event[e] for e, name in accepted.items() if per_event[e] != expect.deliveries_per_event[name]}
    assert not wrong, f"accepted events without their deliveries (id: count): {dict(list(wrong.items())[:5])}"

    bad, gave_up = [], 0
    for _id, _event, _kind, _target, _at, status, attempts, error, _run in checked:
        if status == "done":
            continue
        if status == "failed" and (error or "").startswith("gave up") and attempts >= expect.max_attempts:
            gave_up += 1  # claimed max_attempts times and never finished: recorded as failed, as promised
            continue
        bad.append((_id, _event or f"tick {_at}", status, attempts, error))
    assert not bad, f"{len(bad)} deliveries not done (id, event or tick, status, attempts, error): {bad[:5]}"

    runs_by_delivery: Counter[int] = Counter(r[4] for r in runs if r[4] is not None)
    doubled = {d: n for d, n in runs_by_delivery.items() if n > 1}
    assert not doubled, f"deliveries with more than one run (delivery id: runs): {dict(list(doubled.items())[:5])}"
    by_trigger: Counter[tuple[str, str]] = Counter()
    for _id, function_id, _status, record, _delivery in runs:
        trigger = json.loads(record)["trigger"]
        by_trigger[(function_id, trigger.get("event_id") or trigger.get("scheduled_at") or "")] += 1
    doubled_runs = {k: n for k, n in by_trigger.items() if n > 1}
    assert not doubled_runs, f"one trigger recorded more than one run: {dict(list(doubled_runs.items())[:5])}"

    run_ids = {r[0] for r in runs}
    unrecorded = [r[0] for r in checked if r[5] == "done" and r[2] == "function" and r[8] not in run_ids]
    assert not unrecorded, f"{len(unrecorded)} done deliveries have no run record, e.g. {unrecorded[:5]}"
    done_ids = {r[0] for r in checked if r[5] == "done" and r[2] == "function"}
    missing = [d for d in done_ids if runs_by_delivery[d] != 1]
    assert not missing, f"{len(missing)} done deliveries without exactly one run (delivery_id), e.g. {missing[:5]}"
    failed_runs = Counter(r[2] for r in runs if r[2] != "success")
    assert not failed_runs, f"runs that did not succeed, by status: {dict(failed_runs)}"

    tick_rows = [r for r in deliveries if r[3] == expect.tick_function and r[4] is not None]
    fired = Counter(r[4] for r in tick_rows)
    twice = sorted(at for at, n in fired.items() if n > 1)
    assert not twice, f"cron ticks fired more than once: {twice}"
    missing_ticks = sorted(set(due) - set(fired))
    assert not missing_ticks, f"cron ticks that never fired: {missing_ticks} (fired: {sorted(fired)})"
    late = minute_floor(read_at)  # a boundary crossed while the rows were read may have fired
    unexpected = sorted(at for at in fired if parse_time(at) < expect.first_tick or parse_time(at) > late)
    assert not unexpected, f"ticks at times that are no boundary crossed: {unexpected}"

    return CheckSummary(
        accepted=len(accepted),
        deliveries=len(checked),
        runs=len(runs),
        retried=sum(1 for r in checked if r[6] > 1),
        gave_up=gave_up,
        ticks=sorted(fired),
    )
