"""Run replay through a real `logic serve`: an event's run replayed over the API and the
CLI runs the deployed version again with the very same event, as a new stored run."""

from __future__ import annotations

import json

from tests.e2e.conftest import poll

SECRET = "e2e-replay-secret-4f1a8c2d"
SOURCE = """def main(event, secrets):
    return {"version": VERSION, "event": [event.id, event.name, event.data], "key": secrets.KEY}
"""


def test_replay_over_the_api_and_the_cli(make_server):
    server = make_server()
    server.start()
    with server.client() as api:
        assert api.post("/v1/secrets", json={"name": "KEY", "value": SECRET}).status_code == 201
        body = {"name": "echo", "secrets": ["KEY"], "triggers": [{"type": "event", "event_name": "in"}]}
        fn = api.post("/v1/logic/functions", json={**body, "source": SOURCE.replace("VERSION", "1")}).json()
        accepted = api.post("/v1/events", json={"name": "in", "data": "reading 7"}).json()
        (first,) = poll(lambda: api.get(f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"])
        assert first["result"]["event"] == [accepted["id"], "in", "reading 7"]
        assert first["result"]["key"] == "[[SENSITIVE]]"
        api.post("/v1/logic/functions", json={**body, "source": SOURCE.replace("VERSION", "2")})

        replayed = api.post(f"/v1/logic/runs/{first['id']}/replay")
        assert replayed.status_code == 201, replayed.text
        replay = replayed.json()
        assert replay["replay_of"] == first["id"] and replay["function_version"] == 2
        assert replay["result"]["event"] == first["result"]["event"] and replay["result"]["version"] == 2
        assert SECRET not in replayed.text

    cli = server.cli("runs", "replay", replay["id"], "--json")
    assert cli.returncode == 0, cli.stderr
    again = json.loads(cli.stdout)
    assert again["replay_of"] == replay["id"] and again["result"]["event"] == first["result"]["event"]
    missing = server.cli("runs", "replay", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: run nope does not exist")
