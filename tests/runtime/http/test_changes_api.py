"""The change audit over HTTP: `/v1/audit/changes` (and the org twin), `/v1/audit/verify`, and the
console's Audit page. Who sees what (each owner its own rows; admins the machine-wide ones), and
from where each change came: `token:ID` for the API, `console:TOKEN_ID` for a console session."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.service import Service

BASE = "http://127.0.0.1:8080"
SAME = {"Origin": BASE}
VALUE = "changes-api-secret-Vv71q"
ENV_VALUE = "changes-api-env-Pp02x"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    def __init__(self, service: Service, client: TestClient):
        self.service = service
        self.client = client
        admin = service.actor()
        self.alice = service.create_user(admin, "alice")
        self.bob = service.create_user(admin, "bob")
        service.create_org(self.alice, "acme")
        self.tokens = {
            "root": service.create_token(admin),
            "alice": service.create_token(self.alice),
            "bob": service.create_token(self.bob),
        }

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def token_id(self, who: str) -> int:
        return self.service.store.identity.token_holder(self.tokens[who])[0]

    def changes(self, who: str, path: str = "/v1/audit/changes", **params) -> list[dict]:
        response = self.client.get(path, params=params, headers=self.headers(who))
        assert response.status_code == 200, response.text
        return response.json()["changes"]


@pytest.fixture
def world(store):
    service = Service(store, clock=Clock())
    with TestClient(create_app(service), base_url=BASE) as client:
        yield World(service, client)
    service.close()


def test_an_api_change_is_recorded_as_its_token(world):
    created = world.client.post("/v1/secrets", json={"name": "API_KEY", "value": VALUE}, headers=world.headers("alice"))
    assert created.status_code == 201
    world.client.put("/v1/env/RETRY", json={"value": ENV_VALUE}, headers=world.headers("alice"))
    rows = world.changes("alice")
    assert [(r["action"], r["target"], r["via"]) for r in rows[:2]] == [
        ("env.set", "RETRY", f"token:{world.token_id('alice')}"),
        ("secret.create", "API_KEY", f"token:{world.token_id('alice')}"),
    ]
    assert all(r["actor"] == "alice" and r["owner"] == "user:alice" for r in rows)
    body = world.client.get("/v1/audit/changes", headers=world.headers("alice")).text
    assert VALUE not in body and ENV_VALUE not in body


def test_each_owner_sees_only_its_own_changes(world):
    world.client.post("/v1/secrets", json={"name": "ALICE_KEY", "value": VALUE}, headers=world.headers("alice"))
    world.client.post("/v1/orgs/acme/secrets", json={"name": "ORG_KEY", "value": VALUE}, headers=world.headers("alice"))
    world.client.post("/v1/secrets", json={"name": "BOB_KEY", "value": VALUE}, headers=world.headers("bob"))
    assert {r["target"] for r in world.changes("alice") if r["target_kind"] == "secret"} == {"ALICE_KEY"}
    assert {r["target"] for r in world.changes("bob") if r["target_kind"] == "secret"} == {"BOB_KEY"}
    org = world.changes("alice", "/v1/orgs/acme/audit/changes")
    assert [(r["action"], r["target"]) for r in org] == [("secret.create", "ORG_KEY"), ("org.create", "acme")]
    refused = world.client.get("/v1/orgs/acme/audit/changes", headers=world.headers("bob"))
    assert refused.status_code == 403 and "ORG_KEY" not in refused.text
    # Even filtered by another owner's secret, nothing of it shows.
    assert world.changes("bob", secret="ALICE_KEY") == []
    # Machine-wide rows (users, keys) are the admins'; a user never sees who else exists.
    assert not [r for r in world.changes("alice") if r["owner"] is None]
    root = world.changes("root")
    assert {r["target"] for r in root if r["action"] == "user.create"} == {"alice", "bob"}
    assert not [r for r in root if r["owner"] not in (None, "user:root")]


def test_filters_and_pages(world):
    for n in range(5):
        world.client.put("/v1/env/VAR", json={"value": str(n)}, headers=world.headers("alice"))
    world.client.post("/v1/secrets", json={"name": "API_KEY", "value": VALUE}, headers=world.headers("alice"))
    assert [r["target"] for r in world.changes("alice", secret="API_KEY")] == ["API_KEY"]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = world.client.get("/v1/audit/changes", params=params, headers=world.headers("alice")).json()
        seen += [r["id"] for r in page["changes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in world.changes("alice")] and len(seen) == len(set(seen))
    # A cursor of alice's listing gives bob his own (empty) page, nothing of hers.
    mine = world.client.get("/v1/audit/changes?limit=1", headers=world.headers("alice")).json()["next_cursor"]
    theirs = world.client.get("/v1/audit/changes", params={"cursor": mine}, headers=world.headers("bob"))
    assert theirs.status_code == 200 and all(r["owner"] == "user:bob" for r in theirs.json()["changes"])
    bad = world.client.get("/v1/audit/changes", params={"cursor": "nope"}, headers=world.headers("alice"))
    assert bad.status_code == 422


def test_the_listing_needs_a_token(world):
    assert world.client.get("/v1/audit/changes").status_code == 401
    assert world.client.get("/v1/audit/verify").status_code == 401


def test_verify_is_for_admins_and_names_the_first_bad_row(world):
    assert world.client.get("/v1/audit/verify", headers=world.headers("alice")).status_code == 403
    ok = world.client.get("/v1/audit/verify", headers=world.headers("root")).json()
    assert ok["ok"] is True and ok["head"]["id"] == ok["rows"]
    anchored = world.client.get(
        "/v1/audit/verify", params={"head": f"{ok['head']['id']}:{ok['head']['mac']}"}, headers=world.headers("root")
    ).json()
    assert anchored["anchored"] is True
    conn = sqlite3.connect(world.service.settings.db_path)
    conn.execute("DROP TRIGGER changes_append_only")
    conn.execute("DELETE FROM changes WHERE id = 2")
    conn.commit()
    conn.close()
    broken = world.client.get("/v1/audit/verify", headers=world.headers("root")).json()
    assert (broken["ok"], broken["first_bad_id"], broken["head"]) == (False, 2, None)
    assert "row 2 was removed before row 3" in broken["problem"]


# the console -----------------------------------------------------------------------


def sign_in(world: World, who: str) -> str:
    response = world.client.post("/sign-in", data={"token": world.tokens[who]}, headers=SAME, follow_redirects=False)
    assert response.status_code == 303
    page = world.client.get("/secrets")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_a_console_change_is_recorded_as_its_session(world):
    csrf = sign_in(world, "alice")
    made = world.client.post("/secrets/new", data={"csrf": csrf, "name": "FROM_CONSOLE", "value": VALUE}, headers=SAME)
    assert made.status_code == 200
    world.client.post("/environment", data={"csrf": csrf, "name": "SHOWN", "value": ENV_VALUE}, headers=SAME)
    (row,) = world.changes("alice", secret="FROM_CONSOLE")
    assert (row["action"], row["via"]) == ("secret.create", f"console:{world.token_id('alice')}")
    page = world.client.get("/audit?view=changes")
    assert page.status_code == 200
    assert "FROM_CONSOLE" in page.text and "env.set" in page.text
    assert f"console:{world.token_id('alice')}" in page.text
    assert VALUE not in page.text and ENV_VALUE not in page.text


def test_the_console_shows_accesses_by_default_and_changes_on_its_tab(world):
    world.service.create_secret(world.alice, "API_KEY", VALUE)
    sign_in(world, "alice")
    accesses = world.client.get("/audit")
    assert accesses.status_code == 200 and "No reads recorded yet." in accesses.text
    assert "secret.create" not in accesses.text
    assert 'href="/audit?view=changes"' in accesses.text  # a plain link: no JavaScript needed
    changes = world.client.get("/audit?view=changes&secret=API_KEY")
    assert "secret.create" in changes.text and 'name="view" value="changes"' in changes.text
    none = world.client.get("/audit?view=changes&function=nothing")
    assert "No changes recorded for this filter." in none.text


def test_the_console_never_shows_another_owners_changes(world):
    world.service.create_secret(world.alice, "ALICE_ONLY", VALUE)
    world.service.create_secret(world.alice, "ACME_ONLY", VALUE, "acme")
    sign_in(world, "bob")
    mine = world.client.get("/audit?view=changes")
    assert mine.status_code == 200 and "ALICE_ONLY" not in mine.text and "ACME_ONLY" not in mine.text
    assert "user.create" not in mine.text  # machine-wide rows are the admins'
    foreign = world.client.get("/audit?view=changes&org=acme")
    assert foreign.status_code == 403 and "ACME_ONLY" not in foreign.text
    filtered = world.client.get("/audit?view=changes&secret=ALICE_ONLY")
    assert "No changes recorded for this filter." in filtered.text
    assert filtered.text.count("ALICE_ONLY") == 1  # only in the filter box, as bob typed it
