"""Workload 6: HTTP ingest into a real `logic serve` on loopback (and workload 7, its memory).

The server is a subprocess on a temporary LOGIC_HOME (`init --json`, then
`serve --port P`). A function whose event trigger matches is created through
the API. Then:
    delay at rest   one client publishes one event at a time and waits for
                    its run: publish-to-record delay with nothing queued
    load            2 x cores ... clients (keep-alive) publish as fast as
                    they can for a window per round, interleaved with the
                    same clients publishing an event nothing listens to
                    (acceptance alone, no run) and doing GET /healthz (the
                    HTTP floor of the same server and client); events/s
                    accepted (202)
    drain           wait (bounded) until every accepted event has its run;
                    the delay of each, from the moment it was sent
Run records are read from the SQLite file (read-only) so none is missed;
the server keeps every record for the benchmark (LOGIC_RUNS_KEPT raised).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from . import memory
from .harness import Report, at_least, rate_stats, stats

EVENT = "bench-ingest"
SOURCE = (
    "import json\n\ndef main(event, secrets):\n    key = secrets.API_KEY\n"
    '    return {"n": len(event.data or ""), "k": len(key)}\n'
)
SECRET = "sk_live_51HbEnchMarkINGEST0123456789abcdef"
UNMATCHED = "bench-ingest-unmatched"  # no function or integration listens: acceptance alone


class Server:
    def __init__(self, workdir: Path):
        self.home = workdir / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOGIC_")}
        self.env.update({"LOGIC_RUNS_KEPT": "10000000", "PYTHONUNBUFFERED": "1"})
        self.log_path = workdir / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.token = ""

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "runtime.cli", "--home", str(self.home), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> None:
        init = self.cli("init", "--json")
        if init.returncode != 0:
            raise RuntimeError(f"logic init failed: {init.stderr.strip()[-500:]}")
        self.token = json.loads(init.stdout)["token"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runtime.cli",
                    "--home",
                    str(self.home),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"logic serve exited early: {self.log()}")
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"logic serve did not answer /healthz in 30 s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-1500:]
        except OSError:
            return ""

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self, method: str, path: str, body: dict | None = None, conn: http.client.HTTPConnection | None = None
    ) -> tuple[int, dict | None]:
        own = conn is None
        conn = conn or self.connection()
        try:
            headers = {"Authorization": f"Bearer {self.token}"}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            if own:
                conn.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def _finished(db: Path) -> dict[str, float]:
    """event id -> when its run finished (epoch seconds), for every recorded run."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT record FROM runs").fetchall()
    finally:
        conn.close()
    out = {}
    for (text,) in rows:
        record = json.loads(text)
        event_id = (record.get("trigger") or {}).get("event_id")
        if event_id and record.get("status") == "success":
            out[event_id] = datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00")).timestamp()
    return out


def _run_rates(rounds: list[list[tuple[str, float]]], finished: dict[str, float]) -> list[float]:
    """Per publish round: its runs / (its first publish -> its last run recorded)."""
    rates = []
    for sent in rounds:
        done = [finished[eid] for eid, _ in sent if eid in finished]
        if done:
            rates.append(len(done) / max(max(done) - min(t for _, t in sent), 1e-9))
    return rates


