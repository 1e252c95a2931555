"""Every function in logic_examples/ deployed as it ships and run with realistic
data, end to end: the event bus or the scheduler makes the delivery, the
dispatcher runs it in a real worker, and the test checks what a device or a
receiving service would see."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import urllib.parse
import zlib
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.manifest import load_files
from store.clock import parse_iso
from store.errors import NotFound
from tests.support import runtime_service

EXAMPLES = Path(__file__).resolve().parents[2] / "logic_examples"
EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and any(p.glob("*.logic.json")))
SIGNING_KEY = "hmac-signing-key-3b8e1f0a9c7d5e2f"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(tmp_path_factory, "examples", workers=2, run_timeout_s=10.0)
    try:
        actor = service.actor()
        service.create_secret(actor, "SIGNING_KEY", SIGNING_KEY)
        yield service, actor
    finally:
        service.close()


def deployed(env, name: str):
    service, actor = env
    try:
        return service.get_function(actor, name)
    except NotFound:
        return service.deploy_function(actor, EXAMPLES / name.replace("-", "_"))


def deliver(env, event_name: str, data: str | None, function: str) -> dict:
    """Publish as a device would, let the dispatcher run it, return the function's newest run."""
    service, actor = env
    deployed(env, function)
    accepted = service.publish_event(actor, event_name, data)
    assert accepted["deliveries"] >= 1
    service.dispatcher().drain()
    run = service.function_runs(actor, function, limit=1)[0]
    assert run["trigger"]["type"] == "event" and run["trigger"]["event_id"] == accepted["id"]
    assert run["trigger"]["event"]["name"] == event_name and run["trigger"]["scheduled_at"] is None
    return run


def test_there_are_six_examples():
    assert [p.name for p in EXAMPLE_DIRS] == [
        "decode_base64",
        "decode_base85",
        "decode_data_url",
        "heartbeat",
        "reformat_json",
        "sign_payload",
    ]


@pytest.mark.parametrize("directory", EXAMPLE_DIRS, ids=lambda p: p.name)
def test_every_example_deploys_as_it_ships(env, directory):
    service, actor = env
    files = load_files(directory)
    fn = deployed(env, files.manifest.name)
    data = fn.to_json()
    manifest = json.loads(next(directory.glob("*.logic.json")).read_text())
    assert data["name"] == manifest["name"] and data["description"] == manifest["description"]
    assert data["secrets"] == manifest.get("secrets", [])
    assert data["triggers"] == manifest["triggers"]
    assert fn.source == files.source and fn.enabled


# decode-base64 ------------------------------------------------------------------------------


@pytest.mark.parametrize("sensor_id, centi_c, humidity", [(513, -1234, 55), (65535, 32767, 255), (0, 0, 0)])
def test_decode_base64_frames(env, sensor_id, centi_c, humidity):
    frame = struct.pack(">HhB", sensor_id, centi_c, humidity)
    run = deliver(env, "sensor-b64", base64.b64encode(frame).decode(), "decode-base64")
    expected = {"id": sensor_id, "temperature_c": centi_c / 100, "humidity_pct": humidity}
    assert run["status"] == "success", run["error"]
    assert run["result"] == expected
    assert [(e["name"], json.loads(e["data"])) for e in run["events_published"]] == [("sensor-decoded", expected)]


def test_decode_base64_reads_url_safe_and_unpadded_frames(env):
    frame = struct.pack(">HhB", 0xFBFF, -1, 0xFE)  # bytes that encode to '+' and '/' in the standard alphabet
    standard = base64.b64encode(frame).decode()
    assert "+" in standard or "/" in standard
    for text in (standard, base64.urlsafe_b64encode(frame).decode(), standard.rstrip("=")):
        assert deliver(env, "sensor-b64", text, "decode-base64")["result"]["id"] == 0xFBFF


