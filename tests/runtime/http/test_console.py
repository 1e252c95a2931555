"""The console in-process (no browser): sessions, CSRF and origin checks, headers, escaping, scoping.

The browser tests (tests/e2e/test_console_browser.py) drive the same pages in Chromium over a
real server; these attack the web layer directly, as a hostile client would.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.http.console.security import COOKIE
from runtime.manifest import files_from_json
from runtime.service import Service

BASE = "http://127.0.0.1:8080"
SAME = {"Origin": BASE}
VALUE = "console-secret-value-Zq81"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def world(store, clock):
    service = Service(store, clock=clock)
    admin = service.actor()
    token = service.create_token(admin, label="console test")
    app = create_app(service)
    with TestClient(app, base_url=BASE) as client:
        yield service, client, token
    service.close()


def sign_in(client: TestClient, token: str) -> str:
    response = client.post("/sign-in", data={"token": token}, headers=SAME, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    page = client.get("/secrets")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def secret_names(service: Service) -> list[str]:
    return [s.name for s in service.list_secrets(service.actor())]


# sessions --------------------------------------------------------------------------


def test_signed_out_pages_redirect_to_sign_in_and_keep_no_open_redirect(world):
    service, client, token = world
    response = client.get("/secrets/API_KEY", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/sign-in?next=%2Fsecrets%2FAPI_KEY"
    signed = client.post("/sign-in?next=//evil.example/x", data={"token": token}, headers=SAME, follow_redirects=False)
    assert signed.headers["location"] == "/"


def test_the_session_cookie_is_httponly_strict_and_only_its_hash_is_stored(world, settings):
    service, client, token = world
    response = client.post("/sign-in", data={"token": token}, headers=SAME, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    session_id = re.match(rf"{COOKIE}=([^;]+)", cookie).group(1)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https gets Secure (cookie_options)
    conn = sqlite3.connect(settings.db_path)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert session_id not in dump and token not in dump


def test_a_wrong_token_is_refused_and_not_echoed(world):
    _service, client, _token = world
    guess = "lrt_" + "guess" * 8
    response = client.post("/sign-in", data={"token": guess}, headers=SAME)
    assert response.status_code == 401 and "invalid API token" in response.text
    assert guess not in response.text and COOKIE not in response.headers.get("set-cookie", "")


def test_sessions_expire_when_idle_and_end_at_sign_out(world, clock):
    service, client, token = world
    csrf = sign_in(client, token)
    clock.now += timedelta(seconds=service.settings.console_session_idle_s - 1)
    assert client.get("/secrets", follow_redirects=False).status_code == 200  # a request renews it
    clock.now += timedelta(seconds=service.settings.console_session_idle_s - 1)
    assert client.get("/secrets", follow_redirects=False).status_code == 200
    clock.now += timedelta(seconds=service.settings.console_session_idle_s + 1)
    assert client.get("/secrets", follow_redirects=False).status_code == 303
    csrf = sign_in(client, token)
    out = client.post("/sign-out", data={"csrf": csrf}, headers=SAME, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    assert client.get("/secrets", follow_redirects=False).status_code == 303


def test_revoking_the_token_ends_its_sessions(world):
    service, client, token = world
    sign_in(client, token)
    token_id = max(t["id"] for t in service.list_tokens(service.actor()))
    service.revoke_token(service.actor(), token_id)
    assert client.get("/secrets", follow_redirects=False).status_code == 303


def test_a_stolen_cookie_from_another_scheme_or_a_made_up_id_gets_nothing(world):
    _service, client, _token = world
    for forged in ("lrs_" + "A" * 43, "not-a-session", ""):
        client.cookies.set(COOKIE, forged)
        assert client.get("/secrets", follow_redirects=False).status_code == 303


# CSRF and origin -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, csrf",
    [
        ({"Origin": "http://evil.example"}, "right"),
        ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, "right"),  # a sandboxed frame elsewhere
        ({"Sec-Fetch-Site": "cross-site"}, "right"),
        ({"Sec-Fetch-Site": "same-site"}, "right"),
        (SAME, None),
        (SAME, "wrong"),
        (SAME, ""),
    ],
)
def test_a_cross_site_or_tokenless_post_is_refused_and_changes_nothing(world, db_rows, headers, csrf):
    service, client, token = world
    real = sign_in(client, token)
    before = db_rows()
    data = {"name": "PLANTED", "value": VALUE}
    if csrf is not None:
        data["csrf"] = real if csrf == "right" else csrf
    response = client.post("/secrets/new", data=data, headers=headers, follow_redirects=False)
    assert response.status_code == 403
    assert VALUE not in response.text
    assert db_rows() == before and "PLANTED" not in secret_names(service)


def test_a_post_without_origin_headers_still_needs_the_csrf_token(world):
    service, client, token = world
    csrf = sign_in(client, token)
    ok = client.post("/secrets/new", data={"csrf": csrf, "name": "FROM_OLD_CLIENT", "value": VALUE})
    assert ok.status_code == 200 and "FROM_OLD_CLIENT" in secret_names(service)


def test_a_browser_form_post_under_no_referrer_is_accepted(world):
    """Under Referrer-Policy: no-referrer Chromium sends `Origin: null` with Sec-Fetch-Site
    same-origin on the console's own forms: that must pass (the CSRF token still counts)."""
    service, client, token = world
    csrf = sign_in(client, token)
    browser = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    ok = client.post("/secrets/new", data={"csrf": csrf, "name": "FROM_BROWSER", "value": VALUE}, headers=browser)
    assert ok.status_code == 200 and "FROM_BROWSER" in secret_names(service)
    forged = client.post("/secrets/new", data={"csrf": "x", "name": "FORGED", "value": VALUE}, headers=browser)
    assert forged.status_code == 403 and "FORGED" not in secret_names(service)


