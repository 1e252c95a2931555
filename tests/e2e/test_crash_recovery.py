"""Promise 5: kill -9 the server mid-stream; every acknowledged event is still delivered."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections import Counter

import httpx

# Each run takes 20 ms, so deliveries (2 threads) fall behind ingest and the kill
# always finds a backlog, however fast or loaded the machine is.
SOURCE = "import time\ndef main(event):\n    time.sleep(0.02)\n    return event.data\n"
EVENTS = 1000
KILL_AFTER = 400


def test_kill_9_mid_stream_then_restart(make_server, wait_for):
    server = make_server(run_timeout_s=2, runs_kept=100000, delivery_threads=2)
    server.start()
    with server.client() as api:
        fid = api.post(
            "/v1/logic/functions",
            json={"name": "count", "source": SOURCE, "triggers": [{"type": "event", "event_name": "tick"}]},
        ).json()["id"]

    acknowledged: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def publisher(offset: int) -> None:
        with httpx.Client(
            base_url=server.url, timeout=5, headers={"Authorization": f"Bearer {server.token}"}
        ) as client:
            for n in range(offset, EVENTS, 4):
                if killed.is_set():
                    return
                try:
                    response = client.post("/v1/events", json={"name": "tick", "data": str(n)})
                except httpx.HTTPError:
                    return  # the server is gone: what was acknowledged so far is what counts
                if response.status_code == 202:
                    with lock:
                        acknowledged.append(response.json()["id"])
                        if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                            killed.set()
                            server.proc.send_signal(signal.SIGKILL)

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert killed.is_set(), "the server was not killed mid-stream"
    server.proc.wait(10)
    server.proc = None

    db_path = server.home / "logic.db"

    def open_deliveries() -> int:
        with sqlite3.connect(db_path, timeout=10) as db:
            return db.execute("SELECT count(*) FROM deliveries WHERE status IN ('pending', 'running')").fetchone()[0]

    pending_at_crash = open_deliveries()
    server.start()  # same home: picks up what was accepted
    wait_for(lambda: open_deliveries() == 0, timeout=90, interval=0.25)
    assert server.stop() == 0

    with sqlite3.connect(db_path) as db:
        status = dict(db.execute("SELECT event_id, status FROM deliveries WHERE target_id = ?", (fid,)).fetchall())
        runs = Counter(json.loads(r[0])["trigger"]["event_id"] for r in db.execute("SELECT record FROM runs"))
    missing = [e for e in acknowledged if status.get(e) not in ("done", "failed")]
    assert not missing, f"{len(missing)} acknowledged events lost"
    undelivered = [e for e in acknowledged if status[e] == "done" and runs[e] == 0]
    assert not undelivered
    duplicates = sum(n - 1 for n in runs.values() if n > 1)
    # A run's record commits with its delivery's completion: one killed mid-run left none, so
    # its rerun is the only record (side effects, like a webhook, are at least once).
    assert duplicates == 0, duplicates
    print(f"acknowledged={len(acknowledged)} open_at_crash={pending_at_crash} duplicates={duplicates}")
    assert pending_at_crash > 0, "the kill came after every delivery finished: nothing was tested"