def test_decode_base64_bad_frame_is_a_clear_error(env):
    run = deliver(env, "sensor-b64", base64.b64encode(b"\x01\x02").decode(), "decode-base64")
    assert run["status"] == "error"
    assert run["error"]["type"] == "error"  # struct.error
    assert "unpack requires a buffer of 5 bytes" in run["error"]["message"]
    assert 'File "decode-base64.py", line 11, in main' in run["error"]["traceback"]
    assert run["events_published"] == []
    bad = deliver(env, "sensor-b64", "not base64 at all!", "decode-base64")
    assert bad["status"] == "error" and bad["error"]["type"] == "ValueError"


# decode-base85 ---------------------------------------------------------------------------------


def test_decode_base85_summarises_a_compressed_batch(env):
    batch = [{"t": t, "ts": 1_700_000_000 + 60 * i} for i, t in enumerate([20.5, 21.0, 19.75, 22.25, 20.0])]
    packed = base64.b85encode(zlib.compress(json.dumps(batch).encode(), 9)).decode()
    run = deliver(env, "sensor-b85", packed, "decode-base85")
    summary = {"count": 5, "min": 19.75, "max": 22.25, "mean": 20.7}
    assert run["status"] == "success", run["error"]
    assert run["result"] == summary
    assert run["events_published"] == [{"name": "batch-summary", "data": json.dumps(summary, separators=(",", ":"))}]


def test_decode_base85_of_a_large_batch(env):
    batch = [{"t": round(15 + (i % 100) / 10, 1)} for i in range(5000)]
    packed = base64.b85encode(zlib.compress(json.dumps(batch).encode())).decode()
    assert len(packed) < 100 * 1024  # fits in one event
    run = deliver(env, "sensor-b85", packed, "decode-base85")
    assert run["result"]["count"] == 5000 and run["result"]["min"] == 15.0 and run["result"]["max"] == 24.9


# decode-data-url ------------------------------------------------------------------------------------


def test_decode_data_url_json_in_base64_and_percent_encoding(env):
    config = {"interval_s": 60, "threshold": 21.5, "name": "greenhouse \u00e9"}
    raw = json.dumps(config).encode()
    for url in (
        f"data:application/json;base64,{base64.b64encode(raw).decode()}",
        f"data:application/json,{urllib.parse.quote(raw)}",
    ):
        run = deliver(env, "config-upload", url, "decode-data-url")
        assert run["status"] == "success", run["error"]
        assert run["result"] == {
            "accepted": True,
            "mime_type": "application/json",
            "keys": ["interval_s", "name", "threshold"],
        }
        (event,) = run["events_published"]
        assert event["name"] == "config-received" and json.loads(event["data"]) == config


def test_decode_data_url_ignores_other_types(env):
    url = "data:text/plain;base64," + base64.b64encode(b"hello").decode()
    run = deliver(env, "config-upload", url, "decode-data-url")
    assert run["result"] == {"accepted": False, "mime_type": "text/plain"}
    assert [(line["level"], line["message"]) for line in run["logs"]] == [("warning", "ignoring text/plain")]
    assert run["events_published"] == []
    broken = deliver(env, "config-upload", "not-a-data-url", "decode-data-url")
    assert broken["status"] == "error" and broken["error"]["type"] == "ValueError"


# heartbeat ------------------------------------------------------------------------------------------


def test_heartbeat_runs_on_its_schedule(env):
    service, actor = env
    fn = deployed(env, "heartbeat")
    tick = service.store.db.one("SELECT next_fire_at FROM triggers WHERE function_id = ?", (fn.id,))[0]
    at = parse_iso(tick)
    assert at.minute % 5 == 0 and at.second == 0 and at.microsecond == 0
    scheduler = service.scheduler(clock=lambda: at + timedelta(seconds=1))
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0  # the same tick never fires twice
    service.dispatcher().drain()
    (run,) = service.function_runs(actor, "heartbeat")
    assert run["status"] == "success", run["error"]
    assert run["trigger"]["type"] == "schedule" and run["trigger"]["event_id"] is None
    assert run["trigger"]["scheduled_at"] == tick and run["trigger"]["event"] is None
    beat = {"function": "heartbeat", "version": fn.version, "tick": tick, "cron": "*/5 * * * *"}
    assert run["result"] == beat
    assert run["events_published"] == [{"name": "heartbeat", "data": json.dumps(beat, separators=(",", ":"))}]
    following = service.store.db.one("SELECT next_fire_at FROM triggers WHERE function_id = ?", (fn.id,))[0]
    assert parse_iso(following) == at + timedelta(minutes=5)


