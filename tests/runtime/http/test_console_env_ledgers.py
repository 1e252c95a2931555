"""The console's Environment and Ledgers pages: forms with CSRF, clear errors that change
nothing, markup shown as text, another owner's ledger 404."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.service import Service
from store import Store
from store.settings import Settings

BASE = "http://127.0.0.1:8080"
SAME = {"Origin": BASE}
ATTACK = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">'


@pytest.fixture
def console(logic_home):
    settings = Settings(home=logic_home)
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    with TestClient(create_app(service), base_url=BASE) as client:
        signed = client.post("/sign-in", data={"token": init.token}, headers=SAME, follow_redirects=False)
        assert signed.status_code == 303
        page = client.get("/environment")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        yield service, client, csrf
    service.close()


def post(client, path, csrf, **fields):
    return client.post(path, data={"csrf": csrf, **fields}, headers=SAME, follow_redirects=False)


def test_environment_set_list_delete_and_refusals(console):
    service, client, csrf = console
    assert post(client, "/environment", csrf, name="RETRY_PERIOD", value="30").status_code == 303
    listing = client.get("/environment").text
    assert "RETRY_PERIOD" in listing and ">30<" in listing
    for name, problem in (("retry", "upper-case"), ("LOGIC_X", "reserved"), ("PARTICLE_X", "reserved")):
        refused = post(client, "/environment", csrf, name=name, value="1")
        assert refused.status_code == 422 and problem in refused.text, name
    assert [v.name for v in service.list_env(service.actor())] == ["RETRY_PERIOD"]
    assert post(client, "/environment/RETRY_PERIOD/delete", csrf).status_code == 303
    assert service.list_env(service.actor()) == []
    # No CSRF token: refused, nothing set.
    forged = client.post("/environment", data={"name": "X", "value": "1"}, headers=SAME)
    assert forged.status_code == 403 and service.list_env(service.actor()) == []


def test_markup_in_env_values_and_ledger_data_is_text(console):
    service, client, csrf = console
    post(client, "/environment", csrf, name="BANNER", value=ATTACK)
    service.create_ledger(service.actor(), "state", ATTACK)
    service.write_ledger(service.actor(), "state", "replace", {ATTACK: ATTACK})
    for path in ("/environment", "/ledgers", "/ledgers/state"):
        page = client.get(path).text
        assert "<script>window.__pwned" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;" in page or "\\u003cscript\\u003e" in page, path


def test_ledger_create_edit_raw_json_and_bad_input_changes_nothing(console):
    service, client, csrf = console
    created = post(client, "/ledgers", csrf, name="counters", description="per room")
    assert created.status_code == 303 and created.headers["location"] == "/ledgers/counters"
    assert post(client, "/ledgers", csrf, name="Bad Name").status_code == 422
    assert post(client, "/ledgers", csrf, name="counters").status_code == 422  # exists

    saved = post(client, "/ledgers/counters", csrf, data=json.dumps({"lab": 3, "hall": [1, 2]}))
    assert saved.status_code == 303
    page = client.get("/ledgers/counters").text
    assert "<code>lab</code>" in page and "[1, 2]" in page
    before = service.get_ledger(service.actor(), "counters").data
    for text, problem in (
        ("{not json", "not valid JSON"),
        ("[1, 2]", "one JSON object"),
        (json.dumps({"big": "x" * 20_000}), "nothing was saved"),
    ):
        refused = post(client, "/ledgers/counters", csrf, data=text)
        assert refused.status_code == 422 and problem in refused.text, text[:20]
        assert service.get_ledger(service.actor(), "counters").data == before
    versions = client.get("/ledgers/counters").text
    assert "Versions" in versions


def test_another_owners_ledger_is_404(console):
    service, client, csrf = console
    bob = service.create_user(service.actor(), "bob")
    service.create_ledger(bob, "bobs")
    assert client.get("/ledgers/bobs").status_code == 404
    assert post(client, "/ledgers/bobs", csrf, data="{}").status_code == 404
    assert service.get_ledger(bob, "bobs").data == {}
