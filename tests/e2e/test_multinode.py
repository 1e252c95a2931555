"""Three `logic serve` nodes on one PostgreSQL, through faults (issue 14, "Multi-node end-to-end").

A (api, scheduler) on 127.0.0.2 and C (all roles) on 127.0.0.4 take events round-robin;
B (worker) runs inside a network namespace on a veth pair, so it can be partitioned. The
module starts its own cluster, listening on 127.0.0.1 and the veth's host side (it
restarts PostgreSQL as a fault, so it must not share the suite's). Faults, one at a time,
each followed by the full check (multinode.full_check): kill -9 of B, kill -9 of A right
after a minute boundary (its scheduler may be mid-tick), a PostgreSQL restart right after
the next boundary, and B partitioned past its lease while it holds runs, then healed.

Root only (namespaces, veth pairs, PostgreSQL run as `postgres`): skipped otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.multinode import (
    LOGIC,
    Database,
    Expectation,
    Load,
    Node,
    Partition,
    full_check,
    minute_floor,
    parse_time,
    publish,
    wait_until,
)
from tests.pg_cluster import free_port, pg_bin, start_cluster

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, veth pairs, PostgreSQL as postgres"),
    pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (apt-get install -y postgresql)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's `ip` for the namespace"),
]

LEASE_S = 3.0  # LOGIC_DELIVERY_LEASE_S: short, so a dead node's claims come back in seconds
SLOW_S = 6.0  # the slow function: longer than a lease plus the re-claim, so B finishes after the heal
RATE = 20.0  # events/s over A and C, two runs each: about 2,500 events in the module
MAX_ATTEMPTS = 5
CHECK_TIMEOUT_S = 90.0

# I/O-ish work: each run waits 10 ms (time.sleep is allowed in the sandbox) and logs.
WORK = (
    "import time\nimport logic\n\ndef main(event):\n    time.sleep(0.01)\n"
    '    logic.log.info("work", event.data)\n    return {"n": event.data}\n'
)
DIGEST = (
    "import hashlib\nimport time\n\ndef main(event):\n    time.sleep(0.005)\n"
    '    return hashlib.sha256((event.data or "").encode()).hexdigest()\n'
)
SLOW = f"import time\n\ndef main(event):\n    time.sleep({SLOW_S})\n    return event.data\n"
TICK = "def main(scheduled):\n    return scheduled.scheduled_at\n"


@pytest.fixture
def partition():
    made = Partition.create()
    yield made
    made.destroy()


@pytest.fixture
def cluster(partition):
    """Its own cluster on 127.0.0.1 and the veth's host side; B's address is trusted too."""
    made = start_cluster(listen=("127.0.0.1", partition.host_ip), trust_hosts=(f"{partition.inner_ip}/32",))
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def nodes():
    made: list[Node] = []
    yield made
    for node in made:
        node.cleanup()


def _env(home, database_url: str, master_key: str, node_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "LOGIC_HOME": str(home),
            "LOGIC_DATABASE_URL": database_url,
            "LOGIC_MASTER_KEY": master_key,
            "LOGIC_NODE_ID": node_id,
            "LOGIC_DELIVERY_LEASE_S": str(LEASE_S),
            "LOGIC_DELIVERY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "LOGIC_DISPATCHER_POLL_S": "0.2",
            "LOGIC_RUN_TIMEOUT_S": "15",
            "LOGIC_WEBHOOK_TIMEOUT_S": "2",
            "LOGIC_WEBHOOK_RETRIES": "0",
            "LOGIC_RUNS_KEPT": "1000000",
            "LOGIC_WORKERS": "4",
            "LOGIC_DELIVERY_THREADS": "4",
            "LOGIC_RUNS_IN_FLIGHT_PER_OWNER": "4",
        }
    )
    return env


class RunStream(threading.Thread):
    """Reads a node's SSE run stream until `want` run records (or it ends): their ids."""

    def __init__(self, node: Node, token: str, path: str, *, want: int):
        super().__init__(daemon=True)
        self.node, self.token, self.path, self.want = node, token, path, want
        self.run_ids: list[str] = []
        self.opened = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with (
            httpx.Client(base_url=self.node.url, headers=headers, timeout=httpx.Timeout(10, read=60)) as http,
            http.stream("GET", self.path) as response,
        ):
            for line in response.iter_lines():
                if line == ":ok":
                    self.opened.set()
                elif line.startswith("data: "):
                    self.run_ids.append(json.loads(line.removeprefix("data: "))["id"])
                    if len(self.run_ids) >= self.want:
                        return


