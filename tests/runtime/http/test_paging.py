"""Cursor paging on the long listings: runs, webhook logs, the access audit. Every item once,
newest first, across pages; the last page says so; a made-up cursor is a clear 422; a cursor
never widens what the caller may see."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.manifest import files_from_json
from runtime.service import Service
from store.secrets import Access
from store.settings import Settings


@pytest.fixture
def world(logic_home):
    from store import Store

    settings = Settings(home=logic_home, runs_kept=500, integration_logs_kept=500)
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    admin = service.actor()
    fn = service.deploy_function(admin, files_from_json({"name": "f", "source": "def main():\n  return 1\n"}))
    hook = service.create_integration(admin, {"name": "h", "event": "e", "url": "https://example.com/x"})
    service.create_secret(admin, "API_KEY", "paging-value-1")
    with service.store.transaction():
        for n in range(25):
            at = f"2026-12-01T10:00:{n:02d}.000000Z"
            service.store.functions.add_run(run_record(fn.id, f"run-{n:02d}", at))
            service.store.integrations.add_log(hook.id, None, {"at": at, "n": n})
        # Two accesses in the same microsecond: the id breaks the tie, so neither is skipped.
        service.store.secrets.record_access(
            Access(
                admin.owner, "API_KEY", "logic_function", fn.id, "f", f"run-{n:02d}", f"2026-12-01T10:00:{n // 2:02d}Z"
            )
            for n in range(25)
        )
    with TestClient(create_app(service)) as client:
        client.headers["Authorization"] = f"Bearer {init.token}"
        yield service, client, fn
    service.close()


def run_record(function_id: str, run_id: str, at: str) -> dict:
    return {
        "id": run_id,
        "function_id": function_id,
        "function_version": 1,
        "trigger": {"type": "manual", "event_id": None, "scheduled_at": None},
        "status": "success",
        "started_at": at,
        "finished_at": at,
        "duration_ms": 1.0,
        "logs": [],
        "result": 1,
        "error": None,
        "secrets_accessed": [],
        "events_published": [],
    }


def pages(client: TestClient, path: str, key: str, limit: int) -> list[list[dict]]:
    out, cursor = [], None
    for _ in range(50):  # bounded
        response = client.get(path, params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        out.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("paging did not end")


def test_runs_page_through_every_record_once_newest_first(world):
    _service, client, fn = world
    got = pages(client, f"/v1/logic/functions/{fn.id}/runs", "logic_runs", 10)
    assert [len(p) for p in got] == [10, 10, 5]
    assert [r["id"] for p in got for r in p] == [f"run-{n:02d}" for n in reversed(range(25))]


def test_webhook_logs_page_through(world):
    _service, client, _fn = world
    got = pages(client, "/v1/integrations/h/logs", "logs", 7)
    assert [e["n"] for p in got for e in p] == list(reversed(range(25)))


def test_the_audit_pages_through_ties_without_losing_any(world):
    _service, client, _fn = world
    got = pages(client, "/v1/audit", "accesses", 4)
    runs = [a["run_id"] for p in got for a in p]
    assert sorted(runs) == [f"run-{n:02d}" for n in range(25)]  # each once, ties included
    assert all(set(a) == {"secret", "consumer_kind", "consumer", "consumer_id", "run_id", "at"} for p in got for a in p)
    assert [a["secret"] for a in pages(client, "/v1/audit?secret=API_KEY", "accesses", 100)[0]] == ["API_KEY"] * 25


def test_an_exact_last_page_ends_with_an_empty_one(world):
    _service, client, fn = world
    got = pages(client, f"/v1/logic/functions/{fn.id}/runs", "logic_runs", 25)
    assert [len(p) for p in got] == [25, 0]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["x", 1]').decode(),  # the audit's shape, not the runs'
        "x" * 513,
    ],
)
def test_a_made_up_cursor_is_a_clear_422(world, cursor):
    _service, client, fn = world
    response = client.get(f"/v1/logic/functions/{fn.id}/runs", params={"cursor": cursor})
    assert response.status_code == 422
    assert "cursor" in response.json()["error"]


def test_a_cursor_does_not_widen_what_another_owner_sees(world):
    service, client, fn = world
    first = client.get(f"/v1/logic/functions/{fn.id}/runs", params={"limit": 5}).json()
    service.create_user(service.actor(), "bob")
    token = service.create_token(service.actor(), "bob")
    as_bob = {"Authorization": f"Bearer {token}"}
    cursor = first["next_cursor"]
    assert client.get(f"/v1/logic/functions/{fn.id}/runs", params={"cursor": cursor}, headers=as_bob).status_code == 404
    mine = client.get("/v1/audit?limit=2").json()["next_cursor"]
    audit = client.get("/v1/audit", params={"cursor": mine}, headers=as_bob)
    assert audit.status_code == 200 and audit.json()["accesses"] == []  # bob's own (empty) audit
