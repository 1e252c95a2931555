"""The whole path against a real `logic serve`: secret -> function -> event -> run -> audit."""

from __future__ import annotations

import signal

SECRET = "e2e-Secret-Value-7f3a9c"
NEW_SECRET = "rotated-Value-0b41d2e8"

SOURCE = """
import json
import logic

def main(event, secrets):
    key = secrets.API_KEY
    logic.log.info("using key", key)
    logic.publish("reading-auth", {"len": len(key), "key": key})
    return {"key_len": len(key), "echo": key, "data": json.loads(event.data)}
"""

FUNCTION = {
    "name": "uses-key",
    "secrets": ["API_KEY"],
    "source": SOURCE,
    "triggers": [{"type": "event", "event_name": "sensor-test"}],
}


def runs_of(client, fid, n):
    runs = client.get(f"/v1/logic/functions/{fid}/runs").json()["logic_runs"]
    return runs if len(runs) >= n else None


def test_secret_function_event_run_audit(make_server, wait_for):
    server = make_server()
    server.start()
    seen: list[str] = []
    with server.client() as api:

        def call(method, url, **kw):
            response = api.request(method, url, **kw)
            seen.append(response.text)
            return response

        assert call("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code in (200, 201)
        created = call("POST", "/v1/logic/functions", json=FUNCTION)
        assert created.status_code in (200, 201), created.text
        fid = created.json()["id"]

        accepted = call("POST", "/v1/events", json={"name": "sensor-test", "data": '{"t": 21}'})
        assert accepted.status_code == 202
        event_id = accepted.json()["id"]

        run = wait_for(lambda: runs_of(api, fid, 1))[0]
        seen.append(str(run))
        assert run["status"] == "success", run
        assert run["trigger"]["type"] == "event" and run["trigger"]["event_id"] == event_id
        assert run["trigger"]["event"]["data"] == '{"t": 21}' and run["trigger"]["scheduled_at"] is None
        assert run["result"] == {"key_len": len(SECRET), "echo": "[[SENSITIVE]]", "data": {"t": 21}}
        assert run["logs"][0]["message"] == "using key [[SENSITIVE]]"
        assert run["events_published"] == [
            {"name": "reading-auth", "data": '{"len":%d,"key":"[[SENSITIVE]]"}' % len(SECRET)}
        ]
        assert run["secrets_accessed"] == ["API_KEY"]

        info = call("GET", "/v1/secrets/API_KEY").json()
        assert info["usage_count"] == 1 and info["logic_functions"] == ["uses-key"]
        assert info["last_accessed_at"] is not None

        refused = call("DELETE", "/v1/secrets/API_KEY")
        assert refused.status_code == 409 and "uses-key" in refused.json()["error"]

        assert call("PUT", "/v1/secrets/API_KEY", json={"value": NEW_SECRET}).status_code == 200
        call("POST", "/v1/events", json={"name": "sensor-test", "data": '{"t": 22}'})
        newest = wait_for(lambda: runs_of(api, fid, 2))[0]
        seen.append(str(newest))
        assert newest["result"]["key_len"] == len(NEW_SECRET)
        later = call("GET", "/v1/secrets/API_KEY").json()
        assert later["last_accessed_at"] > info["last_accessed_at"]

    audit = server.cli("audit", "--secret", "API_KEY", "--json")
    assert audit.returncode == 0 and audit.stdout.count('"run_id"') == 2

    assert server.stop(signal.SIGTERM) == 0
    everything = "\n".join(seen) + server.output() + audit.stdout
    assert SECRET not in everything and NEW_SECRET not in everything
