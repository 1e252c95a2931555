"""Worker nodes on one PostgreSQL: does throughput grow with the number of nodes? (issue 14)

For N = 1, 2, 4, 8: a fresh database in a throwaway cluster (tests/pg_cluster.py), N
`logic serve --role worker` processes on it (each its own LOGIC_HOME, one
LOGIC_MASTER_KEY), and a backlog of deliveries committed in one transaction, each an
I/O-bound run (`time.sleep(0.01)`, which the sandbox allows). Each node runs one
delivery thread, so a node's ceiling is set by the 10 ms wait and the work around it,
and 8 nodes stay under ~60% of this machine's CPU: the figure measures coordination
(claims under SKIP LOCKED, finishes, the doorbell), not two cores running out.

Per N: T(N), deliveries/s between 10% and 90% of the backlog done (start-up and the
tail left out), from the queue's open count polled every 50 ms; T(N)/(N*T(1)) (target >= 0.8
up to 8); CPU per delivery of the nodes (each node's process tree: server, zygote,
workers) and of PostgreSQL (the postmaster's tree), both utime+stime from /proc; and the
machine's busy share over the window (/proc/stat), which must stay under ~60% for the
figure to mean coordination. What one machine cannot show: network latency between
nodes and database (loopback here), and a database whose cores are not the nodes'.

Without PostgreSQL installed the workload is skipped with a note.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

from pydantic import SecretStr

from .harness import Report, at_least, at_most, rate_stats

SOURCE = "import time\n\ndef main(event):\n    time.sleep(0.01)\n    return None\n"
EVENT = "bench-scale"
TICKS = os.sysconf("SC_CLK_TCK")


# -- CPU from /proc -----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return found


def _own_cpu(pid: int) -> float:
    """utime+stime of `pid` and of its children it has reaped (cutime+cstime), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime


def cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and every live descendant (a child that exited
    and was reaped is in its parent's cutime/cstime)."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += _own_cpu(pid)
        todo += _children(pid)
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user .. steal (guest time is inside user)
    return float(total - idle), float(total)


def postmaster_pid(data: Path) -> int:
    """The cluster's postmaster (the first line of postmaster.pid); its children are the backends."""
    return int((data / "postmaster.pid").read_text().split()[0])


# -- worker nodes -----------------------------------------------------------------------------


class Nodes:
    """N `logic serve --role worker` processes, each in its own session, log and home."""

    def __init__(self, workdir: Path, env: dict[str, str], count: int):
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        for n in range(count):
            home = workdir / f"node{n}"
            log = workdir / f"node{n}.log"
            node_env = {**env, "LOGIC_HOME": str(home), "LOGIC_NODE_ID": f"bench-scale-{n}"}
            with log.open("w") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "runtime.cli", "serve", "--role", "worker"],
                        env=node_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            self.logs.append(log)

    def wait_ready(self, limit_s: float = 120.0) -> None:
        deadline = time.monotonic() + limit_s
        for proc, log in zip(self.procs, self.logs, strict=True):
            while "roles: worker" not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker node did not start: {log.read_text()[-1500:]}")
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, sig)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def node_env(database_url: str, master_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
    env.update(
        {
            "LOGIC_DATABASE_URL": database_url,
            "LOGIC_MASTER_KEY": master_key,
            "LOGIC_DELIVERY_THREADS": "1",  # a node's ceiling: one 10 ms run at a time
            "LOGIC_WORKERS": "2",
            "LOGIC_RUNS_IN_FLIGHT_PER_OWNER": "2",  # above the one thread: the owner cap never idles a node
            "LOGIC_DISPATCHER_POLL_S": "0.05",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Deliveries/s between the moments 10% and 90% of `total` were done (interpolated)."""

    def when(count: float) -> float:
        for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
            if c0 <= count <= c1 and c1 > c0:
                return t0 + (t1 - t0) * (count - c0) / (c1 - c0)
        raise RuntimeError(f"{count:.0f} of {total} deliveries were never seen done")

    low, high = 0.1 * total, 0.9 * total
    return (high - low) / (when(high) - when(low))


def one_round(cluster, workdir: Path, nodes: int, deliveries: int, sleep_s: float, name: str) -> dict[str, float]:
    """T(N) and CPU for `nodes` worker nodes draining `deliveries` runs that each sleep `sleep_s`."""
    from runtime.manifest import files_from_json
    from runtime.service import Service
    from store import Settings, Store
    from store.events import EventStore

    url = cluster.create_database(name)
    master_key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(home=workdir / f"{name}-bench", database_url=SecretStr(url), master_key=SecretStr(master_key))
    store, _ = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    postmaster = postmaster_pid(cluster.data)
    group = None
    try:
        source = SOURCE.replace("0.01", repr(sleep_s))
        manifest = {"name": "sleeper", "triggers": [{"type": "event", "event_name": EVENT}], "source": source}
        fn = service.deploy_function(service.actor(), files_from_json(manifest))
        (workdir / name).mkdir()
        group = Nodes(workdir / name, node_env(url, master_key), nodes)
        group.wait_ready()
        # Every node starts on the same full queue: paused while the backlog is committed
        # (its cost is the publisher's, not the drain's), then let go together.
        group.signal(signal.SIGSTOP)
        with service.store.transaction():
            for n in range(deliveries):
                service.bus.publish_checked(fn.owner, EVENT, str(n), source="bench", depth=0, check_capacity=False)
        # open_deliveries(), counts(): the implementation's, not the Protocol's
        events = cast(EventStore, service.store.events)
        nodes_cpu0, pg_cpu0, machine0 = group.cpu_seconds(), cpu_seconds(postmaster), machine_cpu()
        t0 = time.monotonic()
        group.signal(signal.SIGCONT)
        samples = [(t0, 0)]
        deadline = t0 + 60 + deliveries * 0.1  # 10/s: far below one node's rate
        while samples[-1][1] < deliveries:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{nodes} nodes finished {samples[-1][1]} of {deliveries} deliveries in time")
            time.sleep(0.05)
            # A read of the per-slot counters, not a count over the table: the probe's own
            # cost stays out of PostgreSQL's CPU per delivery.
            samples.append((time.monotonic(), deliveries - events.open_deliveries()))
        elapsed = samples[-1][0] - t0
        nodes_cpu = group.cpu_seconds() - nodes_cpu0
        pg_cpu = cpu_seconds(postmaster) - pg_cpu0
        busy1, total1 = machine_cpu()
        failed = events.counts().get("failed", 0)
        if failed:
            raise RuntimeError(f"{failed} of {deliveries} deliveries failed")
        return {
            "rate": steady_rate(samples, deliveries),
            "node_ms": nodes_cpu * 1000 / deliveries,
            "pg_ms": pg_cpu * 1000 / deliveries,
            "machine_busy": (busy1 - machine0[0]) / (total1 - machine0[1]),
            "ours_busy": (nodes_cpu + pg_cpu) / (elapsed * (os.cpu_count() or 1)),
        }
    finally:
        if group is not None:
            group.signal(signal.SIGCONT)
            group.stop()
        service.close()


def sized_sleep(cpu_ms: float, nodes: int, cores: int, busy: float = 0.6) -> float:
    """How long each run must wait (s, at least 10 ms) so that `nodes` nodes, each one run at
    a time, need at most `busy` of the machine: nodes / (sleep + cpu) * cpu <= busy * cores."""
    cpu = cpu_ms / 1000
    return round(max(0.010, nodes * cpu / (busy * cores) - cpu), 3)


def run(report: Report, quick: bool) -> None:
    section = report.section("scale", "Worker nodes on one PostgreSQL: T(N)/(N*T(1)), I/O-bound runs")
    from tests.pg_cluster import pg_bin, start_cluster

    if pg_bin() is None:
        section.note("PostgreSQL is not installed (tests.pg_cluster.pg_bin() is None): scale is skipped")
        return
    counts = (1, 2) if quick else (1, 2, 4, 8)
    per_node = 60 if quick else 300  # deliveries per node per round: the same work per node at any N
    rounds = 1 if quick else 2
    cores = os.cpu_count() or 1
    workdir = Path(tempfile.mkdtemp(prefix="logic-bench-scale-"))
    cluster = start_cluster()
    try:
        # Calibration: one node, 10 ms runs; its CPU per delivery sizes the runs' wait so
        # that the largest N stays under ~60% of the machine.
        probe = one_round(cluster, workdir, 1, per_node, 0.010, "calibrate")
        cpu_ms = probe["node_ms"] + probe["pg_ms"]
        sleep_s = sized_sleep(cpu_ms, max(counts), cores)
        section.figure("calibration_cpu_ms", "ms", rate_stats([cpu_ms]), label="CPU per delivery, 1 node, 10 ms runs")
        section.figure("run_sleep_ms", "ms", rate_stats([sleep_s * 1000]), label="each run's wait, sized to <= 60% CPU")
        results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
        for r in range(rounds):
            order = list(counts) if r % 2 == 0 else list(reversed(counts))
            for n in order:
                results[n].append(one_round(cluster, workdir, n, n * per_node, sleep_s, f"scale{r}n{n}"))
        for n in counts:
            rows = results[n]
            section.figure(
                f"t_{n}",
                "deliveries/s",
                rate_stats([x["rate"] for x in rows]),
                label=f"T({n}): {n} worker node(s), 1 delivery thread each",
            )
            section.figure(
                f"node_cpu_ms_{n}",
                "ms",
                rate_stats([x["node_ms"] for x in rows]),
                label=f"nodes' CPU per delivery, N={n}",
            )
            section.figure(
                f"pg_cpu_ms_{n}",
                "ms",
                rate_stats([x["pg_ms"] for x in rows]),
                label=f"PostgreSQL CPU per delivery, N={n}",
            )
            section.figure(
                f"ours_busy_{n}",
                "%",
                rate_stats([100 * x["ours_busy"] for x in rows]),
                label=f"nodes + PostgreSQL CPU, % of the machine, N={n}",
                target=at_most(60, "<= 60% (measures coordination)") if n == max(counts) else None,
            )
            section.figure(
                f"machine_busy_{n}",
                "%",
                rate_stats([100 * x["machine_busy"] for x in rows]),
                label=f"machine CPU busy during the drain, N={n} (others' too)",
            )
        t1 = section.value("t_1")
        for n in counts[1:]:
            section.ratio(
                f"scaling_{n}",
                section.value(f"t_{n}"),
                None if t1 is None else n * t1,
                meaning=f"T({n}) / ({n} x T(1)): 1.0 is linear",
                target=at_least(0.8, ">= 0.8"),
            )
        section.note(
            f"each run waits {sleep_s * 1000:.0f} ms (time.sleep in the sandbox; 10 ms unless one node's CPU per "
            f"delivery, {cpu_ms:.1f} ms, would take {max(counts)} nodes past 60% of {cores} cores)"
        )
        section.note(
            "one machine: loopback instead of a network (no latency between node and database), "
            "and PostgreSQL shares the nodes' cores"
        )
    finally:
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
