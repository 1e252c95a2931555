"""The HTTP API over a real Service: every route's happy path, its errors, the shapes.

Every response any test here receives is checked for the secret values the
tests use (`Api.check_no_secret`, run at teardown): promise 1 at the API.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.service import Service
from store import Settings, Store
from store.errors import QueueFull
from tests.support import in_process_service

SECRET = "s3cr3t-VALUE-7f4e2a"  # every test's secret value; no response may contain it
OTHER_SECRET = "an0ther-VALUE-91c3d8"
SECRET_KEYS = {"name", "created_at", "updated_at", "last_accessed_at", "usage_count", "logic_functions", "integrations"}

SOURCE = """\
import logic

def main(event, secrets):
    logic.log.info("event", event.name if event else None, "key", secrets.API_KEY)
    return {"ok": True, "length": len(secrets.API_KEY)}
"""


def function_body(name: str = "reformat", **changes) -> dict:
    body = {
        "name": name,
        "description": "test function",
        "secrets": ["API_KEY"],
        "triggers": [{"type": "event", "event_name": "sensor-test"}],
        "source": SOURCE,
    }
    body.update(changes)
    return body


def webhook_body(name: str = "notify", **changes) -> dict:
    body = {
        "name": name,
        "event": "sensor/",
        "url": "https://api.example.com/in?key={{{API_KEY}}}",
        "method": "POST",
        "json": {"name": "{{{EVENT_NAME}}}"},
        "secrets": ["API_KEY"],
    }
    body.update(changes)
    return body


class Api:
    """A TestClient that sends the token and remembers every response."""

    def __init__(self, client: TestClient, token: str, service: Service):
        self.client = client
        self.token = token
        self.service = service
        self.responses = []
        self.secrets = {SECRET, OTHER_SECRET}

    def __call__(self, method: str, url: str, *, token: str | None = "default", **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        token = self.token if token == "default" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.responses.append(response)
        return response

    def check_no_secret(self) -> None:
        for response in self.responses:
            seen = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
            for value in self.secrets:
                assert value not in seen, f"{response.request.method} {response.request.url} leaked a secret"


def open_service(settings: Settings) -> tuple[Service, str]:
    store, init = Store.initialize(settings)
    store.close()
    return Service.open(settings), init.token


@pytest.fixture
def service(settings: Settings):
    opened, token = open_service(settings)
    opened.test_token = token
    yield opened
    opened.close()


@pytest.fixture
def api(service: Service):
    with TestClient(create_app(service)) as client:
        api = Api(client, service.test_token, service)
        yield api
    api.check_no_secret()


@pytest.fixture
def with_key(api: Api) -> Api:
    """The admin has secret API_KEY."""
    assert api("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
    return api


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"} and isinstance(body["error"], str) and body["error"]
    assert body["error_description"] == body["error"]
    return body["error"]


# server ----------------------------------------------------------------------


def test_healthz_needs_no_token(api: Api) -> None:
    response = api("GET", "/healthz", token=None)
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_openapi_documents_every_route_and_bearer_auth(api: Api) -> None:
    schema = api("GET", "/openapi.json", token=None).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    for path in [
        "/v1/secrets",
        "/v1/secrets/{name}",
        "/v1/orgs/{org}/secrets/{name}",
        "/v1/logic/functions",
        "/v1/logic/functions/{function_id}/runs/{run_id}",
        "/v1/logic/execute",
        "/v1/events",
        "/v1/orgs/{org}/events",
        "/v1/integrations/{integration_id}/logs",
        "/v1/orgs/{org}/integrations/{integration_id}",
    ]:
        assert path in paths, path
    assert set(paths["/v1/secrets/{name}"]) == {"get", "put", "delete"}
    assert paths["/v1/secrets"]["post"]["security"] == [{"HTTPBearer": []}]
    created = schema["components"]["schemas"]["SecretCreate"]
    assert set(created["required"]) == {"name", "value"}
    assert "value" not in schema["components"]["schemas"]["SecretOut"]["properties"]
    assert api("GET", "/docs", token=None).status_code == 200


def test_unknown_route_and_wrong_method(api: Api) -> None:
    assert error_of(api("GET", "/v1/nothing-here"), 404)
    response = api("PATCH", "/v1/secrets")
    assert "PATCH" in error_of(response, 405)
    assert "GET" in response.headers["allow"] and "POST" in response.headers["allow"]


# secrets ---------------------------------------------------------------------


def test_secret_lifecycle(api: Api) -> None:
    assert api("GET", "/v1/secrets").json() == {"secrets": []}
    created = api("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET})
    assert created.status_code == 201
    info = created.json()
    assert set(info) == SECRET_KEYS
    assert info["name"] == "API_KEY" and info["usage_count"] == 0 and info["last_accessed_at"] is None
    assert info["created_at"].endswith("Z") or "+00:00" in info["created_at"]

    assert api("GET", "/v1/secrets").json() == {"secrets": [info]}
    one = api("GET", "/v1/secrets/API_KEY").json()
    assert {k: v for k, v in one.items() if k != "secret"} == info  # plus Particle's copy, in "secret"
    assert one["secret"]["name"] == "API_KEY" and "value" not in one["secret"]

    updated = api("PUT", "/v1/secrets/API_KEY", json={"value": OTHER_SECRET})
    assert updated.status_code == 200 and set(updated.json()) == SECRET_KEYS
    assert api.service.store.secrets.reveal("user:" + api.service.actor().name, "API_KEY").reveal() == OTHER_SECRET

    deleted = api("DELETE", "/v1/secrets/API_KEY")
    assert deleted.status_code == 204 and deleted.content == b""
    assert "API_KEY" in error_of(api("GET", "/v1/secrets/API_KEY"), 404)


def test_secret_errors_change_nothing(with_key: Api) -> None:
    api = with_key
    before = api("GET", "/v1/secrets").json()
    assert "already exists" in error_of(api("POST", "/v1/secrets", json={"name": "API_KEY", "value": "x"}), 409)
    for name in ["api_key", "1KEY", "A-B", "", "K" * 65]:
        error_of(api("POST", "/v1/secrets", json={"name": name, "value": SECRET}), 422)
    assert "empty" in error_of(api("POST", "/v1/secrets", json={"name": "EMPTY", "value": ""}), 422)
    error_of(api("POST", "/v1/secrets", json={"name": "NUM", "value": 12345}), 422)
    error_of(api("POST", "/v1/secrets", json={"name": "LIST", "value": [SECRET]}), 422)
    assert "value" in error_of(api("POST", "/v1/secrets", json={"name": "MISSING"}), 422)
    assert "valu" in error_of(api("POST", "/v1/secrets", json={"name": "TYPO", "valu": SECRET}), 422)
    error_of(api("POST", "/v1/secrets", json=[SECRET]), 422)
    error_of(api("POST", "/v1/secrets"), 422)
    error_of(api("PUT", "/v1/secrets/API_KEY", json={"value": ""}), 422)
    error_of(api("PUT", "/v1/secrets/API_KEY", json={"name": "API_KEY", "value": SECRET}), 422)
    assert "NOPE" in error_of(api("PUT", "/v1/secrets/NOPE", json={"value": SECRET}), 404)
    error_of(api("DELETE", "/v1/secrets/NOPE"), 404)
    error_of(api("GET", "/v1/secrets/NOPE"), 404)
    assert api("GET", "/v1/secrets").json() == before


def test_malformed_json_is_400(api: Api) -> None:
    response = api(
        "POST",
        "/v1/secrets",
        content=b'{"name": "API_KEY", "value": "' + SECRET.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert "JSON" in error_of(response, 400)
    assert api("GET", "/v1/secrets").json() == {"secrets": []}


def test_secret_value_limit_is_413(api: Api) -> None:
    limit = api.service.settings.secret_value_max_bytes
    big = "v" * (limit + 1)
    api.secrets.add(big)
    assert str(limit) in error_of(api("POST", "/v1/secrets", json={"name": "BIG", "value": big}), 413)
    assert api("GET", "/v1/secrets").json() == {"secrets": []}
    assert api("POST", "/v1/secrets", json={"name": "BIG", "value": big[:-1]}).status_code == 201
    error_of(api("PUT", "/v1/secrets/BIG", json={"value": big}), 413)
    multibyte = "é" * (limit // 2) + "x"  # characters under the limit, bytes over it
    error_of(api("PUT", "/v1/secrets/BIG", json={"value": multibyte}), 413)


def test_secret_in_use_cannot_be_deleted(with_key: Api) -> None:
    api = with_key
    assert api("POST", "/v1/logic/functions", json=function_body()).status_code == 201
    info = api("GET", "/v1/secrets/API_KEY").json()
    assert info["usage_count"] == 1 and info["logic_functions"] == ["reformat"]
    assert "reformat" in error_of(api("DELETE", "/v1/secrets/API_KEY"), 409)
    assert api("GET", "/v1/secrets/API_KEY").status_code == 200


def test_org_secrets_are_separate(api: Api) -> None:
    api.service.create_org(api.service.actor(), "acme")
    assert api("POST", "/v1/orgs/acme/secrets", json={"name": "ORG_KEY", "value": SECRET}).status_code == 201
    assert [s["name"] for s in api("GET", "/v1/orgs/acme/secrets").json()["secrets"]] == ["ORG_KEY"]
    assert api("GET", "/v1/secrets").json() == {"secrets": []}
    error_of(api("GET", "/v1/secrets/ORG_KEY"), 404)
    assert api("PUT", "/v1/orgs/acme/secrets/ORG_KEY", json={"value": OTHER_SECRET}).status_code == 200
    assert api("GET", "/v1/orgs/acme/secrets/ORG_KEY").json()["name"] == "ORG_KEY"
    assert api("DELETE", "/v1/orgs/acme/secrets/ORG_KEY").status_code == 204
    assert "nowhere" in error_of(api("GET", "/v1/orgs/nowhere/secrets"), 404)


# request size ------------------------------------------------------------------


def test_oversized_body_is_413(api: Api) -> None:
    limit = api.service.settings.http_body_max_bytes
    body = b'{"name": "BIG", "value": "' + b"v" * limit + b'"}'
    response = api("POST", "/v1/secrets", content=body, headers={"Content-Type": "application/json"})
    assert str(limit) in error_of(response, 413)


def test_oversized_streamed_body_is_413(api: Api) -> None:
    """No Content-Length (chunked): the bytes are counted as they arrive."""
    limit = api.service.settings.http_body_max_bytes

    def chunks():
        yield b'{"name": "BIG", "value": "'
        for _ in range(limit // 65536 + 1):
            yield b"v" * 65536
        yield b'"}'

    response = api("POST", "/v1/secrets", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    error_of(response, 413)
    assert api("GET", "/v1/secrets").json() == {"secrets": []}


def test_invalid_content_length_is_400(api: Api) -> None:
    response = api(
        "POST", "/v1/secrets", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "many"}
    )
    error_of(response, 400)


# functions -------------------------------------------------------------------


def test_function_lifecycle(with_key: Api) -> None:
    api = with_key
    created = api("POST", "/v1/logic/functions", json=function_body())
    assert created.status_code == 201, created.text
    fn = created.json()
    assert fn["name"] == "reformat" and fn["version"] == 1 and fn["enabled"] is True
    assert fn["source"] == SOURCE and fn["secrets"] == ["API_KEY"]
    assert fn["triggers"] == [{"type": "event", "event_name": "sensor-test"}]
    assert fn["owner"] == api.service.actor().owner and fn["entry"] == "main"

    listed = api("GET", "/v1/logic/functions").json()["logic_functions"]
    assert [f["id"] for f in listed] == [fn["id"]]
    assert listed[0]["source"] == {"type": "Python", "code": fn["source"]}  # Particle's shape in listings
    one = api("GET", f"/v1/logic/functions/{fn['id']}").json()
    assert {k: v for k, v in one.items() if k != "logic_function"} == fn
    assert one["logic_function"]["source"] == {"type": "Python", "code": fn["source"]}
    assert api("GET", "/v1/logic/functions/reformat").json()["id"] == fn["id"]  # by name too

    again = api("POST", "/v1/logic/functions", json=function_body(description="second"))
    assert again.status_code == 200 and again.json()["version"] == 2 and again.json()["id"] == fn["id"]
    put = api(
        "PUT",
        f"/v1/logic/functions/{fn['id']}",
        json=function_body(enabled=False, triggers=[{"type": "schedule", "cron": "*/5 * * *"}]),
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 3 and put.json()["enabled"] is False
    assert put.json()["triggers"] == [{"type": "schedule", "cron": "*/5 * * * *"}]

    assert api("DELETE", f"/v1/logic/functions/{fn['id']}").status_code == 204
    error_of(api("GET", f"/v1/logic/functions/{fn['id']}"), 404)
    assert api("GET", "/v1/secrets/API_KEY").json()["usage_count"] == 0


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"source": "def main(event:\n    pass\n"}, ["reformat.py:1"]),
        ({"source": "import os\n\ndef main(event):\n    return os.getcwd()\n"}, ["os"]),
        ({"source": "def main(nope):\n    return 1\n"}, ["nope"]),
        ({"source": "def main(secrets):\n    return secrets.OTHER\n", "secrets": []}, ["OTHER"]),
        ({"secrets": ["MISSING_KEY"]}, ["MISSING_KEY"]),
        ({"triggers": [{"type": "schedule", "cron": "61 * * * *"}]}, ["cron"]),
        ({"triggers": [{"type": "event", "event_name": "e"}] * 6}, ["at most"]),
        ({"triggers": [{"type": "event", "event_name": "x" * 65}]}, ["event_name"]),
        ({"name": "bad name!"}, ["name"]),
        ({"entry": "missing"}, ["missing"]),
        ({"source": ""}, ["source"]),
        ({"colour": "blue"}, ["colour"]),
        ({"limits": {"timeout_s": -1}}, ["timeout_s"]),
    ],
)
def test_deploy_errors_are_422_and_deploy_nothing(with_key: Api, changes: dict, words: list[str]) -> None:
    api = with_key
    message = error_of(api("POST", "/v1/logic/functions", json=function_body(**changes)), 422)
    for word in words:
        assert word in message
    assert api("GET", "/v1/logic/functions").json() == {"logic_functions": []}


def test_deploy_requires_source_and_name(with_key: Api) -> None:
    body = function_body()
    del body["source"]
    assert "source" in error_of(with_key("POST", "/v1/logic/functions", json=body), 422)
    body = function_body()
    del body["name"]
    assert "name" in error_of(with_key("POST", "/v1/logic/functions", json=body), 422)


def test_put_function_errors(with_key: Api) -> None:
    api = with_key
    fn = api("POST", "/v1/logic/functions", json=function_body()).json()
    assert "does not match" in error_of(
        api("PUT", f"/v1/logic/functions/{fn['id']}", json=function_body(name="renamed")), 422
    )
    error_of(api("PUT", "/v1/logic/functions/no-such-id", json=function_body()), 404)
    error_of(api("PUT", f"/v1/logic/functions/{fn['id']}", json=function_body(source="def main(:")), 422)
    assert api("GET", f"/v1/logic/functions/{fn['id']}").json()["version"] == 1
    error_of(api("DELETE", "/v1/logic/functions/no-such-id"), 404)


def fake_run(fn_id: str, run_id: str, started_at: str = "2025-01-01T00:00:00Z") -> dict:
    return {
        "id": run_id,
        "function_id": fn_id,
        "function_version": 1,
        "trigger": {"type": "manual", "event_id": None, "scheduled_at": None},
        "status": "success",
        "started_at": started_at,
        "finished_at": started_at,
        "duration_ms": 1.5,
        "logs": [{"at": started_at, "level": "info", "message": "hello [[SENSITIVE]]"}],
        "result": {"ok": True},
        "error": None,
        "secrets_accessed": ["API_KEY"],
        "events_published": [],
    }


def test_runs(with_key: Api) -> None:
    api = with_key
    fn = api("POST", "/v1/logic/functions", json=function_body()).json()
    other = api("POST", "/v1/logic/functions", json=function_body(name="other")).json()
    runs = [fake_run(fn["id"], f"run{i}", f"2025-01-01T00:00:0{i}Z") for i in range(3)]
    for run in runs:
        api.service.store.functions.add_run(run)
    api.service.store.functions.add_run(fake_run(other["id"], "other-run"))

    listed = api("GET", f"/v1/logic/functions/{fn['id']}/runs")
    assert listed.status_code == 200 and listed.json() == {"logic_runs": runs[::-1], "next_cursor": None}
    assert api("GET", "/v1/logic/functions/reformat/runs?limit=1").json()["logic_runs"] == [runs[2]]
    assert api("GET", f"/v1/logic/functions/{fn['id']}/runs/run1").json() == runs[1]
    assert api("GET", "/v1/logic/functions/reformat/runs/run1").json() == runs[1]
    error_of(api("GET", f"/v1/logic/functions/{fn['id']}/runs/other-run"), 404)  # another function's run
    error_of(api("GET", f"/v1/logic/functions/{fn['id']}/runs/nope"), 404)
    error_of(api("GET", "/v1/logic/functions/nope/runs"), 404)
    assert "limit" in error_of(api("GET", f"/v1/logic/functions/{fn['id']}/runs?limit=0"), 422)
    error_of(api("GET", f"/v1/logic/functions/{fn['id']}/runs?limit=lots"), 422)


def test_org_functions(with_key: Api) -> None:
    api = with_key
    api.service.create_org(api.service.actor(), "acme")
    error_of(api("POST", "/v1/orgs/acme/logic/functions", json=function_body()), 422)  # no org secret yet
    assert api("POST", "/v1/orgs/acme/secrets", json={"name": "API_KEY", "value": OTHER_SECRET}).status_code == 201
    fn = api("POST", "/v1/orgs/acme/logic/functions", json=function_body()).json()
    assert fn["owner"] == "org:acme"
    assert [f["id"] for f in api("GET", "/v1/orgs/acme/logic/functions").json()["logic_functions"]] == [fn["id"]]
    assert api("GET", "/v1/logic/functions").json() == {"logic_functions": []}
    runs = api("GET", f"/v1/orgs/acme/logic/functions/{fn['id']}/runs").json()
    assert runs == {"logic_runs": [], "next_cursor": None}
    assert api("PUT", f"/v1/orgs/acme/logic/functions/{fn['id']}", json=function_body()).json()["version"] == 2
    assert api("DELETE", "/v1/orgs/acme/logic/functions/reformat").status_code == 204


# events ----------------------------------------------------------------------


def test_publish_event(with_key: Api) -> None:
    api = with_key
    api("POST", "/v1/logic/functions", json=function_body())
    response = api("POST", "/v1/events", json={"name": "sensor-test", "data": '{"i": 1}'})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["id"] and accepted["name"] == "sensor-test" and accepted["published_at"]
    assert api("POST", "/v1/events", json={"name": "no-data"}).status_code == 202


def test_publish_event_errors(api: Api) -> None:
    error_of(api("POST", "/v1/events", json={"name": ""}), 422)
    error_of(api("POST", "/v1/events", json={"name": "x" * 65}), 422)
    error_of(api("POST", "/v1/events", json={"name": "bad\nname"}), 422)
    assert "name" in error_of(api("POST", "/v1/events", json={"data": "x"}), 422)
    error_of(api("POST", "/v1/events", json={"name": "e", "data": {"an": "object"}}), 422)
    limit = api.service.settings.event_data_max_bytes
    error_of(api("POST", "/v1/events", json={"name": "e", "data": "d" * (limit + 1)}), 413)


def test_publish_event_queue_full_is_429(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args, **kwargs):
        raise QueueFull("the event queue is full: try again later")

    monkeypatch.setattr(api.service, "publish_event", full)
    assert "try again" in error_of(api("POST", "/v1/events", json={"name": "e"}), 429)


def test_org_events(api: Api) -> None:
    api.service.create_org(api.service.actor(), "acme")
    assert api("POST", "/v1/orgs/acme/events", json={"name": "e", "data": "d"}).status_code == 202
    error_of(api("POST", "/v1/orgs/nowhere/events", json={"name": "e"}), 404)


# integrations ----------------------------------------------------------------


def test_integration_lifecycle(with_key: Api) -> None:
    api = with_key
    created = api("POST", "/v1/integrations", json=webhook_body())
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["name"] == "notify" and hook["event"] == "sensor/" and hook["enabled"] is True
    assert hook["url"] == webhook_body()["url"] and hook["secrets"] == ["API_KEY"]
    assert hook["owner"] == api.service.actor().owner and hook["id"]

    assert [i["id"] for i in api("GET", "/v1/integrations").json()["integrations"]] == [hook["id"]]
    assert api("GET", f"/v1/integrations/{hook['id']}").json() == hook
    assert api("GET", "/v1/integrations/notify").json()["id"] == hook["id"]
    assert api("GET", "/v1/secrets/API_KEY").json()["integrations"] == ["notify"]
    assert "notify" in error_of(api("DELETE", "/v1/secrets/API_KEY"), 409)

    updated = api("PUT", f"/v1/integrations/{hook['id']}", json=webhook_body(event="other/", enabled=False))
    assert updated.status_code == 200, updated.text
    assert updated.json()["event"] == "other/" and updated.json()["enabled"] is False
    assert api("GET", f"/v1/integrations/{hook['id']}/logs").json() == {"logs": [], "next_cursor": None}
    error_of(api("GET", f"/v1/integrations/{hook['id']}/logs?limit=0"), 422)

    assert api("DELETE", f"/v1/integrations/{hook['id']}").status_code == 204
    error_of(api("GET", f"/v1/integrations/{hook['id']}"), 404)
    assert api("GET", "/v1/secrets/API_KEY").json()["usage_count"] == 0


@pytest.mark.parametrize(
    "changes, word",
    [
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "https://example.com/?k={{{OTHER_KEY}}}"}, "OTHER_KEY"),
        ({"secrets": ["NOT_THERE"], "url": "https://example.com/{{{NOT_THERE}}}"}, "NOT_THERE"),
        ({"event": ""}, "event"),
        ({"method": "TELEPORT"}, "method"),
        ({"colour": "blue"}, "colour"),
        ({"form": {"a": "b"}}, "json"),
    ],
)
def test_integration_errors_are_422(with_key: Api, changes: dict, word: str) -> None:
    api = with_key
    assert word in error_of(api("POST", "/v1/integrations", json=webhook_body(**changes)), 422)
    assert api("GET", "/v1/integrations").json() == {"integrations": []}


def test_integration_not_found_and_duplicate(with_key: Api) -> None:
    api = with_key
    assert api("POST", "/v1/integrations", json=webhook_body()).status_code == 201
    error_of(api("POST", "/v1/integrations", json=webhook_body()), 409)
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/logs")]:
        error_of(api(method, f"/v1/integrations/no-such-id{suffix}"), 404)
    error_of(api("PUT", "/v1/integrations/no-such-id", json=webhook_body()), 404)


def test_org_integrations(with_key: Api) -> None:
    api = with_key
    api.service.create_org(api.service.actor(), "acme")
    api("POST", "/v1/orgs/acme/secrets", json={"name": "API_KEY", "value": OTHER_SECRET})
    hook = api("POST", "/v1/orgs/acme/integrations", json=webhook_body()).json()
    assert hook["owner"] == "org:acme"
    assert api("GET", "/v1/integrations").json() == {"integrations": []}
    assert [i["id"] for i in api("GET", "/v1/orgs/acme/integrations").json()["integrations"]] == [hook["id"]]
    assert api("DELETE", f"/v1/orgs/acme/integrations/{hook['id']}").status_code == 204


# unexpected errors -------------------------------------------------------------


def test_unexpected_error_is_a_bare_500(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(actor, name, value, org=None):
        message = "kaput: " + value
        raise RuntimeError(message)

    monkeypatch.setattr(api.service, "create_secret", broken)
    with caplog.at_level(logging.ERROR, logger="logic.http"):
        response = api("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET})
    assert error_of(response, 500) == "internal error"
    assert "RuntimeError" in caplog.text and "broken" in caplog.text  # the traceback is logged...
    assert SECRET not in caplog.text and "kaput" not in caplog.text  # ...but not what the body held


# test runs (in-process: the pool is not what is tested here) ---------------------


@pytest.fixture(scope="module")
def runtime_api(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LOGIC_"):
                mp.delenv(name)
        settings = Settings(home=Path(tmp_path_factory.mktemp("api-runtime")) / "home", workers=2)
    store, init = Store.initialize(settings)
    store.close()
    service = in_process_service(settings)
    try:
        with TestClient(create_app(service)) as client:
            api = Api(client, init.token, service)
            assert api("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
            yield api
            api.check_no_secret()
    finally:
        service.close()


def test_execute_returns_a_redacted_run_record(runtime_api: Api) -> None:
    api = runtime_api
    body = function_body(event={"name": "sensor-test", "data": '{"i": 1}'})
    response = api("POST", "/v1/logic/execute", json=body)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "success", run
    assert run["result"] == {"ok": True, "length": len(SECRET)}
    assert run["secrets_accessed"] == ["API_KEY"]
    assert any("[[SENSITIVE]]" in line["message"] and "sensor-test" in line["message"] for line in run["logs"])
    assert api("GET", "/v1/logic/functions").json() == {"logic_functions": []}  # nothing deployed


def test_execute_without_event_and_with_errors(runtime_api: Api) -> None:
    api = runtime_api
    body = function_body(source="def main(event):\n    return 1 // 0\n")
    del body["name"]  # optional for a test run
    run = api("POST", "/v1/logic/execute", json=body).json()
    assert run["status"] == "error" and run["error"]["type"] == "ZeroDivisionError"
    error_of(api("POST", "/v1/logic/execute", json=function_body(source="def main(:")), 422)
    error_of(api("POST", "/v1/logic/execute", json=function_body(event={"name": "x" * 65})), 422)
    error_of(api("POST", "/v1/logic/execute", json=function_body(event={"data": "no name"})), 422)


def test_runs_of_a_deployed_function(runtime_api: Api) -> None:
    api = runtime_api
    fn = api("POST", "/v1/logic/functions", json=function_body(name="deployed")).json()
    record = api.service.execute_function(api.service.actor(), "deployed", event_name="sensor-test", data="1")
    runs = api("GET", f"/v1/logic/functions/{fn['id']}/runs").json()["logic_runs"]
    assert [r["id"] for r in runs] == [record["id"]]
    assert api("GET", f"/v1/logic/functions/{fn['id']}/runs/{record['id']}").json() == runs[0]
    assert api("DELETE", f"/v1/logic/functions/{fn['id']}").status_code == 204
