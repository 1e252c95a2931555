"""The console's secret versions (details page, Restore with a confirmation page) and Import
form (upload or pasted text): CSRF and origin checks, nothing changed by a refusal, no value
on any page, not even the one that reports a refused import."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.service import Service
from store import Store
from store.settings import Settings

BASE = "http://127.0.0.1:8080"
SAME = {"Origin": BASE}
MARK = "console-v3rsion-"


@pytest.fixture
def console(logic_home):
    settings = Settings(home=logic_home)
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    admin = service.actor()
    service.create_secret(admin, "API_KEY", MARK + "one")
    service.update_secret(admin, "API_KEY", MARK + "two")
    with TestClient(create_app(service), base_url=BASE) as client:
        signed = client.post("/sign-in", data={"token": init.token}, headers=SAME, follow_redirects=False)
        assert signed.status_code == 303
        page = client.get("/secrets")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        yield service, client, csrf
    service.close()


def _current(service: Service, name: str = "API_KEY") -> str:
    return service.store.secrets.reveal(service.actor().owner, name).reveal()


def post(client, path, csrf, files=None, **fields):
    return client.post(path, data={"csrf": csrf, **fields}, files=files, headers=SAME, follow_redirects=False)


def test_details_list_versions_and_restore_asks_first(console):
    service, client, csrf = console
    detail = client.get("/secrets/API_KEY").text
    assert "<h2>Versions</h2>" in detail and "<strong>current</strong>" in detail
    assert 'href="/secrets/API_KEY/versions/1/restore"' in detail
    assert 'href="/secrets/API_KEY/versions/2/restore"' not in detail  # the current one has no Restore
    confirm = client.get("/secrets/API_KEY/versions/1/restore")
    assert confirm.status_code == 200 and 'action="/secrets/API_KEY/versions/1/restore"' in confirm.text
    assert "as version 3" in confirm.text
    assert _current(service) == MARK + "two"  # a GET changes nothing
    done = post(client, "/secrets/API_KEY/versions/1/restore", csrf)
    assert done.status_code == 303 and done.headers["location"] == "/secrets/API_KEY"
    assert _current(service) == MARK + "one"
    detail = client.get("/secrets/API_KEY").text
    assert "(restored from 1)" in detail and "(console:" in detail
    for page in (detail, confirm.text):
        assert MARK not in page


def test_a_forged_or_bad_restore_changes_nothing(console, db_rows):
    service, client, csrf = console
    before = db_rows()
    no_csrf = client.post("/secrets/API_KEY/versions/1/restore", headers=SAME)
    other_site = client.post(
        "/secrets/API_KEY/versions/1/restore", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert no_csrf.status_code == 403 and other_site.status_code == 403
    assert post(client, "/secrets/API_KEY/versions/2/restore", csrf).status_code == 409
    assert post(client, "/secrets/API_KEY/versions/7/restore", csrf).status_code == 404
    assert post(client, "/secrets/API_KEY/versions/x/restore", csrf).status_code == 404
    assert post(client, "/secrets/API_KEY/versions/0/restore", csrf).status_code == 422
    assert client.get("/secrets/API_KEY/versions/7/restore").status_code == 404
    current_page = client.get("/secrets/API_KEY/versions/2/restore")
    assert current_page.status_code == 200 and "nothing to restore" in current_page.text
    assert "<form method" not in current_page.text.split("<main")[1]  # no restore button for the current one
    assert db_rows() == before


def test_another_owners_secret_is_not_found(console):
    service, client, csrf = console
    bob = service.create_user(service.actor(), "bob")
    service.create_secret(bob, "BOBS", MARK + "b1")
    service.update_secret(bob, "BOBS", MARK + "b2")
    assert client.get("/secrets/BOBS/versions/1/restore").status_code == 404
    assert post(client, "/secrets/BOBS/versions/1/restore", csrf).status_code == 404
    assert client.get("/secrets/BOBS/versions/1/restore?org=bobs-org").status_code == 404
    assert service.store.secrets.reveal(bob.owner, "BOBS").reveal() == MARK + "b2"


def test_the_secrets_page_has_an_import_form(console):
    _, client, _ = console
    page = client.get("/secrets").text
    assert 'action="/secrets/import"' in page and 'enctype="multipart/form-data"' in page
    assert client.get("/secrets/import").status_code == 200  # not read as a secret named "import"


def test_import_pasted_text_and_an_uploaded_file(console):
    service, client, csrf = console
    pasted = post(client, "/secrets/import", csrf, content=f"export PASTED={MARK}p\n")
    assert pasted.status_code == 200 and "Created:" in pasted.text and "PASTED" in pasted.text
    upload = {"file": ("prod.env", f'UPLOADED="{MARK}u\nline two"\nAPI_KEY={MARK}three\n'.encode(), "text/plain")}
    refused = post(client, "/secrets/import", csrf, files=upload)
    assert refused.status_code == 422 and "API_KEY already exists" in refused.text
    assert "UPLOADED" not in {s.name for s in service.list_secrets(service.actor())}
    updated = post(client, "/secrets/import", csrf, files=upload, update="1")
    assert updated.status_code == 200 and "Updated (the old values are kept as versions)" in updated.text
    assert _current(service, "UPLOADED") == MARK + "u\nline two" and _current(service) == MARK + "three"
    for page in (pasted.text, refused.text, updated.text):
        assert MARK not in page


def test_a_refused_import_lists_lines_and_never_echoes_the_text(console, db_rows):
    service, client, csrf = console
    lines = [f"GOOD_{i:02d}={MARK}{i}" for i in range(50)]
    lines.insert(41, "lower_case=" + MARK + "bad")  # line 42
    before = db_rows()
    refused = post(client, "/secrets/import", csrf, content="\n".join(lines))
    assert refused.status_code == 422
    assert "Nothing was imported (1 problem)" in refused.text and "line 42: invalid secret name" in refused.text
    assert MARK not in refused.text and "lower_case" not in refused.text
    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", refused.text, re.S)
    assert textarea is not None and textarea.group(1) == ""  # the form comes back empty
    too_big = post(client, "/secrets/import", csrf, content="A_KEY=" + "x" * (600 * 1024))
    assert too_big.status_code in (413, 422) and "x" * 64 not in too_big.text
    empty = post(client, "/secrets/import", csrf, content="")
    assert empty.status_code == 422 and "the import is empty" in empty.text
    assert db_rows() == before


def test_a_forged_import_is_refused_before_anything_is_read(console, db_rows):
    _, client, csrf = console
    before = db_rows()
    no_csrf = client.post("/secrets/import", data={"content": "FORGED=1"}, headers=SAME)
    other_site = client.post(
        "/secrets/import", data={"csrf": csrf, "content": "FORGED=1"}, headers={"Origin": "https://evil.example"}
    )
    assert no_csrf.status_code == 403 and other_site.status_code == 403
    assert db_rows() == before
