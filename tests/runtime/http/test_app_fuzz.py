"""Schemathesis against the app's own OpenAPI schema: whatever a valid token sends,
the API answers with a 2xx/4xx and never a 5xx (promise 6: bad input gets a
clear error). Bounded and derandomized, so a run is quick and reproducible."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from runtime.http.app import create_app
from runtime.service import Service
from store import Settings, Store


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory):
    """A real service with workers (so the execute route runs code), a secret, a function
    and an org for the generated requests to stumble on; yields (app, token)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LOGIC_"):
                mp.delenv(name)
        config = Settings(home=Path(tmp_path_factory.mktemp("api-fuzz")) / "home", workers=2, run_timeout_s=2.0)
    store, init = Store.initialize(config)
    store.close()
    service = Service.open(config, runtime=True)
    try:
        app = create_app(service)
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {init.token}"}
            client.post("/v1/secrets", json={"name": "API_KEY", "value": "fuzz-secret"}, headers=headers)
            client.post(
                "/v1/logic/functions",
                headers=headers,
                json={"name": "fn", "secrets": ["API_KEY"], "source": "def main(secrets):\n    return 1\n"},
            )
        service.create_org(service.actor(), "acme")
        yield app, init.token
    finally:
        service.close()


class _Shell:
    """The schema does not depend on the service, so collection needs no store or workers.
    (schemathesis.pytest.from_fixture would, but it breaks on pytest 9: no Function._nodeid.)
    It has what create_app reads of a Service: its settings, and no worker pool."""

    settings = Settings()
    pool = None


# The live streams never end, so a fuzzed request to one would never return: they have their
# own tests (tests/runtime/http/test_live.py, tests/e2e/test_streams.py).
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_Shell())).exclude(
    method="GET", path_regex=r"(/events(/\{prefix\})?|/stream)$"
)


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_a_server_error(case, fuzzed) -> None:
    app, token = fuzzed
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