def test_sign_in_from_another_site_is_refused(world):
    _service, client, token = world
    response = client.post("/sign-in", data={"token": token}, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and COOKIE not in response.headers.get("set-cookie", "")


# values never come back -------------------------------------------------------------------


def test_a_value_is_never_echoed_not_even_after_a_validation_error(world):
    service, client, token = world
    csrf = sign_in(client, token)
    refused = client.post("/secrets/new", data={"csrf": csrf, "name": "bad name", "value": VALUE}, headers=SAME)
    assert refused.status_code == 422 and "invalid secret name" in refused.text and VALUE not in refused.text
    created = client.post("/secrets/new", data={"csrf": csrf, "name": "API_KEY", "value": VALUE}, headers=SAME)
    assert created.status_code == 200 and VALUE not in created.text
    empty = client.post("/secrets/API_KEY/edit", data={"csrf": csrf, "value": ""}, headers=SAME)
    assert empty.status_code == 422 and "must not be empty" in empty.text
    for path in ("/secrets", "/secrets/API_KEY", "/secrets/API_KEY/edit", "/audit", "/tokens", "/logic"):
        page = client.get(path)
        assert page.status_code == 200 and VALUE not in page.text, path


def test_a_used_secret_cannot_be_deleted_and_its_users_are_named(world):
    service, client, token = world
    csrf = sign_in(client, token)
    client.post("/secrets/new", data={"csrf": csrf, "name": "USED", "value": VALUE}, headers=SAME)
    service.deploy_function(
        service.actor(), files_from_json({"name": "reader", "secrets": ["USED"], "source": "def main():\n  return 1\n"})
    )
    listing = client.get("/secrets").text
    assert "In use by reader" in listing and 'href="/secrets/USED/delete' not in listing
    confirm = client.get("/secrets/USED/delete").text
    assert "in use by reader" in confirm and 'action="/secrets/USED/delete' not in confirm
    refused = client.post("/secrets/USED/delete", data={"csrf": csrf}, headers=SAME)
    assert refused.status_code == 409 and "in use" in refused.text and "USED" in secret_names(service)


# escaping and headers -----------------------------------------------------------------------

ATTACK = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_user_controlled_text_is_escaped(world):
    service, client, token = world
    sign_in(client, token)
    service.deploy_function(
        service.actor(),
        files_from_json(
            {
                "name": "xss",
                "description": ATTACK,
                "source": "def main():\n  return 1\n",
                "triggers": [{"type": "event", "event_name": "<b>ev</b>"}],
            }
        ),
    )
    for path in ("/logic", "/logic/xss"):
        page = client.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>ev</b>" not in page
        assert "&lt;script&gt;" in page or "&lt;b&gt;" in page


def test_every_console_response_carries_the_security_headers(world):
    _service, client, token = world
    sign_in(client, token)
    for path in (
        "/sign-in",
        "/secrets",
        "/secrets/new",
        "/logic",
        "/logic/define",
        "/integrations",
        "/audit",
        "/tokens",
        "/secrets/NOPE",
        "/static/console.css",
        "/docs",
    ):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], path  # never for scripts
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    page_csp = client.get("/secrets").headers["content-security-policy"]
    assert "unsafe-inline" not in page_csp  # the pages need no inline style either
    assert client.get("/secrets").headers["cache-control"] == "no-store"


