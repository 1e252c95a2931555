"""FastAPI's own OpenTelemetry export stays off, whatever providers the process has.

Threat: an operator runs `logic serve` under `opentelemetry-instrument` (or installs
a tracer provider for their own code); FastAPI >= 0.165 would then send every
request's path, query and exceptions to the collector, an output our redaction
never sees. A recording provider stands in for the collector; the same request to
a plain FastAPI app is recorded (the check can see a span), to ours it is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace

from runtime.http.app import create_app
from runtime.service import Service
from store import Settings
from tests.support import in_process_service


class RecordingTracer(trace.NoOpTracer):
    def __init__(self, spans: list[dict]):
        self.spans = spans

    def start_span(self, name, context=None, kind=trace.SpanKind.INTERNAL, attributes=None, *args, **kwargs):
        self.spans.append({"name": name, **dict(attributes or {})})
        return super().start_span(name, context, kind, attributes, *args, **kwargs)


class RecordingProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.spans: list[dict] = []

    def get_tracer(self, *args, **kwargs) -> trace.Tracer:
        return RecordingTracer(self.spans)


@pytest.fixture
def collector(monkeypatch):
    provider = RecordingProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    return provider


def test_a_plain_fastapi_app_would_send_its_requests_to_the_collector(collector):
    app = FastAPI()
    app.add_api_route("/v1/secrets/{name}", lambda name: {"name": name})
    with TestClient(app) as client:
        assert client.get("/v1/secrets/API_KEY?q=1").status_code == 200
    request = collector.spans[0]  # then FastAPI's own spans of the dependencies, endpoint, ...
    assert (request["url.path"], request["url.query"]) == ("/v1/secrets/API_KEY", "q=1")


def test_logic_serve_sends_nothing_to_the_collector(collector, tmp_path: Path):
    settings = Settings(home=tmp_path / "home", master_key=None)
    token = Service.initialize(settings).token
    service = in_process_service(settings)
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            auth = {"Authorization": f"Bearer {token}"}
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/secrets/API_KEY?q=1", headers=auth).status_code == 404
            assert client.post("/v1/events", json={"name": "e", "data": "d"}, headers=auth).status_code == 202
            assert client.get("/v1/secrets", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        service.close()
    assert collector.spans == []
