"""Helpers shared by the integration tests: a sample event, a spec over defaults, the refusal advice."""

from __future__ import annotations

from runtime.integrations.spec import parse_spec

EVENT = {
    "id": "ev-1",
    "name": "sensor/temp",
    "data": '{"t": 21.5, "room": "lab", "nested": {"a": [1, 2]}, "flag": true, "none": null}',
    "published_at": "2024-05-01T12:00:00.000000Z",
    "source": "dev-7",
}
ALLOW = "set LOGIC_WEBHOOK_ALLOW_PRIVATE=true to allow it"  # how every refused destination ends


def spec(**fields):
    data = {"name": "notify", "event": "sensor/", "url": "https://api.example.com/v1"}
    data.update(fields)
    return parse_spec(data)
