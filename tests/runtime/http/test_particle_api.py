"""Particle's shapes in-process: wrapped secrets and functions, the devices publish, run logs.
(The real particle-cli drives the same routes in tests/e2e/test_particle_cli.py.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.service import Service
from store import Store
from store.settings import Settings

VALUE = "particle-shape-Value-55e1"
FOREIGN_ORG_STATUS = 404  # what every route answers for an org that does not exist
CODE = "import logic\n\n\ndef main(event):\n    logic.log.info('hi', event.name)\n    return 1\n"


@pytest.fixture
def api(logic_home):
    settings = Settings(home=logic_home)
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    service.create_org(service.actor(), "acme")
    with TestClient(create_app(service)) as client:
        client.headers["Authorization"] = f"Bearer {init.token}"
        client.service = service  # type: ignore[attr-defined]
        yield client
    service.close()


def test_wrapped_secrets_are_answered_wrapped_and_put_creates(api):
    created = api.post("/v1/secrets", json={"secret": {"name": "API_KEY", "value": VALUE}})
    assert created.status_code == 201 and set(created.json()) == {"secret"}
    assert created.json()["secret"]["name"] == "API_KEY" and VALUE not in created.text
    put_new = api.put("/v1/orgs/acme/secrets/ORG_KEY", json={"secret": {"value": VALUE}})
    assert put_new.status_code == 200 and put_new.json()["secret"]["name"] == "ORG_KEY"
    put_again = api.put("/v1/secrets/API_KEY", json={"secret": {"value": VALUE + "2"}})
    assert put_again.status_code == 200 and VALUE not in put_again.text
    one = api.get("/v1/secrets/API_KEY").json()
    assert one["name"] == one["secret"]["name"] == "API_KEY" and one["secret"]["integrations"] == []
    # Our plain PUT still only updates.
    assert api.put("/v1/secrets/NOPE", json={"value": VALUE}).status_code == 404


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"secret": {"value": VALUE}}, "secret.name"),
        ({"secret": {"name": "api_key", "value": VALUE}}, "invalid secret name"),
        ({"secret": {"name": "API_KEY", "value": ""}}, "empty"),
        ({"secret": {"name": "API_KEY", "value": VALUE, "extra": 1}}, "extra"),
        ({"secret": "API_KEY"}, "secret"),
    ],
)
def test_bad_wrapped_secrets_are_refused_and_nothing_is_stored(api, body, problem):
    response = api.post("/v1/secrets", json=body)
    assert response.status_code == 422 and problem in response.json()["error"]
    assert VALUE not in response.text
    assert api.get("/v1/secrets").json()["secrets"] == []


def test_a_put_whose_body_names_another_secret_is_refused(api):
    response = api.put("/v1/secrets/API_KEY", json={"secret": {"name": "OTHER", "value": VALUE}})
    assert response.status_code == 422 and "differs" in response.json()["error"]
    assert api.get("/v1/secrets").json()["secrets"] == []


def particle_function(**fields) -> dict:
    body = {
        "name": "hello",
        "description": "says hi",
        "enabled": True,
        "source": {"type": "JavaScript", "code": CODE},
        "logic_triggers": [{"type": "Event", "event_name": "temp", "enabled": True}],
    }
    return {"logic_function": {**body, **fields}}


def test_a_wrapped_function_deploys_and_a_switch_makes_no_new_version(api):
    created = api.post("/v1/logic/functions", json=particle_function())
    assert created.status_code == 201, created.text
    fn = created.json()["logic_function"]
    assert fn["version"] == 1 and fn["source"] == {"type": "Python", "code": CODE}
    assert fn["logic_triggers"][0]["type"] == "Event" and fn["logic_triggers"][0]["event_name"] == "temp"

    disabled = api.put(f"/v1/logic/functions/{fn['id']}", json=particle_function(enabled=False))
    assert disabled.status_code == 200 and disabled.json()["logic_function"]["version"] == 1
    assert disabled.json()["logic_function"]["enabled"] is False
    changed = api.put(f"/v1/logic/functions/{fn['id']}", json=particle_function(description="new"))
    assert changed.json()["logic_function"]["version"] == 2

    listed = api.get("/v1/logic/functions").json()["logic_functions"]
    assert listed[0]["source"]["code"] == CODE and listed[0]["logic_triggers"][0]["id"] == f"{fn['id']}:0"


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"source": {"type": "JavaScript", "code": "export default function main() {}"}}, "syntax"),
        ({"logic_triggers": [{"type": "Event"}]}, "event_name"),
        ({"logic_triggers": [{"type": "Scheduled", "cron": "nope"}]}, "cron"),
        ({"logic_triggers": [{"type": "Webhook"}]}, "type"),
        ({"source": {"type": "Python", "code": "def main(secrets):\n    return secrets.API_KEY\n"}}, "API_KEY"),
    ],
)
def test_a_bad_wrapped_function_is_refused_and_nothing_is_deployed(api, fields, problem):
    response = api.post("/v1/logic/functions", json=particle_function(**fields))
    assert response.status_code == 422 and problem in response.json()["error"], response.text
    assert api.get("/v1/logic/functions").json()["logic_functions"] == []


def test_the_devices_publish_takes_json_or_a_form_and_refuses_bad_input(api):
    as_json = api.post("/v1/devices/events", json={"name": "temp", "data": "21", "private": True, "ttl": 60})
    assert as_json.status_code == 200 and as_json.json()["ok"] is True and as_json.json()["name"] == "temp"
    as_form = api.post("/v1/devices/events", data={"name": "temp", "data": "22", "private": "true"})
    assert as_form.status_code == 200 and as_form.json()["name"] == "temp"
    assert api.post("/v1/devices/events", json={"data": "x"}).status_code == 422
    assert api.post("/v1/devices/events", json={"name": "x" * 65}).status_code == 422
    assert (
        api.post("/v1/devices/events", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    foreign = api.post("/v1/orgs/nobodys/devices/events", json={"name": "temp"})
    assert foreign.status_code == FOREIGN_ORG_STATUS and "nobodys" in foreign.json()["error"]
    assert api.get("/v1/orgs/nobodys/secrets").status_code == FOREIGN_ORG_STATUS  # the same answer as everywhere


def test_every_v1_answer_is_not_stored_by_caches(api):
    for response in (
        api.get("/v1/secrets"),
        api.get("/v1/secrets/NOPE"),
        api.post("/v1/events", json={"name": "e"}),
        api.get("/v1/logic/functions"),
    ):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