def _wait_for_runs(db: Path, count: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and _count_runs(db) < count:
        time.sleep(0.05)


def _count_runs(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


def _load(
    server: Server, clients: int, seconds: float, cap: int, event: str | None, sent: list[tuple[str, float]]
) -> tuple[float, int]:
    """Requests/s accepted by `clients` keep-alive clients in `seconds`; (rate, rejected).
    Publishes `event` (noting each accepted one in `sent` if it is EVENT), or GETs /healthz."""
    lock = threading.Lock()
    accepted = [0]
    rejected = [0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)
    per_client = max(1, cap // clients)

    def client(n: int) -> None:
        conn = server.connection()
        ok = bad = 0
        mine: list[tuple[str, float]] = []
        try:
            barrier.wait()
            stop = time.perf_counter() + seconds
            for i in range(per_client):
                if time.perf_counter() > stop:
                    break
                if event is not None:
                    t_sent = time.time()
                    status, body = server.request(
                        "POST", "/v1/events", {"name": event, "data": f'{{"client": {n}, "i": {i}}}'}, conn
                    )
                    if status == 202:
                        ok += 1
                        if event == EVENT:
                            mine.append((body["id"], t_sent))
                    else:
                        bad += 1
                else:
                    status, _ = server.request("GET", "/healthz", None, conn)
                    ok += status == 200
                    bad += status != 200
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()
            with lock:
                accepted[0] += ok
                rejected[0] += bad
                sent.extend(mine)

    threads = [
        threading.Thread(target=client, args=(n,), name=f"bench-client-{n}", daemon=True) for n in range(clients)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return accepted[0] / elapsed, rejected[0]


def run(report: Report, quick: bool) -> None:
    section = report.section("ingest", "6. HTTP ingest into `logic serve` (loopback)")
    mem = report.section("memory", "7. Memory of `logic serve` and its workers")
    workdir = Path(tempfile.mkdtemp(prefix="logic-bench-serve-"))
    server = Server(workdir)
    try:
        server.start()
        time.sleep(0.5)
        idle = memory.totals(memory.tree(server.proc.pid))
        status, body = server.request("POST", "/v1/secrets", {"name": "API_KEY", "value": SECRET})
        if status != 201:
            raise RuntimeError(f"POST /v1/secrets: {status} {body}")
        status, fn = server.request(
            "POST",
            "/v1/logic/functions",
            {
                "name": "ingest",
                "secrets": ["API_KEY"],
                "triggers": [{"type": "event", "event_name": EVENT}],
                "source": SOURCE,
            },
        )
        if status != 201:
            raise RuntimeError(f"POST /v1/logic/functions: {status} {fn}")
        db = server.home / "logic.db"

        # delay with nothing queued: one event at a time, wait for its run
        rest_delays = []
        for i in range(15 if quick else 60):
            t_sent = time.time()
            status, body = server.request("POST", "/v1/events", {"name": EVENT, "data": f'{{"i": {i}}}'})
            if status != 202:
                raise RuntimeError(f"POST /v1/events: {status} {body}")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                done = _finished(db).get(body["id"])
                if done is not None:
                    rest_delays.append(done - t_sent)
                    break
                time.sleep(0.002)
        status, runs = server.request("GET", f"/v1/logic/functions/{fn['id']}/runs?limit=5")
        if status != 200 or not runs.get("logic_runs"):
            raise RuntimeError(f"GET runs: {status} {runs}")

        clients = max(4, 4 * (os.cpu_count() or 1))
        window = 1.0 if quick else 3.0
        rounds = 2 if quick else 5
        cap = 20_000
        sent: list[tuple[str, float]] = []
        kinds = {"events": EVENT, "accept_only": UNMATCHED, "healthz": None}
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        rejected = 0
        event_rounds: list[list[tuple[str, float]]] = []
        with memory.Watch(server.proc.pid, max_s=600) as watch:
            for r in range(rounds):
                names = list(kinds)
                for kind in names[r % 3 :] + names[: r % 3]:
                    # Each round starts with no runs left over from the one before: else the
                    # backlog's runs share the CPU with (and depress) the next round's figure.
                    _wait_for_runs(db, len(sent) + len(rest_delays), 30.0)
                    first = len(sent)
                    rate, bad = _load(server, clients, window, cap, kinds[kind], sent)
                    if kind == "events":
                        event_rounds.append(sent[first:])
                    rates[kind].append(rate)
                    rejected += bad if kind != "healthz" else 0
            load_end = time.time()
            drain_limit = 30 if quick else 120
            deadline = time.monotonic() + drain_limit
            while time.monotonic() < deadline and _count_runs(db) < len(sent) + len(rest_delays):
                time.sleep(0.1)
            drained = time.time()
        finished = _finished(db)
        delays = [finished[eid] - t for eid, t in sent if eid in finished]
        time.sleep(1.0)
        idle_warm = memory.totals(memory.tree(server.proc.pid))

        section.figure(
            "events_per_s",
            "events/s",
            rate_stats(rates["events"]),
            label=f"events accepted durably (202), {clients} clients, each runs a function",
            target=at_least(2000, ">= 2,000 events/s"),
        )
        section.figure(
            "accept_only_per_s",
            "events/s",
            rate_stats(rates["accept_only"]),
            label="events accepted durably, no function matches (acceptance alone)",
        )
        section.figure(
            "healthz_per_s",
            "req/s",
            rate_stats(rates["healthz"]),
            label=f"peer: GET /healthz, same {clients} clients (HTTP floor)",
        )
        section.figure(
            "delay_at_rest", "ms", stats(rest_delays, 1e3), label="publish -> run recorded, one event at a time"
        )
        section.figure(
            "delay_under_load", "ms", stats(delays, 1e3), label="publish -> run recorded, events of the load phase"
        )
        section.figure(
            "runs_per_s",
            "runs/s",
            rate_stats(_run_rates(event_rounds, finished)),
            label="runs recorded per second in a publish round (first publish to last run)",
        )
        section.ratio(
            "events_over_healthz",
            section.value("events_per_s"),
            section.value("healthz_per_s"),
            meaning="accepted events/s / GET /healthz req/s (what the durable publish and its run cost)",
        )
        section.ratio(
            "accept_only_over_healthz",
            section.value("accept_only_per_s"),
            section.value("healthz_per_s"),
            meaning="accepted events/s without runs / GET /healthz req/s (what the durable publish costs)",
        )
        section.note(
            f"{len(sent):,} events accepted under load, {rejected} refused (e.g. queue full), "
            f"{len(delays):,} of them with a recorded run after the drain "
            f"({drained - load_end:.1f} s after the load, limit {drain_limit} s)."
        )
        section.note(
            f"load rounds: {rounds} x {window:g} s per peer, interleaved, each after the runs of the one "
            "before were recorded; rate p99 column = slowest round."
        )
        memory.report(mem, idle, idle_warm, watch.samples)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
