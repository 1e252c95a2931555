"""Run replay through the HTTP API (`POST /v1/logic/runs/{run_id}/replay`, the
function-scoped and org forms) and the console's Replay button (a POST with the CSRF token,
no JavaScript needed); the Logic list's counts are the service's."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.manifest import files_from_json
from store import Settings, Store
from tests.support import in_process_service

SECRET = "replay-api-secret-6a2f9c1e"
SOURCE = "def main(event, secrets):\n    return [event.data if event else None, len(secrets.KEY)]\n"
BASE = "http://127.0.0.1:8080"
SAME = {"Origin": BASE}


@pytest.fixture
def world(settings: Settings):
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    admin = service.actor()
    token = service.create_token(admin, label="replay test")
    service.create_secret(admin, "KEY", SECRET)
    service.create_org(admin, "acme")
    service.create_secret(admin, "KEY", SECRET, org="acme")
    body = {"name": "echo", "secrets": ["KEY"], "source": SOURCE}
    service.deploy_function(admin, files_from_json(body))
    service.deploy_function(admin, files_from_json(body), org="acme")
    service.deploy_function(admin, files_from_json({**body, "name": "other"}))
    bob = service.create_user(admin, "bob")
    bob_token = service.create_token(bob, label="bob")
    with TestClient(create_app(service), base_url=BASE) as client:
        yield service, client, token, bob_token
    service.close()


def headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_replay_answers_201_with_the_new_run(world):
    service, client, token, _ = world
    run = service.execute_function(service.actor(), "echo", event_name="in", data="payload")
    response = client.post(f"/v1/logic/runs/{run['id']}/replay", headers=headers(token))
    assert response.status_code == 201, response.text
    replay = response.json()
    assert replay["replay_of"] == run["id"] and replay["result"] == ["payload", len(SECRET)]
    scoped = client.post(f"/v1/logic/functions/echo/runs/{run['id']}/replay", headers=headers(token))
    assert scoped.status_code == 201 and scoped.json()["replay_of"] == run["id"]
    listed = client.get("/v1/logic/functions/echo/runs", headers=headers(token)).json()["logic_runs"]
    assert [r["replay_of"] for r in listed[:2]] == [run["id"], run["id"]]
    assert SECRET not in response.text + scoped.text


def test_replay_refusals_have_their_status_and_run_nothing(world):
    service, client, token, bob_token = world
    run = service.execute_function(service.actor(), "echo")
    count = lambda: service.store.db.one("SELECT COUNT(*) FROM runs")[0]  # noqa: E731
    before = count()
    cases = [
        (client.post("/v1/logic/runs/nope/replay", headers=headers(token)), 404),
        (client.post(f"/v1/logic/functions/other/runs/{run['id']}/replay", headers=headers(token)), 404),
        (client.post(f"/v1/logic/runs/{run['id']}/replay", headers=headers(bob_token)), 404),  # not bob's
        (client.post(f"/v1/orgs/acme/logic/runs/{run['id']}/replay", headers=headers(token)), 404),  # not acme's
        (client.post(f"/v1/orgs/acme/logic/runs/{run['id']}/replay", headers=headers(bob_token)), 403),
        (client.post(f"/v1/logic/runs/{run['id']}/replay"), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert set(response.json()) >= {"error"}
    service.store.functions.add_run({**run, "id": "inputless"})
    conflict = client.post("/v1/logic/runs/inputless/replay", headers=headers(token))
    assert conflict.status_code == 409 and "no recorded input" in conflict.json()["error"]
    assert count() == before + 1  # the inputless record added here, no run


def test_an_org_run_replays_in_the_org(world):
    service, client, token, _ = world
    run = service.execute_function(service.actor(), "echo", event_name="in", data="org", org="acme")
    response = client.post(f"/v1/orgs/acme/logic/runs/{run['id']}/replay", headers=headers(token))
    assert response.status_code == 201 and response.json()["result"] == ["org", len(SECRET)]


# the console -----------------------------------------------------------------------------


def sign_in(client: TestClient, token: str) -> str:
    response = client.post("/sign-in", data={"token": token}, headers=SAME, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get("/secrets")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_the_replay_button_needs_the_csrf_token_and_leads_to_the_new_run(world):
    service, client, token, _ = world
    csrf = sign_in(client, token)
    run = service.execute_function(service.actor(), "echo", event_name="in", data="from-console")
    page = client.get("/logic/echo").text
    action = f'action="/logic/echo/runs/{run["id"]}/replay"'
    assert action in page and "Replay</button>" in page
    assert "Event <code>in</code> from manual:" in page and "<code>from-console</code>" in page
    before = len(service.function_runs(service.actor(), "echo"))

    refused = client.post(f"/logic/echo/runs/{run['id']}/replay", data={"csrf": "wrong"}, headers=SAME)
    assert refused.status_code == 403
    cross = client.post(
        f"/logic/echo/runs/{run['id']}/replay", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert len(service.function_runs(service.actor(), "echo")) == before

    done = client.post(
        f"/logic/echo/runs/{run['id']}/replay", data={"csrf": csrf}, headers=SAME, follow_redirects=False
    )
    assert done.status_code == 303
    (newest, *_rest) = service.function_runs(service.actor(), "echo")
    assert newest["replay_of"] == run["id"]
    assert done.headers["location"] == f"/logic/echo#run-{newest['id']}"
    page = client.get("/logic/echo").text
    assert f'id="run-{newest["id"]}"' in page and f'a replay of <a href="#run-{run["id"]}">' in page
    assert SECRET not in page
    missing = client.post("/logic/echo/runs/nope/replay", data={"csrf": csrf}, headers=SAME)
    assert missing.status_code == 404


def test_the_logic_list_shows_the_service_counts(world):
    service, client, token, _ = world
    sign_in(client, token)
    service.execute_function(service.actor(), "echo")
    service.execute_function(service.actor(), "echo")
    fn = service.get_function(service.actor(), "echo")
    assert service.runs_today(service.actor())[fn.id] == {"success": 2, "error": 0, "timeout": 0}
    assert "2 / 0 / 0" in client.get("/logic").text
