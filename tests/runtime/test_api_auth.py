"""Who may call what: every /v1 route wants a valid token, and a user reaches only
his own sandbox and the organizations he belongs to (403 for another org, 404
for another user's ids: ids are not a directory)."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from runtime.api import create_app
from runtime.service import Service
from store import Settings, Store

SECRET = "alice-s3cr3t-4d9b1e"
SOURCE = "def main(event, secrets):\n    return len(secrets.API_KEY)\n"
FUNCTION = {"name": "reformat", "secrets": ["API_KEY"], "source": SOURCE,
            "triggers": [{"type": "event", "event_name": "sensor-test"}]}
WEBHOOK = {"name": "notify", "event": "sensor/", "url": "https://api.example.com/?k={{{API_KEY}}}",
           "secrets": ["API_KEY"]}
BODIES = {  # a valid body for every route that takes one, so that only the caller is wrong
    "create_secret": {"name": "API_KEY", "value": "bob-value"},
    "update_secret": {"value": "bob-value"},
    "deploy_function": FUNCTION,
    "update_function": FUNCTION,
    "execute_function": {**FUNCTION, "event": {"name": "sensor-test", "data": "1"}},
    "publish_event": {"name": "sensor-test", "data": "1"},
    "create_integration": WEBHOOK,
    "update_integration": WEBHOOK,
}


class _Shell:
    settings = Settings()


def v1_routes() -> list[tuple[str, str, str]]:
    """(method, path, endpoint name) of every /v1 route, as the app has them."""
    return sorted((method, route.path, route.name.removeprefix("org_"))
                  for route in create_app(_Shell()).routes
                  if isinstance(route, APIRoute) and route.path.startswith("/v1")
                  for method in route.methods)


ROUTES = v1_routes()
ORG_ROUTES = [r for r in ROUTES if r[1].startswith("/v1/orgs/{org}")]


def fill(path: str, **values: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def test_the_route_surface_is_the_designed_one() -> None:
    sandbox = {(m, p) for m, p, _ in ROUTES if not p.startswith("/v1/orgs/")}
    assert sandbox == {
        ("GET", "/v1/secrets"), ("POST", "/v1/secrets"),
        ("GET", "/v1/secrets/{name}"), ("PUT", "/v1/secrets/{name}"), ("DELETE", "/v1/secrets/{name}"),
        ("GET", "/v1/logic/functions"), ("POST", "/v1/logic/functions"),
        ("GET", "/v1/logic/functions/{function_id}"), ("PUT", "/v1/logic/functions/{function_id}"),
        ("DELETE", "/v1/logic/functions/{function_id}"),
        ("GET", "/v1/logic/functions/{function_id}/runs"),
        ("GET", "/v1/logic/functions/{function_id}/runs/{run_id}"),
        ("POST", "/v1/logic/execute"), ("POST", "/v1/events"),
        ("GET", "/v1/integrations"), ("POST", "/v1/integrations"),
        ("GET", "/v1/integrations/{integration_id}"), ("PUT", "/v1/integrations/{integration_id}"),
        ("DELETE", "/v1/integrations/{integration_id}"), ("GET", "/v1/integrations/{integration_id}/logs"),
    }
    assert {(m, p.replace("/v1/orgs/{org}", "/v1")) for m, p, _ in ORG_ROUTES} == sandbox


@pytest.fixture
def world(settings: Settings):
    """alice (admin, from init) with a secret, a function, a run, an integration and org acme;
    bob, a plain user with his own org bobco."""
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    alice = service.actor()
    bob = service.create_user(alice, "bob")
    service.create_org(alice, "acme")
    service.create_org(bob, "bobco")
    with TestClient(create_app(service)) as client:
        w = World(client, service, alice_token=init.token, bob_token=service.create_token(alice, "bob"))
        assert w.alice("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
        w.function = w.alice("POST", "/v1/logic/functions", json=FUNCTION).json()
        w.run_id = "alice-run"
        service.functions.add_run({
            "id": w.run_id, "function_id": w.function["id"], "function_version": 1,
            "trigger": {"type": "manual", "event_id": None, "scheduled_at": None}, "status": "success",
            "started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:01Z", "duration_ms": 3.0,
            "logs": [], "result": 8, "error": None, "secrets_accessed": ["API_KEY"], "events_published": []})
        hook = w.alice("POST", "/v1/integrations", json=WEBHOOK)
        w.integration = hook.json() if hook.status_code == 201 else {"id": "integration-not-created"}
        yield w
        for response in w.responses:
            assert SECRET not in response.text
    service.close()


class World:
    function: dict
    integration: dict
    run_id: str

    def __init__(self, client: TestClient, service: Service, *, alice_token: str, bob_token: str):
        self.client = client
        self.service = service
        self.alice_token = alice_token
        self.bob_token = bob_token
        self.responses = []

    def call(self, method: str, url: str, token: str | None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.responses.append(response)
        return response

    def alice(self, method: str, url: str, **kwargs):
        return self.call(method, url, self.alice_token, **kwargs)

    def bob(self, method: str, url: str, **kwargs):
        return self.call(method, url, self.bob_token, **kwargs)


def body_for(method: str, name: str) -> dict:
    return {"json": BODIES.get(name, {})} if method in ("POST", "PUT") else {}


@pytest.mark.parametrize("method, path, name", ROUTES)
def test_every_route_refuses_a_missing_token(world: World, method: str, path: str, name: str) -> None:
    url = fill(path, org="acme", function_id=world.function["id"], run_id=world.run_id,
               integration_id=world.integration["id"], name="API_KEY")
    for token in (None, "", "lgc_not-a-real-token", world.alice_token + "x"):
        response = world.call(method, url, token, **body_for(method, name))
        assert response.status_code == 401, (token, response.text)
        assert response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_other_auth_schemes_are_refused(world: World) -> None:
    for header in (f"Basic {world.alice_token}", world.alice_token, f"Token {world.alice_token}"):
        response = world.client.get("/v1/secrets", headers={"Authorization": header})
        assert response.status_code == 401


@pytest.mark.parametrize("method, path, name", ORG_ROUTES)
def test_another_org_is_403(world: World, method: str, path: str, name: str) -> None:
    url = fill(path, org="acme", function_id=world.function["id"], run_id=world.run_id,
               integration_id=world.integration["id"], name="API_KEY")
    response = world.bob(method, url, **body_for(method, name))
    assert response.status_code == 403, response.text
    assert "acme" in response.json()["error"]


@pytest.mark.parametrize("by", ["id", "name"])
def test_another_users_function_and_runs_are_404(world: World, by: str) -> None:
    ref = world.function[by]
    fid = world.function["id"]
    for org_prefix in ("/v1", "/v1/orgs/bobco"):
        base = f"{org_prefix}/logic/functions/{ref}"
        assert world.bob("GET", base).status_code == 404
        assert world.bob("PUT", base, json=FUNCTION).status_code == 404
        assert world.bob("DELETE", base).status_code == 404
        assert world.bob("GET", f"{base}/runs").status_code == 404
        assert world.bob("GET", f"{base}/runs/{world.run_id}").status_code == 404
        assert world.bob("GET", f"{org_prefix}/logic/functions/{fid}/runs/{world.run_id}").status_code == 404
    assert world.alice("GET", f"/v1/logic/functions/{fid}").json()["version"] == 1
    assert world.alice("GET", f"/v1/logic/functions/{fid}/runs/{world.run_id}").status_code == 200


def test_another_users_run_is_404_through_ones_own_function(world: World) -> None:
    bob_source = {**FUNCTION, "secrets": [], "source": "def main(event):\n    return 1\n"}
    mine = world.bob("POST", "/v1/logic/functions", json=bob_source)
    assert mine.status_code == 201, mine.text
    response = world.bob("GET", f"/v1/logic/functions/{mine.json()['id']}/runs/{world.run_id}")
    assert response.status_code == 404
    assert world.bob("GET", f"/v1/logic/functions/{mine.json()['id']}/runs").json() == {"logic_runs": []}


def test_another_users_integration_is_404(world: World) -> None:
    iid = world.integration["id"]
    for org_prefix in ("/v1", "/v1/orgs/bobco"):
        for ref in (iid, "notify"):
            base = f"{org_prefix}/integrations/{ref}"
            assert world.bob("GET", base).status_code == 404
            assert world.bob("PUT", base, json=WEBHOOK).status_code == 404
            assert world.bob("DELETE", base).status_code == 404
            assert world.bob("GET", f"{base}/logs").status_code == 404
    assert world.alice("GET", f"/v1/integrations/{iid}").status_code == 200


def test_another_users_secrets_are_out_of_reach(world: World) -> None:
    assert world.bob("GET", "/v1/secrets").json() == {"secrets": []}
    assert world.bob("GET", "/v1/secrets/API_KEY").status_code == 404
    assert world.bob("DELETE", "/v1/secrets/API_KEY").status_code == 404
    assert world.bob("PUT", "/v1/secrets/API_KEY", json={"value": "bob-value"}).status_code == 404
    assert world.bob("GET", "/v1/logic/functions").json() == {"logic_functions": []}
    assert world.bob("GET", "/v1/integrations").json() == {"integrations": []}
    alice_owner = world.service.actor().owner
    assert world.service.store.secrets.reveal(alice_owner, "API_KEY").reveal() == SECRET


def test_a_member_acts_on_org_resources(world: World) -> None:
    world.service.add_member(world.service.actor(), "acme", "bob")
    assert world.bob("POST", "/v1/orgs/acme/secrets", json={"name": "ORG_KEY", "value": "org-value"}).status_code == 201
    assert [s["name"] for s in world.alice("GET", "/v1/orgs/acme/secrets").json()["secrets"]] == ["ORG_KEY"]
    assert world.bob("GET", "/v1/orgs/acme/logic/functions").status_code == 200
