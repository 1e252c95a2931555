"""`logic.mask` through a real `logic serve`: a function derives an HMAC from a secret,
masks it, then logs, returns and publishes it (also its base64, hex, URL and JSON forms).
The stored run record (API, Particle's run logs, CLI), the published events in the store
and in a subscriber's stream, and the runs stream never show it. A twin function that
does not call mask proves the searched strings are really what the run wrote."""

from __future__ import annotations

import json
import sqlite3

from store.sensitive import MASK
from tests.e2e.conftest import poll
from tests.e2e.test_streams import Subscriber, publish
from tests.security.test_mask import DATA, FORBIDDEN, MASKED, SECRET, UNMASKED, assert_clean


def function(name: str, source: str, event: str) -> dict:
    trigger = {"type": "event", "event_name": event}
    return {"name": name, "secrets": ["SIGNING_KEY"], "source": source, "triggers": [trigger]}


def test_a_masked_hmac_shows_in_no_log_result_event_stream_or_file(make_server):
    server = make_server()
    server.start()
    with server.client() as api:
        assert api.post("/v1/secrets", json={"name": "SIGNING_KEY", "value": SECRET}).status_code == 201
        masked = api.post("/v1/logic/functions", json=function("signer", MASKED, "sign/masked")).json()
        plain = api.post("/v1/logic/functions", json=function("plain", UNMASKED, "sign/plain")).json()
        events = Subscriber(server, "/v1/events/signed", 2)
        runs = Subscriber(server, f"/v1/logic/functions/{masked['id']}/runs/stream", 1)
        for sub in (events, runs):
            sub.start()
            assert sub.opened.wait(10)
        publish(api, "sign/masked", DATA)
        for sub in (events, runs):
            sub.join(timeout=30)
        publish(api, "sign/plain", DATA)

        def finished(fn: dict) -> list:
            return api.get(f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"]

        (control,) = poll(lambda: finished(plain))
        (record,) = finished(masked)
        run_logs = api.get(f"/v1/logic/functions/{masked['id']}/runs/{record['id']}/logs").json()

    # The control: unmasked, the very strings searched for are in its record.
    text = json.dumps(control)
    assert all(form in text for form in FORBIDDEN), "the control run did not write what the test searches for"

    assert record["status"] == "success", record["error"]
    assert record["result"] == {"signature": MASK, "b64": MASK}
    messages = [line["message"] for line in record["logs"]]
    assert messages[0] == f"before the mask {MASK}"  # the parent masks the whole record, earlier lines too
    assert messages[1] == f"signature {MASK}" and messages[2] == f"encoded {MASK} {MASK}"
    (out, text_event) = record["events_published"]
    assert json.loads(out["data"]) == {"sig": MASK, "again": f'"{MASK}"'} and text_event["data"] == f"sig={MASK}"
    assert_clean(json.dumps(record), "the API's run record")
    assert_clean(json.dumps(run_logs), "the Particle-shaped run logs")
    assert_clean("\n".join(events.raw), "the event stream")
    assert_clean("\n".join(runs.raw), "the runs stream")
    assert [name for name, _ in events.frames] == ["signed/out", "signed/text"]

    cli_logs = server.cli("functions", "logs", "signer", "--json")
    cli_show = server.cli("runs", "show", record["id"])
    assert cli_logs.returncode == 0 and cli_show.returncode == 0, cli_logs.stderr + cli_show.stderr
    assert MASK in cli_show.stdout
    assert_clean(cli_logs.stdout + cli_show.stdout, "the CLI")

    conn = sqlite3.connect(server.home / "logic.db")
    try:
        stored_events = repr(
            conn.execute("SELECT name, data FROM events WHERE source = ?", (f"run:{record['id']}",)).fetchall()
        )
        stored_run = conn.execute("SELECT record FROM runs WHERE id = ?", (record["id"],)).fetchone()[0]
    finally:
        conn.close()
    assert "signed/out" in stored_events
    assert_clean(stored_events, "the events table")
    assert_clean(stored_run, "the stored run record")
    # (The control's own record and events hold the signature in plaintext: it did not mask.)