def test_heartbeat_by_hand_has_no_tick(env):
    service, actor = env
    deployed(env, "heartbeat")
    run = service.execute_function(actor, "heartbeat")
    assert run["status"] == "error"
    assert run["error"]["type"] == "AttributeError"  # `scheduled` is None outside a schedule trigger
    assert re.search(r'File "heartbeat.py", line [67], in main', run["error"]["traceback"])  # 3.11 says 7


# reformat-json -----------------------------------------------------------------------------------


def test_reformat_json(env):
    service, actor = env
    run = deliver(env, "sensor-test", json.dumps({"i": 7, "t": 21.456, "h": 40}), "reformat-json")
    assert run["status"] == "success", run["error"]
    event = service.store.events.event(run["trigger"]["event_id"])
    tidy = {"id": 7, "temperature_c": 21.5, "humidity_pct": 40, "received_at": event["published_at"]}
    assert run["result"] == tidy
    assert [line["message"] for line in run["logs"]] == [f"reading 7 from user:{actor.name}"]
    assert [(e["name"], json.loads(e["data"])) for e in run["events_published"]] == [("data-reformatted", tidy)]
    without_h = deliver(env, "sensor-test", '{"i": 8, "t": 3}', "reformat-json")
    assert without_h["result"]["humidity_pct"] is None and without_h["result"]["temperature_c"] == 3


# sign-payload ----------------------------------------------------------------------------------------


def test_sign_payload_signs_with_the_secret(env):
    service, actor = env
    reading = {"sensor": "greenhouse-1", "t": 21.5, "h": 40, "at": "2024-05-01T12:00:00Z"}
    run = deliver(env, "reading", json.dumps(reading), "sign-payload")
    assert run["status"] == "success", run["error"]
    body = json.dumps(reading, sort_keys=True, separators=(",", ":"))
    assert run["result"] == {"signed": True, "bytes": len(body)}
    (event,) = run["events_published"]
    assert event["name"] == "signed/reading"
    signed = json.loads(event["data"])
    assert signed["body"] == body
    # The receiver verifies with the same key.
    expected = hmac.new(SIGNING_KEY.encode(), body.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signed["signature"], expected)
    assert run["secrets_accessed"] == ["SIGNING_KEY"]
    (access,) = [a for a in service.audit(actor, "SIGNING_KEY") if a.run_id == run["id"]]
    assert (access.consumer_kind, access.consumer_name) == ("logic_function", "sign-payload")
    assert SIGNING_KEY not in json.dumps(run)
    # The signed event was published for a webhook to pick up.
    published = service.store.db.one("SELECT name, data, source FROM events WHERE source = ?", (f"run:{run['id']}",))
    assert (published[0], json.loads(published[1])) == ("signed/reading", signed)


def test_sign_payload_sees_a_rotated_key_at_once(env):
    service, actor = env
    deployed(env, "sign-payload")
    rotated = "hmac-signing-key-rotated-6d4c2b0a"
    service.update_secret(actor, "SIGNING_KEY", rotated)
    try:
        run = deliver(env, "reading", '{"x": 1}', "sign-payload")
        signed = json.loads(run["events_published"][0]["data"])
        assert signed["signature"] == hmac.new(rotated.encode(), b'{"x":1}', hashlib.sha256).hexdigest()
    finally:
        service.update_secret(actor, "SIGNING_KEY", SIGNING_KEY)
