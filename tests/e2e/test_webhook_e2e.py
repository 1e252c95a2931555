"""A webhook to a real HTTP receiver on loopback, its response back as an event to a function."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

SECRET = "hook-Secret-4d2b91ce77"


HANDLER = """
import json

def main(event):
    return {"got": event.name, "data": json.loads(event.data)}
"""


def test_webhook_gets_secret_log_is_masked_response_triggers_function(make_server, wait_for, receiver):
    # The receiver echoes the Authorization header it got: the response event quotes the secret.
    receiver.body = lambda got: json.dumps({"stored": True, "echo": got.headers.get("Authorization")}).encode()
    server = make_server()
    server.start()
    with server.client() as api:
        assert api.post("/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
        hook = api.post(
            "/v1/integrations",
            json={
                "name": "ingest",
                "event": "sensor/",
                "secrets": ["API_KEY"],
                "url": receiver.url + "/ingest?key={{{API_KEY}}}",
                "headers": {"Authorization": "Bearer {{{API_KEY}}}"},
                "json": {"name": "{{{EVENT_NAME}}}", "value": "{{{EVENT_DATA}}}"},
            },
        )
        assert hook.status_code == 201, hook.text
        fn = api.post(
            "/v1/logic/functions",
            json={
                "name": "on-response",
                "source": HANDLER,
                "triggers": [{"type": "event", "event_name": "hook-response/sensor/temp"}],
            },
        )
        assert fn.status_code == 201, fn.text

        assert api.post("/v1/events", json={"name": "sensor/temp", "data": "21.5"}).status_code == 202
        wait_for(lambda: receiver.requests)
        request = receiver.requests[0]
        assert request.headers["Authorization"] == f"Bearer {SECRET}"
        assert parse_qs(urlparse(request.path).query) == {"key": [SECRET]}
        body = json.loads(request.text)  # the template's fields beside Particle's default ones
        assert body.pop("published_at").endswith("Z")
        assert body == {"name": "sensor/temp", "value": "21.5", "event": "sensor/temp", "data": "21.5", "coreid": ""}

        logs = wait_for(lambda: api.get(f"/v1/integrations/{hook.json()['id']}/logs").json()["logs"])
        text = json.dumps(logs)
        assert SECRET not in text and "[[SENSITIVE]]" in text
        assert logs[0]["response"]["status"] == 200

        fid = fn.json()["id"]
        runs = wait_for(lambda: api.get(f"/v1/logic/functions/{fid}/runs").json()["logic_runs"])
        assert runs[0]["status"] == "success"
        # The receiver echoed the secret back: the response event carries it masked.
        assert runs[0]["result"] == {
            "got": "hook-response/sensor/temp",
            "data": {"stored": True, "echo": "Bearer [[SENSITIVE]]"},
        }
        assert api.get("/v1/secrets/API_KEY").json()["integrations"] == ["ingest"]
    server.stop()
    assert SECRET not in server.output()
