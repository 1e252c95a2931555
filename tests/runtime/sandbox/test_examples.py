"""Every function in logic_examples/ compiles and runs in the sandbox with sample data."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import pytest

from runtime.sandbox import run_function
from runtime.sandbox.testing import RecordingHost, compile_source, default_limits

EXAMPLES = Path(__file__).resolve().parents[3] / "logic_examples"

SAMPLES = {
    "decode-base64": {"event": {"data": base64.b64encode(struct.pack(">HhB", 7, 2150, 40)).decode()}},
    "decode-base85": {
        "event": {"data": base64.b85encode(zlib.compress(json.dumps([{"t": 20.5}, {"t": 22.5}]).encode())).decode()}
    },
    "decode-data-url": {
        "event": {"data": "data:application/json;base64," + base64.b64encode(b'{"b": 1, "a": 2}').decode()}
    },
    "heartbeat": {
        "scheduled": {"scheduled_at": "2024-01-01T00:05:00Z", "cron": "*/5 * * * *"},
        "function_info": {"id": "f1", "name": "heartbeat", "version": 1, "owner": "user:alice"},
    },
    "reformat-json": {
        "event": {"data": '{"i": 1, "t": 20.04, "h": 40}', "source": "dev", "published_at": "2024-01-01T00:00:00Z"}
    },
    "sign-payload": {"event": {"data": '{"i": 1}'}},
}


def manifests():
    return sorted(EXAMPLES.glob("*/*.logic.json"))


@pytest.mark.parametrize("manifest", manifests(), ids=lambda p: p.parent.name)
def test_example_runs(manifest):
    spec = json.loads(manifest.read_text())
    source_path = manifest.with_name(manifest.name.replace(".logic.json", ".py"))
    declared = spec.get("secrets", [])
    fn = compile_source(
        source_path.read_text(), filename=source_path.name, entry=spec.get("entry", "main"), declared_secrets=declared
    )
    host = RecordingHost({name: "example-secret" for name in declared})
    outcome = run_function(fn, SAMPLES.get(spec["name"], {}), host, declared_secrets=declared, limits=default_limits())
    assert outcome.status == "success", outcome.error
    assert host.events, "every example publishes"
