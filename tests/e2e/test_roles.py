"""`logic serve --role`: processes on one database split the work (api / worker / scheduler)."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.e2e.conftest import LOGIC, poll
from tests.e2e.test_streams import SECRET, Subscriber, deploy_leaker, publish

SOURCE = "def main(event):\n    return event.data\n"


def deploy_echo(api) -> str:
    """A function answering each `go` event with its data; the path of its runs."""
    fn = api.post(
        "/v1/logic/functions",
        json={"name": "echo", "source": SOURCE, "triggers": [{"type": "event", "event_name": "go"}]},
    ).json()
    return f"/v1/logic/functions/{fn['id']}/runs"


def test_an_api_node_accepts_and_a_worker_node_delivers(make_server):
    api_node = make_server()
    api_node.start("--role", "api")
    assert "roles: api\n" in api_node.output()
    assert "isolation: " in api_node.output()  # it runs test and manual runs: it has workers
    with api_node.client() as api:
        runs = deploy_echo(api)
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


def test_a_worker_node_on_the_same_sqlite_file_hears_each_publish_long_before_its_poll(make_server):
    """A worker-role process on SQLite watches the file for other processes' commits: with
    its poll a minute apart, each event the API node accepts still runs within seconds."""
    api_node = make_server()
    api_node.start("--role", "api")
    with api_node.client() as api:
        runs = deploy_echo(api)
        with (api_node.home / "worker-node.log").open("w") as out:
            worker = subprocess.Popen(
                [*LOGIC, "serve", "--role", "worker"],
                env={**api_node.env, "LOGIC_DISPATCHER_POLL_S": "60"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            # The first event may be found by the worker's first look; after its run the
            # worker waits on its doorbell, and only a ring brings it back before a minute.
            for n in range(1, 4):
                assert api.post("/v1/events", json={"name": "go", "data": f"event {n}"}).status_code == 202
                poll(lambda n=n: len(api.get(runs).json()["logic_runs"]) >= n)
            results = sorted(r["result"] for r in api.get(runs).json()["logic_runs"])
            assert results == ["event 1", "event 2", "event 3"]
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0


def test_a_logic_publish_from_the_command_line_rings_the_running_server(make_server):
    """`logic publish` is a process of its own: its committed event rings `logic serve`
    (all roles) through the same doorbell, well before a poll a minute apart."""
    server = make_server(dispatcher_poll_s="60")
    server.start()
    with server.client() as api:
        runs = deploy_echo(api)
        for n in range(1, 3):  # the first may meet the server's first look; the second cannot
            published = server.cli("publish", "go", f"from the shell {n}")
            assert published.returncode == 0, published.stderr
            poll(lambda n=n: len(api.get(runs).json()["logic_runs"]) >= n)
        assert sorted(r["result"] for r in api.get(runs).json()["logic_runs"]) == [
            "from the shell 1",
            "from the shell 2",
        ]


def test_the_api_nodes_live_streams_carry_what_the_worker_node_commits(make_server):
    """A reader of the API process's streams sees the worker process's run records and the
    events its runs publish (stream_feed.py), redacted as the worker stored them."""
    api_node = make_server()
    api_node.start("--role", "api")
    with api_node.client() as api:
        fn = deploy_leaker(api)
        events = Subscriber(api_node, "/v1/events/leak/out", 1)
        runs = Subscriber(api_node, f"/v1/logic/functions/{fn['id']}/runs/stream", 1)
        for sub in (events, runs):
            sub.start()
            assert sub.opened.wait(10)
        with (api_node.home / "worker-node.log").open("w") as out:
            worker = subprocess.Popen(
                [*LOGIC, "serve", "--role", "worker,scheduler"], env=api_node.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            # The worker lists the readers' sockets once a second: publish until its items arrive.
            def arrived() -> bool:
                publish(api, "leak/in", "go")
                return bool(events.frames and runs.frames) or bool(time.sleep(0.3))

            poll(arrived, timeout=30)
            for sub in (events, runs):
                sub.join(timeout=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
    assert SECRET not in "\n".join(events.raw + runs.raw)
    [(name, event)] = events.frames
    assert (name, event["data"]) == ("leak/out", "[[SENSITIVE]]")
    [(name, run)] = runs.frames
    assert (name, run["status"], run["result"]) == ("run", "success", "[[SENSITIVE]]")
