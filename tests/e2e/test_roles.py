"""`logic serve --role`: processes on one database split the work (api / worker / scheduler)."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.e2e.conftest import LOGIC, poll

SOURCE = "def main(event):\n    return event.data\n"


def test_an_api_node_accepts_and_a_worker_node_delivers(make_server):
    api_node = make_server()
    api_node.start("--role", "api")
    assert "roles: api\n" in api_node.output()
    assert "isolation: " in api_node.output()  # it runs test and manual runs: it has workers
    with api_node.client() as api:
        fn = api.post(
            "/v1/logic/functions",
            json={"name": "echo", "source": SOURCE, "triggers": [{"type": "event", "event_name": "go"}]},
        ).json()
        runs = f"/v1/logic/functions/{fn['id']}/runs"
        assert api.post("/v1/events", json={"name": "go", "data": "from the api node"}).status_code == 202
        # No delivery on an api-only node: ten of its poll periods (LOGIC_DISPATCHER_POLL_S=0.1) pass.
        time.sleep(1.0)
        assert api.get(runs).json()["logic_runs"] == []

        log = api_node.home / "worker-node.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [*LOGIC, "serve", "--role", "worker,scheduler"], env=api_node.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            (run,) = poll(lambda: api.get(runs).json()["logic_runs"])
            assert (run["status"], run["result"]) == ("success", "from the api node")
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
    text = log.read_text()
    assert "roles: scheduler, worker" in text and "listening on" not in text


def test_a_scheduler_node_runs_no_function_and_a_bad_role_is_refused(make_server):
    node = make_server()
    bad = subprocess.run([*LOGIC, "serve", "--role", "api,cook"], env=node.env, capture_output=True, text=True)
    assert bad.returncode == 2 and "use any of api, scheduler, worker" in bad.stderr
    empty = subprocess.run([*LOGIC, "serve", "--role", ","], env=node.env, capture_output=True, text=True)
    assert empty.returncode == 2

    scheduler = subprocess.Popen(
        [*LOGIC, "serve", "--role", "scheduler"],
        env=node.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert scheduler.stdout is not None
        lines = [scheduler.stdout.readline() for _ in range(3)]
    finally:
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=30) == 0
    assert lines[0] == "roles: scheduler\n"
    assert lines[2] == "isolation: no workers (this process runs no function)\n"
