"""/v1/secrets/{name}/versions, .../versions/{version}/restore and /v1/secrets:import (and
their /v1/orgs/{org}/... twins): the house error shape, nothing changed by a refusal, no
value in any answer, another owner's names 404, a non-member 403."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.service import Service
from store import Settings, Store

MARK = "api-v3rsion-value-"


@pytest.fixture
def api(settings: Settings):
    _, init = Store.initialize(settings)
    service = Service.open(settings)
    admin = service.actor()
    service.create_secret(admin, "API_KEY", MARK + "one")
    service.update_secret(admin, "API_KEY", MARK + "two")
    with TestClient(create_app(service), headers={"Authorization": f"Bearer {init.token}"}) as client:
        yield client, service
    service.close()


def _current(service: Service, name: str = "API_KEY", org: str | None = None) -> str:
    owner = service.owner_for(service.actor(), org)
    return service.store.secrets.reveal(owner, name).reveal()


def test_versions_and_restore(api):
    client, service = api
    token_id = service.list_tokens(service.actor())[0]["id"]
    listing = client.get("/v1/secrets/API_KEY/versions")
    assert listing.status_code == 200 and MARK not in listing.text
    versions = listing.json()["versions"]
    assert [(v["version"], v["current"]) for v in versions] == [(2, True), (1, False)]
    assert versions[0]["created_by"] == f"{service.actor().name} (cli)"  # made through the service here
    restored = client.post("/v1/secrets/API_KEY/versions/1/restore")
    assert restored.status_code == 200 and MARK not in restored.text
    body = restored.json()
    assert (body["name"], body["version"], body["restored_from"]) == ("API_KEY", 3, 1) and "value" not in body
    assert _current(service) == MARK + "one"
    newest = client.get("/v1/secrets/API_KEY/versions").json()["versions"][0]
    assert newest == {**newest, "version": 3, "current": True, "restored_from": 1}
    assert newest["created_by"] == f"{service.actor().name} (token:{token_id})"


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("/v1/secrets/API_KEY/versions/2/restore", 409, "already the current value"),
        ("/v1/secrets/API_KEY/versions/3/restore", 404, "has no version 3"),
        ("/v1/secrets/API_KEY/versions/0/restore", 422, "whole number from 1"),
        ("/v1/secrets/API_KEY/versions/-1/restore", 422, "whole number from 1"),
        ("/v1/secrets/API_KEY/versions/one/restore", 422, "version"),
        ("/v1/secrets/API_KEY/versions/99999999999999999999999/restore", 404, "has no version 9999"),
        ("/v1/secrets/MISSING/versions/1/restore", 404, "secret MISSING does not exist"),
        ("/v1/orgs/nowhere/secrets/API_KEY/versions/1/restore", 404, "nowhere"),
    ],
)
def test_a_bad_restore_changes_nothing(api, db_rows, path, status, words):
    client, service = api
    before = db_rows()
    answer = client.post(path)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error", "error_description"} and words in answer.json()["error"]
    assert db_rows() == before and _current(service) == MARK + "two"


def test_another_owners_secret_is_not_found_and_a_non_member_is_refused(api):
    client, service = api
    admin = service.actor()
    bob = service.create_user(admin, "bob")
    service.create_secret(bob, "BOBS", MARK + "bob-1")
    service.update_secret(bob, "BOBS", MARK + "bob-2")
    service.create_org(admin, "acme")
    service.create_secret(admin, "ORG_KEY", MARK + "org-1", org="acme")
    service.update_secret(admin, "ORG_KEY", MARK + "org-2", org="acme")
    assert client.get("/v1/secrets/BOBS/versions").status_code == 404
    assert client.post("/v1/secrets/BOBS/versions/1/restore").status_code == 404
    assert service.store.secrets.reveal(bob.owner, "BOBS").reveal() == MARK + "bob-2"
    # the org twins, for a member
    assert [v["version"] for v in client.get("/v1/orgs/acme/secrets/ORG_KEY/versions").json()["versions"]] == [2, 1]
    assert client.post("/v1/orgs/acme/secrets/ORG_KEY/versions/1/restore").status_code == 200
    assert _current(service, "ORG_KEY", "acme") == MARK + "org-1"
    # bob is no member of acme
    bob_token = service.create_token(bob)
    as_bob = {"Authorization": f"Bearer {bob_token}"}
    assert client.get("/v1/orgs/acme/secrets/ORG_KEY/versions", headers=as_bob).status_code == 403
    assert client.post("/v1/orgs/acme/secrets/ORG_KEY/versions/2/restore", headers=as_bob).status_code == 403
    assert client.post("/v1/orgs/acme/secrets:import", json={"content": "X_KEY=1"}, headers=as_bob).status_code == 403
    assert _current(service, "ORG_KEY", "acme") == MARK + "org-1"


def test_import_dotenv_and_json_with_update(api):
    client, service = api
    created = client.post("/v1/secrets:import", json={"content": f"export A_KEY={MARK}a\nB_KEY='{MARK}b'\n"})
    assert created.status_code == 200 and created.json() == {"created": ["A_KEY", "B_KEY"], "updated": []}
    body = {"content": json.dumps({"A_KEY": MARK + "a2", "C_KEY": MARK + "c"}), "format": "json", "update": True}
    updated = client.post("/v1/secrets:import", json=body)
    assert updated.json() == {"created": ["C_KEY"], "updated": ["A_KEY"]}
    assert _current(service, "A_KEY") == MARK + "a2" and _current(service, "B_KEY") == MARK + "b"
    assert MARK not in created.text + updated.text
    org = client.post("/v1/orgs/acme/secrets:import", json={"content": "ORG_ONE=x"})
    assert org.status_code == 404  # no such org yet
    service.create_org(service.actor(), "acme")
    org = client.post("/v1/orgs/acme/secrets:import", json={"content": "ORG_ONE=x"})
    assert org.status_code == 200 and [s.name for s in service.list_secrets(service.actor(), "acme")] == ["ORG_ONE"]


def test_a_refused_import_lists_every_problem_and_writes_nothing(api, db_rows):
    client, service = api
    lines = [f"GOOD_{i:02d}={MARK}{i}" for i in range(50)]
    lines.insert(10, "API_KEY=" + MARK + "exists")  # line 11
    lines.insert(30, "bad name=" + MARK + "bad")  # line 31
    before = db_rows()
    answer = client.post("/v1/secrets:import", json={"content": "\n".join(lines)})
    assert answer.status_code == 422
    body = answer.json()
    assert set(body) == {"error", "error_description", "problems"}
    assert body["problems"] == [
        "line 11: secret API_KEY already exists (import with --update to replace it)",
        "line 31: cannot be read as NAME=value (is a quote left open?)",
    ]
    assert body["error"].startswith("nothing was imported (2 problems):") and MARK not in answer.text
    assert db_rows() == before


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"content": ""}, 422, "the import is empty"),
        ({"content": "A_KEY=1", "format": "yaml"}, 422, "format"),
        ({"content": "A_KEY=1", "extra": True}, 422, "extra"),
        ({"content": 5}, 422, "content"),
        ({}, 422, "content"),
        ({"content": "A_KEY=" + "x" * (512 * 1024)}, 413, "the limit is 524288 bytes"),
        ({"content": '{"A_KEY": 1}', "format": "json"}, 422, "must be a JSON string"),
    ],
)
def test_bad_import_bodies_change_nothing(api, db_rows, body, status, words):
    client, _ = api
    before = db_rows()
    answer = client.post("/v1/secrets:import", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert "x" * 100 not in answer.text  # never the input back
    assert db_rows() == before


def test_openapi_documents_the_routes_and_hides_no_value(api):
    client, _ = api
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/secrets/{name}/versions",
        "/v1/secrets/{name}/versions/{version}/restore",
        "/v1/secrets:import",
        "/v1/orgs/{org}/secrets/{name}/versions",
        "/v1/orgs/{org}/secrets/{name}/versions/{version}/restore",
        "/v1/orgs/{org}/secrets:import",
    ):
        assert path in paths, path
    components = schema["components"]["schemas"]
    assert "value" not in components["SecretVersionOut"]["properties"]
    assert components["SecretImport"]["properties"]["content"]["writeOnly"] is True
    refused = paths["/v1/secrets:import"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert refused["$ref"].endswith("/ImportRefusedOut")
