"""The live streams over a real `logic serve`: order under load, a stalled reader dropped
without slowing publishers, the per-owner cap, no secret in any stream, and the CLI's tails
(`logic subscribe`, `logic functions logs --follow`) reading them."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading

import httpx

from tests.e2e.conftest import LOGIC, poll

SECRET = "stream-Secret-Value-8c1f03aa"
LEAKER = """import logic


def main(event, secrets):
    print("key", secrets.API_KEY)
    logic.publish("leak/out", secrets.API_KEY)
    return secrets.API_KEY
"""


class Subscriber(threading.Thread):
    """Reads one SSE stream into `frames` ([(event, data)]) until `want` frames or it ends."""

    def __init__(self, server, path: str, want: int):
        super().__init__(daemon=True)
        self.server, self.path, self.want = server, path, want
        self.frames: list[tuple[str, dict]] = []
        self.raw: list[str] = []
        self.opened = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.token}"}
        timeout = httpx.Timeout(10, read=30)
        with (
            httpx.Client(base_url=self.server.url, headers=headers, timeout=timeout) as http,
            http.stream("GET", self.path) as response,
        ):
            assert response.status_code == 200
            event = None
            for line in response.iter_lines():
                self.raw.append(line)
                if line == ":ok":
                    self.opened.set()
                elif line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.frames.append((event, json.loads(line.removeprefix("data: "))))
                    if len(self.frames) >= self.want:
                        return


def deploy_leaker(api: httpx.Client) -> dict:
    """SECRET as API_KEY and LEAKER on `leak/in`: the function as created."""
    assert api.post("/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
    return api.post(
        "/v1/logic/functions",
        json={
            "name": "leaker",
            "secrets": ["API_KEY"],
            "source": LEAKER,
            "triggers": [{"type": "event", "event_name": "leak/in"}],
        },
    ).json()


def publish(api: httpx.Client, name: str, data: str | None = None) -> None:
    response = api.post("/v1/events", json={"name": name, "data": data})
    assert response.status_code == 202, response.text


def test_three_subscribers_each_see_all_100_events_in_order(make_server):
    server = make_server()
    server.start()
    subscribers = [Subscriber(server, "/v1/events/load", 100) for _ in range(3)]
    for sub in subscribers:
        sub.start()
    for sub in subscribers:
        assert sub.opened.wait(10)
    with server.client() as api:
        for n in range(100):
            publish(api, "load/n" if n % 2 else "load", str(n))
            if n % 10 == 0:
                publish(api, "other", "not for them")
    for sub in subscribers:
        sub.join(timeout=30)
        assert [data["data"] for _, data in sub.frames] == [str(n) for n in range(100)]
        assert {name for name, _ in sub.frames} == {"load", "load/n"}
        assert all(data["coreid"] == "api" and data["ttl"] == 60 for _, data in sub.frames)


def test_a_stalled_reader_is_dropped_and_publishing_never_waits_for_it(make_server):
    server = make_server(stream_buffer_events="5", streams_per_owner="2", stream_keepalive_s="1")
    server.start()
    # A reader that never reads: its socket buffers fill, then the server's buffer of 5.
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n\r\n".encode()
    )
    big = "x" * 60_000
    with server.client() as api:
        # ~12 MB for the stalled reader: far past what the sockets hold. Each publish answers
        # within the client's 10 s timeout: none waits behind the reader.
        for _ in range(200):
            publish(api, "big", big)

        # Dropped: its place is free again (the cap is 2: this one and one more fit).
        def two_fit() -> bool:
            with (
                httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as a,
                a.stream("GET", "/v1/events/one") as first,
                a.stream("GET", "/v1/events/two") as second,
            ):
                return first.status_code == second.status_code == 200

        assert poll(two_fit, timeout=20, interval=0.5)
    stalled.close()


def test_the_per_owner_cap_answers_429_to_that_owner_only(make_server):
    server = make_server(streams_per_owner="1")
    assert server.cli("users", "create", "bob").returncode == 0
    server.start()
    bob_token = json.loads(server.cli("tokens", "create", "--user", "bob", "--json").stdout)["token"]
    headers = {"Authorization": f"Bearer {server.token}"}
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as http,
        http.stream("GET", "/v1/events") as first,
    ):
        assert first.status_code == 200
        refused = http.get("/v1/devices/events")
        assert refused.status_code == 429 and "LOGIC_STREAMS_PER_OWNER" in refused.json()["error"]
        assert refused.headers["retry-after"]
        with (
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {bob_token}"}) as bob,
            bob.stream("GET", "/v1/events") as theirs,
        ):
            assert theirs.status_code == 200  # another owner's share is untouched


def test_no_stream_carries_a_secret_value(make_server):
    server = make_server()
    server.start()
    with server.client() as api:
        fn = deploy_leaker(api)
        events = Subscriber(server, "/v1/events/leak", 2)
        runs = Subscriber(server, f"/v1/logic/functions/{fn['id']}/runs/stream", 1)
        for sub in (events, runs):
            sub.start()
            assert sub.opened.wait(10)
        publish(api, "leak/in", "go")
        for sub in (events, runs):
            sub.join(timeout=30)
    everything = "\n".join(events.raw + runs.raw)
    assert SECRET not in everything and "[[SENSITIVE]]" in everything
    [(_, run)] = runs.frames
    assert run["result"] == "[[SENSITIVE]]" and run["status"] == "success"
    assert [(name, data["data"]) for name, data in events.frames] == [
        ("leak/in", "go"),
        ("leak/out", "[[SENSITIVE]]"),
    ]


def test_logic_subscribe_prints_the_matching_events_and_revokes_its_token(make_server):
    server = make_server()
    server.start()
    env = {**server.env, "LOGIC_PORT": str(server.port)}
    cmd = [*LOGIC, "subscribe", "sensor", "--json"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as sub:
        lines: list[dict] = []
        reader = threading.Thread(target=lambda: [lines.append(json.loads(x)) for x in sub.stdout], daemon=True)
        reader.start()
        with server.client() as api:

            def listening() -> bool:  # the stream starts at connection: warm up until one gets through
                publish(api, "sensor/warm", "w")
                return bool(lines)

            poll(listening, timeout=20, interval=0.3)
            publish(api, "elsewhere", "no")
            publish(api, "sensor/a", "1")
            publish(api, "sensor/b", "2")
        poll(lambda: lines and lines[-1]["name"] == "sensor/b", timeout=20)
        sub.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        sub.wait(timeout=30)
        reader.join(timeout=10)
        assert sub.returncode == 0, sub.stderr.read()
    assert [(e["name"], e["data"]) for e in lines][-2:] == [("sensor/a", "1"), ("sensor/b", "2")]
    assert all(e["name"].startswith("sensor") for e in lines)
    tokens = json.loads(server.cli("tokens", "list", "--json").stdout)
    assert not any(t["label"] == "logic tail (temporary)" for t in tokens)


def test_functions_logs_follow_prints_history_then_new_runs_and_stops_on_ctrl_c(make_server):
    server = make_server()
    server.start()
    with server.client() as api:
        fn = api.post(
            "/v1/logic/functions",
            json={
                "name": "echo",
                "source": "def main(event):\n    return event.data\n",
                "triggers": [{"type": "event", "event_name": "ping"}],
            },
        ).json()
        publish(api, "ping", "before")
        poll(lambda: api.get(f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"], timeout=15)
    env = {**server.env, "LOGIC_PORT": str(server.port)}
    cmd = [*LOGIC, "functions", "logs", "echo", "--follow", "--json"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as tail:
        results: list = []
        reader = threading.Thread(target=lambda: [results.append(json.loads(x)["result"]) for x in tail.stdout])
        reader.start()
        poll(lambda: results == ["before"], timeout=20)
        with server.client() as api:
            publish(api, "ping", "after")
        poll(lambda: results == ["before", "after"], timeout=20)
        tail.send_signal(signal.SIGINT)
        tail.wait(timeout=20)
        reader.join(timeout=10)
    assert tail.returncode == 0 and results == ["before", "after"]
    tokens = json.loads(server.cli("tokens", "list", "--json").stdout)
    assert not any(t["label"] == "logic tail (temporary)" for t in tokens)


def test_a_tail_without_a_server_says_what_to_do(make_server, tmp_path):
    server = make_server()  # initialised, never started
    env = {**server.env, "LOGIC_PORT": "9"}  # nothing listens on the discard port
    done = subprocess.run([*LOGIC, "subscribe"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no server at http://127.0.0.1:9: start `logic serve`" in done.stderr
    foreign = subprocess.run([*LOGIC, "subscribe", "--org", "nope"], env=env, capture_output=True, text=True)
    assert foreign.returncode == 1 and "nope" in foreign.stderr


def test_integrations_logs_follow_prints_each_new_request_masked(make_server, receiver):
    server = make_server()
    server.start()
    with server.client() as api:
        assert api.post("/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
        hook = {"name": "hook", "event": "tap", "url": receiver.url + "/in", "secrets": ["API_KEY"]}
        hook["headers"] = {"X-Key": "{{{API_KEY}}}"}
        assert api.post("/v1/integrations", json=hook).status_code == 201
    env = {**server.env, "LOGIC_PORT": str(server.port)}
    cmd = [*LOGIC, "integrations", "logs", "hook", "--follow", "--json"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as tail:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: [lines.append(x) for x in tail.stdout], daemon=True)
        reader.start()
        with server.client() as api:

            def logged() -> bool:  # the tail starts at connection: publish until one request shows
                publish(api, "tap", "knock")
                return bool(lines)

            poll(logged, timeout=30, interval=1.0)
        tail.send_signal(signal.SIGINT)
        tail.wait(timeout=20)
        reader.join(timeout=10)
    assert tail.returncode == 0
    entry = json.loads(lines[0])
    assert entry["ok"] and receiver.requests[0].headers.get("X-Key") == SECRET
    assert SECRET not in "".join(lines) and "[[SENSITIVE]]" in "".join(lines)