def test_no_template_has_inline_script_or_style_attributes():
    from pathlib import Path

    from runtime.http.console import routes

    for template in sorted(Path(routes.HERE, "templates").glob("*.html")):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\sstyle=|\son[a-z]+=", text), template.name


# scoping ------------------------------------------------------------------------------------


def test_another_owners_secret_is_404_and_a_foreign_org_is_refused(world, store):
    service, client, token = world
    alice = service.create_user(service.actor(), "alice")
    service.create_org(alice, "acme")
    service.create_secret(alice, "ALICES", VALUE)
    service.create_secret(alice, "ACME_KEY", VALUE, org="acme")
    sign_in(client, token)  # the admin, who is in neither
    assert client.get("/secrets/ALICES").status_code == 404
    assert client.get("/secrets?org=acme").status_code == 403
    assert client.get("/secrets/ACME_KEY?org=acme").status_code == 403
    assert "acme" not in client.get("/secrets").text  # a non-member's switcher lists no such org


# the integration builder ---------------------------------------------------------------------


def test_the_builder_declares_picked_secrets_creates_new_ones_and_saves(world):
    service, client, token = world
    csrf = sign_in(client, token)
    service.create_secret(service.actor(), "PICKED", "picked-value-123")
    spec = '{"name": "hook", "event": "ping", "url": "https://example.com/x", "headers": {"X-Key": "{{{PICKED}}}"}}'
    declared = client.post(
        "/integrations/new", data={"csrf": csrf, "spec": spec, "pick": "PICKED", "action": "declare"}, headers=SAME
    )
    assert declared.status_code == 200 and "PICKED is declared" in declared.text
    assert "&#34;secrets&#34;: [\n    &#34;PICKED&#34;\n  ]" in declared.text  # the JSON now declares it
    made = client.post(
        "/integrations/new",
        data={"csrf": csrf, "spec": spec, "new_name": "FRESH", "new_value": VALUE, "action": "new_secret"},
        headers=SAME,
    )
    assert made.status_code == 200 and "Created FRESH" in made.text and VALUE not in made.text
    assert "FRESH" in secret_names(service)
    bad = client.post("/integrations/new", data={"csrf": csrf, "spec": "{not json", "action": "save"}, headers=SAME)
    assert bad.status_code == 422 and "webhook JSON is not valid" in bad.text
    undeclared = client.post("/integrations/new", data={"csrf": csrf, "spec": spec, "action": "save"}, headers=SAME)
    assert undeclared.status_code == 422 and "is neither a declared secret" in undeclared.text
    full = json.dumps({**json.loads(spec), "secrets": ["PICKED"]})
    saved = client.post(
        "/integrations/new", data={"csrf": csrf, "spec": full, "action": "save"}, headers=SAME, follow_redirects=False
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/integrations/hook"
    assert service.get_integration(service.actor(), "hook").secrets == ["PICKED"]
    assert "In use by hook" in client.get("/secrets").text


def test_the_function_page_lists_versions_and_the_next_tick(world, clock):
    service, client, token = world
    sign_in(client, token)
    body = {
        "name": "ticker",
        "source": "def main():\n  return 1\n",
        "triggers": [{"type": "schedule", "cron": "*/5 * * * *"}],
    }
    service.deploy_function(service.actor(), files_from_json({**body, "description": "first"}))
    service.deploy_function(service.actor(), files_from_json({**body, "description": "second"}))
    page = client.get("/logic/ticker").text
    assert "2 (current)" in page and "first" in page and "second" in page
    assert "<code>*/5 * * * *</code>" in page and "2026-12-01 12:05 UTC" in page  # the clock is 12:00


def test_an_unknown_console_page_is_an_html_404_and_an_unknown_api_route_stays_json(world):
    _service, client, _token = world
    page = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Back to the console" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    api = client.get("/v1/no/such/route", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json()["error"] == "no such API route"


def test_todays_counts_follow_the_service_clock(world, store, clock):
    service, client, token = world
    sign_in(client, token)
    fn = service.deploy_function(
        service.actor(), files_from_json({"name": "counted", "source": "def main():\n  return 1\n"})
    )
    for n, (day, status) in enumerate([("2026-12-01", "success"), ("2026-12-01", "timeout"), ("2026-11-30", "error")]):
        store.functions.add_run(
            {
                "id": f"r{n}",
                "function_id": fn.id,
                "function_version": 1,
                "status": status,
                "started_at": f"{day}T08:00:0{n}.000000Z",
                "logs": [],
            }
        )
    assert "1 / 0 / 1" in client.get("/logic").text  # today by the clock: the 30th's error is not counted
    clock.now += timedelta(days=1)
    sign_in(client, token)
    assert "0 / 0 / 0" in client.get("/logic").text


def test_delete_and_revoke_ask_first_and_a_get_changes_nothing(world):
    service, client, token = world
    csrf = sign_in(client, token)
    client.post("/secrets/new", data={"csrf": csrf, "name": "GONE", "value": VALUE}, headers=SAME)
    confirm = client.get("/secrets/GONE/delete")
    assert confirm.status_code == 200 and 'action="/secrets/GONE/delete"' in confirm.text
    assert "GONE" in secret_names(service)  # asking deletes nothing
    done = client.post("/secrets/GONE/delete", data={"csrf": csrf}, headers=SAME, follow_redirects=False)
    assert done.status_code == 303
    assert "GONE" not in secret_names(service)
    assert client.get("/secrets/GONE/delete").status_code == 404

    other = service.create_token(service.actor(), label="other")
    other_id = max(t["id"] for t in service.list_tokens(service.actor()))
    ask = client.get(f"/tokens/{other_id}/revoke")
    assert ask.status_code == 200 and f'action="/tokens/{other_id}/revoke"' in ask.text
    assert other_id in [t["id"] for t in service.list_tokens(service.actor())]
    assert client.get("/tokens/999999/revoke").status_code == 404
    assert client.get("/tokens/x/revoke").status_code == 404
    assert other not in ask.text


def test_a_reposted_token_form_creates_nothing(world):
    service, client, token = world
    sign_in(client, token)
    form = client.get("/tokens").text
    fields = dict(re.findall(r'name="(csrf|once)" value="([^"]+)"', form))
    before = len(service.list_tokens(service.actor()))
    first = client.post("/tokens", data={**fields, "label": "once"}, headers=SAME)
    assert first.status_code == 200 and "it is not shown again" in first.text
    again = client.post("/tokens", data={**fields, "label": "once"}, headers=SAME)  # a reload
    assert again.status_code == 409 and "no token was created" in again.text
    assert 'class="token"' not in again.text
    forged = client.post("/tokens", data={"csrf": fields["csrf"], "once": "0" * 64}, headers=SAME)
    assert forged.status_code == 409
    assert len(service.list_tokens(service.actor())) == before + 1
    fresh = dict(re.findall(r'name="(csrf|once)" value="([^"]+)"', again.text))
    assert client.post("/tokens", data={**fresh, "label": "two"}, headers=SAME).status_code == 200
    assert len(service.list_tokens(service.actor())) == before + 2


def test_the_live_run_stream_needs_a_session_and_the_owners_function(world, store):
    service, client, token = world
    signed_out = client.get("/logic/anything/runs/stream", follow_redirects=False)
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/sign-in")
    sign_in(client, token)
    bob = service.create_user(service.actor(), "bob")
    service.deploy_function(bob, files_from_json({"name": "bobs", "source": "def main():\n  return 1\n"}))
    theirs = client.get("/logic/bobs/runs/stream")
    assert theirs.status_code == 404 and "text/html" in theirs.headers["content-type"]
