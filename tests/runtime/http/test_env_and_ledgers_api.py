"""/v1/env and /v1/ledgers (particle-api-js's ledger shapes): bad input is refused with a
clear error and changes nothing; no answer carries a secret."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.http.particle import ParticleFunctionIn, function_files
from runtime.service import Service
from store import Settings, Store
from store.errors import InvalidInput

SECRET = "s3cr3t-api-value-5d1c"


@pytest.fixture
def api(settings: Settings):
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    service.create_secret(service.actor(), "API_KEY", SECRET)
    with TestClient(create_app(service), headers={"Authorization": f"Bearer {init.token}"}) as client:
        yield client, service
    service.close()


def test_env_round_trip(api):
    client, _ = api
    assert client.put("/v1/env/REGION", json={"value": "eu"}).json()["value"] == "eu"
    assert client.get("/v1/env/REGION").json()["value"] == "eu"
    listing = client.get("/v1/env")
    assert [v["name"] for v in listing.json()["env"]] == ["REGION"] and SECRET not in listing.text
    assert client.delete("/v1/env/REGION").status_code == 204
    assert client.get("/v1/env/REGION").status_code == 404


@pytest.mark.parametrize(
    "name, body, status",
    [
        ("LOGIC_X", {"value": "v"}, 422),
        ("PARTICLE_X", {"value": "v"}, 422),
        ("lower", {"value": "v"}, 422),
        ("OK", {"value": 5}, 422),
        ("OK", {"value": "v", "extra": 1}, 422),
        ("OK", {}, 422),
        ("OK", {"value": "x" * 16_385}, 413),
    ],
)
def test_bad_env_input_changes_nothing(api, name, body, status):
    client, _ = api
    answer = client.put(f"/v1/env/{name}", json=body)
    assert answer.status_code == status, answer.text
    assert "error" in answer.json()
    assert client.get("/v1/env").json() == {"env": []}


def test_ledger_definition_and_instance_in_particles_shapes(api):
    client, _ = api
    created = client.post("/v1/ledgers", json={"ledger": {"name": "counters", "description": "d", "scope": "Owner"}})
    assert created.status_code == 201 and created.json()["ledger"]["name"] == "counters"
    assert client.get("/v1/ledgers").json()["ledgers"][0]["scope"] == "Owner"
    assert (
        client.put("/v1/ledgers/counters", json={"ledger": {"description": "new"}}).json()["ledger"]["description"]
        == "new"
    )
    empty = client.get("/v1/ledgers/counters/instances/owner").json()["instance"]
    assert (empty["updated_at"], empty["data"]) == (None, {})
    path = "/v1/ledgers/counters/instances/owner"
    assert client.put(path, json={"instance": {"data": {"a": 1, "b": 1}}}).json()["instance"]["data"] == {
        "a": 1,
        "b": 1,
    }
    merged = client.put(path + "?set_mode=Merge", json={"instance": {"data": {"b": 2}}}).json()["instance"]
    assert merged["data"] == {"a": 1, "b": 2}
    versions = client.get(path + "/versions").json()["versions"]
    assert len(versions) == 1 and {"replaced_at", "size_bytes", "version"} <= set(versions[0])
    old = client.get(f"{path}/versions/{versions[0]['version']}").json()["instance"]
    assert old["data"] == {"a": 1, "b": 1}
    assert client.get("/v1/ledgers/counters/instances").json()["instances"][0]["data"] == {"a": 1, "b": 2}
    assert client.delete(path).status_code == 204
    assert client.get(path).json()["instance"]["data"] == {}
    assert client.delete("/v1/ledgers/counters").status_code == 204
    assert client.get("/v1/ledgers/counters").status_code == 404


@pytest.mark.parametrize(
    "body, query, status",
    [
        ({"instance": {"data": [1]}}, "", 422),
        ({"instance": {"data": "text"}}, "", 422),
        ({"data": {"a": 1}}, "", 422),
        ({"instance": {"data": {"a": "x" * 16_400}}}, "", 413),
        ({"instance": {"data": {"a": 1}}}, "?set_mode=Append", 422),
    ],
)
def test_bad_ledger_writes_change_nothing(api, body, query, status):
    client, _ = api
    client.post("/v1/ledgers", json={"ledger": {"name": "l"}})
    client.put("/v1/ledgers/l/instances/owner", json={"instance": {"data": {"keep": 1}}})
    answer = client.put("/v1/ledgers/l/instances/owner" + query, json=body)
    assert answer.status_code == status, answer.text
    assert client.get("/v1/ledgers/l/instances/owner").json()["instance"]["data"] == {"keep": 1}
    assert client.get("/v1/ledgers/l/instances/owner/versions").json()["versions"] == []


def test_other_scopes_and_versions_are_404(api):
    client, _ = api
    client.post("/v1/ledgers", json={"ledger": {"name": "l"}})
    assert client.get("/v1/ledgers/l/instances/device-1").status_code == 404
    assert client.put("/v1/ledgers/l/instances/product", json={"instance": {"data": {}}}).status_code == 404
    assert client.get("/v1/ledgers/l/instances/owner/versions/abc").status_code == 404
    assert client.get("/v1/ledgers/l/instances/owner/versions/99").status_code == 404


@pytest.mark.parametrize("name", ["Bad", "a" * 33, "with_underscore", ""])
def test_bad_ledger_names_are_refused(api, name):
    client, _ = api
    answer = client.post("/v1/ledgers", json={"ledger": {"name": name}})
    assert answer.status_code == 422
    assert client.get("/v1/ledgers").json()["ledgers"] == []


def test_a_particle_ledger_change_trigger_maps_both_ways(api):
    client, service = api
    client.post("/v1/ledgers", json={"ledger": {"name": "l"}})
    body = ParticleFunctionIn.model_validate(
        {
            "logic_function": {
                "name": "watch",
                "source": {"type": "JavaScript", "code": "def main(ledger_change):\n    pass\n"},
                "logic_triggers": [{"type": "LedgerChange", "ledger_name": "l", "change_type": "delete"}],
            }
        }
    )
    fn = service.deploy_function(service.actor(), function_files(body))
    assert fn.manifest["triggers"] == [{"type": "ledger_change", "ledger": "l", "change_type": "delete"}]
    [trigger] = client.get(f"/v1/logic/functions/{fn.id}").json()["logic_function"]["logic_triggers"]
    assert (trigger["type"], trigger["ledger_name"], trigger["change_type"]) == ("LedgerChange", "l", "delete")
    missing = {"logic_function": {"name": "w", "source": {"code": "x"}, "logic_triggers": [{"type": "LedgerChange"}]}}
    with pytest.raises(InvalidInput, match="needs ledger_name"):
        function_files(ParticleFunctionIn.model_validate(missing))