def _stamp(at: datetime) -> str:
    """A time as the store writes it (ISO text compares as time)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _next_boundary(after: datetime) -> datetime:
    return minute_floor(after) + timedelta(minutes=1)


def _just_after(boundary: datetime) -> None:
    """Wait for the clock to pass `boundary` (a fault lands while the schedulers fire its tick)."""
    wait_until(
        f"the clock to pass {boundary:%H:%M}",
        lambda: datetime.now(UTC) >= boundary + timedelta(seconds=0.2),
        timeout=70,
        interval=0.05,
    )


def test_three_nodes_on_one_postgresql_survive_kills_a_restart_and_a_partition(cluster, partition, nodes, tmp_path):
    tag = uuid.uuid4().hex[:6]
    url = cluster.create_database("logic")
    db = Database(url)
    master_key = base64.b64encode(os.urandom(32)).decode()

    init_env = _env(tmp_path / "home-init", url, master_key, f"mn-init-{tag}")
    init = subprocess.run([*LOGIC, "init", "--json"], env=init_env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    token = json.loads(init.stdout)["token"]

    def node(name: str, roles: str, host: str | None, *, inside: Partition | None = None) -> Node:
        db_host = inside.host_ip if inside is not None else "127.0.0.1"
        made = Node(
            name,
            roles,
            _env(tmp_path / f"home-{name}", cluster.url("logic", host=db_host), master_key, f"mn-{name}-{tag}"),
            tmp_path,
            host=host,
            port=0 if host is None else free_port(host),
            partition=inside,
        )
        nodes.append(made)
        made.start()
        return made

    a = node("a", "api,scheduler", "127.0.0.2")
    b = node("b", "worker", None, inside=partition)
    c = node("c", "api,worker,scheduler", "127.0.0.4")
    assert "roles: scheduler, worker" not in b.output() and "roles: worker" in b.output()

    with httpx.Client(base_url=a.url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as api:
        fns = {}
        for name, source, trigger in (
            ("work", WORK, {"type": "event", "event_name": "mn-load"}),
            ("digest", DIGEST, {"type": "event", "event_name": "mn-load"}),
            ("slow", SLOW, {"type": "event", "event_name": "mn-slow"}),
            ("tick", TICK, {"type": "schedule", "cron": "* * * * *"}),
        ):
            created = api.post("/v1/logic/functions", json={"name": name, "source": source, "triggers": [trigger]})
            assert created.status_code in (200, 201), created.text
            fns[name] = created.json()["id"]
    (first_tick,) = db.rows(f"SELECT next_fire_at FROM triggers WHERE function_id = '{fns['tick']}'")[0]
    expect = Expectation(
        deliveries_per_event={"mn-load": 2, "mn-slow": 1},
        tick_function=fns["tick"],
        first_tick=parse_time(first_tick),
        max_attempts=MAX_ATTEMPTS,
        tick_grace_s=5.0,
    )

    # A reader of A's live stream of `work` runs: A delivers nothing, so every run it shows
    # was committed by B or C (stream_feed.py: references NOTIFYed, read back by A).
    streamed = RunStream(a, token, f"/v1/logic/functions/{fns['work']}/runs/stream", want=40)
    streamed.start()
    assert streamed.opened.wait(30)
    load = Load([a, c], token, "mn-load", rate=RATE)
    slow_events: dict[str, str] = {}  # published by the test itself, for the partition

    def check(phase: str) -> None:
        summary = full_check(db, load.accepted_ids() | slow_events, expect, timeout=CHECK_TIMEOUT_S)
        print(f"[{phase}] {summary.line()} refused={dict(load.refused)}", flush=True)

    def running_on(n: Node) -> list[tuple]:
        sql = (
            f"SELECT id, lease_token, event_id FROM deliveries WHERE status = 'running' AND claimed_by = '{n.node_id}'"
        )
        return db.try_rows(sql) or []

    load.start()
    try:
        streamed.join(timeout=60)
        assert len(streamed.run_ids) >= 40, f"A's run stream carried {len(streamed.run_ids)} runs"
        quoted = ",".join(f"'{r}'" for r in streamed.run_ids)
        by = {row[0] for row in db.rows(f"SELECT DISTINCT claimed_by FROM deliveries WHERE run_id IN ({quoted})")}
        assert by <= {b.node_id, c.node_id} and by, by  # committed elsewhere; both may not have had a turn

        # 1. kill -9 of the worker node B while it holds deliveries; restart it.
        wait_until("B to hold running deliveries", lambda: running_on(b), timeout=60, interval=0.02)
        b.kill9()
        b.start()
        check("kill -9 worker B")

        # 2. kill -9 of the api+scheduler node A just after a minute boundary; restart it.
        _just_after(_next_boundary(datetime.now(UTC)))
        a.kill9()
        a.start()
        before = load.accepted_by("a")
        wait_until("A to accept again", lambda: load.accepted_by("a") > before, timeout=30)
        check("kill -9 api+scheduler A")

        # 3. PostgreSQL restarts mid-load, just after the next boundary.
        _just_after(_next_boundary(datetime.now(UTC)))
        counts = (load.accepted_by("a"), load.accepted_by("c"))
        cluster.restart()
        wait_until(
            "A and C to accept again",
            lambda: load.accepted_by("a") > counts[0] and load.accepted_by("c") > counts[1],
            timeout=60,
        )
        check("PostgreSQL restart")

        # 4. B partitioned past its lease while it runs slow deliveries, then healed: another
        # node re-claims them, and B's finishes (after the heal) fail their fence.
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:

            def b_holds_slow() -> list[tuple]:
                held = [r for r in running_on(b) if r[2] in slow_events]
                if not held:
                    event_id = publish(client, c, "mn-slow", "slow")
                    if event_id is not None:
                        slow_events[event_id] = "mn-slow"
                return held

            held = wait_until("B to hold a slow delivery", b_holds_slow, timeout=60, interval=0.5)
        cut_at = _stamp(datetime.now(UTC))
        partition.down()
        try:
            tokens = {r[0]: r[1] for r in held}
            ids = ",".join(str(i) for i in tokens)

            def reclaimed() -> bool:
                rows = db.try_rows(f"SELECT id, lease_token, claimed_by FROM deliveries WHERE id IN ({ids})") or []
                return bool(rows) and all(t > tokens[i] and by != b.node_id for i, t, by in rows)

            wait_until("another node to re-claim B's deliveries", reclaimed, timeout=60)
        finally:
            partition.up()
        healed_at = _stamp(datetime.now(UTC))
        check("B partitioned and healed")
        # The run on record is the re-claimed one (started after the cut), never B's: B's
        # finish, sent once the link was back, failed its fence.
        rows = db.rows(
            "SELECT d.id, d.status, d.claimed_by, r.started_at FROM deliveries d JOIN runs r ON r.id = d.run_id "
            f"WHERE d.id IN ({ids})"
        )
        assert sorted(r[0] for r in rows) == sorted(tokens), rows
        assert all(status == "done" and by != b.node_id and started > cut_at for _, status, by, started in rows), (
            cut_at,
            rows,
        )
        runs = db.rows(f"SELECT delivery_id, count(*) FROM runs WHERE delivery_id IN ({ids}) GROUP BY delivery_id")
        assert sorted(runs) == sorted((i, 1) for i in tokens), runs
        assert b.proc is not None and b.proc.poll() is None, "B died in the partition"
        wait_until(
            "B to log each of its finishes refused by the fence",
            lambda: all(f"event=lease_lost delivery={i} " in b.output() for i in tokens),
            timeout=30,
        )
        wait_until(
            "B to deliver again after the heal",
            lambda: db.try_rows(
                f"SELECT 1 FROM deliveries WHERE claimed_by = '{b.node_id}' AND status = 'done' "
                f"AND finished_at > '{healed_at}' LIMIT 1"
            ),
            timeout=60,
        )

        # Three boundaries at least: every tick crossed fired once, through all of the above.
        wait_until(
            "three cron ticks to be due",
            lambda: datetime.now(UTC) >= expect.first_tick + timedelta(minutes=2, seconds=expect.tick_grace_s),
            timeout=200,
            interval=0.5,
        )
    finally:
        load.stop()
    check("final")
    for n in (a, b, c):  # fencing stopped every stale finish: the unique run-per-delivery key never had to
        assert "runs_by_delivery" not in n.output(), n.output()[-3000:]
    for n in (a, c):
        assert n.stop() == 0, n.output()[-3000:]
    assert b.stop() == 0, b.output()[-3000:]
    assert len(load.accepted_ids()) >= 1000
