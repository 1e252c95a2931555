"""The web console in a real browser (Debian's chromium driven by Playwright) against a real `logic serve`.

Every test starts its own server (`make_server`) and opens a fresh browser context on it;
the browser itself is shared by the module. Each screen is saved as a full-page screenshot
as console-<screen>.png (docs/screenshots/ with UPDATE_SCREENSHOTS=1).

Every form is posted by the browser itself: under `Referrer-Policy: no-referrer` Chromium sends
`Origin: null` with `Sec-Fetch-Site: same-origin`, which the console accepts (with the CSRF token),
and `test_plain_browser_form_post_is_accepted` pins that.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import poll

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# README's pictures: written into docs/screenshots with UPDATE_SCREENSHOTS=1, else beside the
# test run's temporary files (so a test run leaves the checkout as it was).
SCREENSHOTS = (
    Path(__file__).parents[2] / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "logic-console-screenshots"
)
STATIC_SCRIPTS = ["/static/vendor/htmx.min.js", "/static/console.js"]
SENSITIVE = "[[SENSITIVE]]"

expect.set_options(timeout=5_000)


# fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser):
    """open_page(server) -> a Page in a fresh context (UTC, en-US) whose relative URLs go to the server."""
    contexts = []

    def open_(server) -> Page:
        context = browser.new_context(
            base_url=server.url, timezone_id="UTC", locale="en-US", viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


def screenshot(page: Page, screen: str, *, full_page: bool = True, **options) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"console-{screen}.png", full_page=full_page, **options)


def path_is(path: str) -> re.Pattern[str]:
    """A to_have_url pattern: exactly this path, any query."""
    return re.compile(r"^http://127\.0\.0\.1:\d+" + re.escape(path) + r"(\?.*)?$")


def sign_in(page: Page, token: str) -> None:
    page.goto("/sign-in")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(path_is("/secrets"))


def tab_to(page: Page, target: Locator, limit: int = 40) -> None:
    """Press Tab until `target` has the focus (keyboard only: no click, no focus())."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{target} not reached with {limit} Tab presses")


def secret_row(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def open_menu(page: Page, name: str) -> Locator:
    """Open the "…" menu of a secret's row (a <details class="menu">) with the mouse; its list."""
    row = secret_row(page, name)
    row.get_by_label(f"Actions for {name}").click()
    menu = row.locator("details.menu")
    expect(menu).to_have_attribute("open", "")
    return menu


def fact(page: Page, term: str) -> Locator:
    """The <dd> of a <dl class="facts"> entry."""
    return page.locator(f"dl.facts dt:text-is('{term}') + dd")


def deploy(api: httpx.Client, **spec) -> dict:
    response = api.post("/v1/logic/functions", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def create_secret(api: httpx.Client, name: str, value: str) -> None:
    response = api.post("/v1/secrets", json={"name": name, "value": value})
    assert response.status_code == 201, response.text


def publish(api: httpx.Client, name: str, data: str | None = None) -> None:
    response = api.post("/v1/events", json={"name": name, "data": data})
    assert response.status_code == 202, response.text


def assert_only_static_scripts(page: Page) -> None:
    """Nothing injected ran or exists: no flag set, no <script> but the two static ones."""
    assert page.evaluate("window.__pwned") is None
    sources = page.evaluate("Array.from(document.querySelectorAll('script')).map(s => s.getAttribute('src'))")
    assert sources == STATIC_SCRIPTS
    assert page.locator("img, svg, iframe, object, embed").count() == 0


# 0. a form POST exactly as the browser sends it ---------------------------------------------------------------


def test_plain_browser_form_post_is_accepted(make_server, open_page):
    server = make_server()
    server.start()
    page = open_page(server)
    page.goto("/sign-in")
    page.get_by_label("API token").fill(server.token)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()  # Chromium sends it with `Origin: null`
    assert answer.value.status == 303, f"{answer.value.status}: {page.get_by_role('alert').inner_text()}"
    expect(page).to_have_url(path_is("/secrets"))


# 1. sign in and out -------------------------------------------------------------------


def test_sign_in_sign_out_and_a_wrong_token(make_server, open_page):
    server = make_server()
    server.start()
    page = open_page(server)

    page.goto("/secrets")
    expect(page).to_have_url(path_is("/sign-in"))
    assert "next=%2Fsecrets" in page.url
    screenshot(page, "sign-in")

    wrong = "lrt_" + "wrongtoken0123456789" * 2
    page.get_by_label("API token").fill(wrong)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(path_is("/sign-in"))
    expect(page.get_by_label("API token")).to_have_value("")
    assert wrong not in page.content()
    assert page.context.cookies() == []

    page.get_by_label("API token").fill(server.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(path_is("/secrets"))  # the ?next= path
    expect(page.get_by_role("heading", level=1)).to_have_text("Cloud secrets")
    expect(page.get_by_role("link", name="Cloud secrets")).to_have_attribute("aria-current", "page")
    cookie = next(c for c in page.context.cookies() if c["name"] == "logic_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.token not in page.content()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(path_is("/sign-in"))
    page.goto("/secrets")
    expect(page).to_have_url(path_is("/sign-in"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to logic-runtime")


# 2. secrets: create (keyboard only), list, details, edit, delete; a bad name -----------


def test_secret_lifecycle_with_the_keyboard(make_server, open_page):
    value, new_value = "first-Value-5c1e9d", "second-Value-longer-77aa03"
    server = make_server()
    server.start()
    page = open_page(server)

    # Sign in and create, keyboard only.
    page.goto("/sign-in")
    expect(page.get_by_label("API token")).to_be_focused()  # autofocus
    page.keyboard.type(server.token)
    page.keyboard.press("Enter")
    expect(page).to_have_url(path_is("/secrets"))
    expect(page.get_by_text("No secrets yet")).to_be_visible()
    tab_to(page, page.get_by_role("link", name="Create new secret"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(path_is("/secrets/new"))
    tab_to(page, page.get_by_label("Name"))
    page.keyboard.type("API_KEY")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Value")).to_be_focused()
    page.keyboard.type(value)
    screenshot(page, "secret-new")
    page.keyboard.press("Enter")

    # Listed: Name, Usage count 0, Updated at, Last accessed never.
    expect(page).to_have_url(path_is("/secrets"))
    expect(page.get_by_role("columnheader")).to_have_text(
        ["Name", "Usage count", "Updated at", "Last accessed", "Actions"]
    )
    cells = secret_row(page, "API_KEY").get_by_role("cell")
    expect(cells.nth(0)).to_have_text("API_KEY")
    expect(cells.nth(1)).to_have_text("0")
    expect(cells.nth(2).locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    expect(cells.nth(3)).to_have_text("never")
    screenshot(page, "secrets")

    # View details through the "…" menu, still with the keyboard.
    tab_to(page, page.get_by_label("Actions for API_KEY"))
    page.keyboard.press("Enter")
    view = page.get_by_role("link", name="View details")
    expect(view).to_be_visible()
    tab_to(page, view, limit=3)
    page.keyboard.press("Enter")
    expect(page).to_have_url(path_is("/secrets/API_KEY"))
    expect(page.get_by_role("heading", level=1)).to_have_text("API_KEY")
    expect(fact(page, "Last accessed")).to_have_text("never")
    expect(fact(page, "Usage count")).to_have_text("0")
    expect(page.get_by_role("link", name="Delete secret")).to_be_visible()
    screenshot(page, "secret-detail")
    assert value not in page.content()

    # Edit with a new value (the mouse from here on).
    page.goto("/secrets")
    open_menu(page, "API_KEY").get_by_role("link", name="Edit").click()
    expect(page).to_have_url(path_is("/secrets/API_KEY/edit"))
    expect(page.get_by_label("New value")).to_have_value("")
    page.get_by_label("New value").fill(new_value)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(path_is("/secrets"))
    with server.client() as api:  # the next run reads the new value (its length tells which)
        run = api.post(
            "/v1/logic/execute",
            json={"secrets": ["API_KEY"], "source": "def main(secrets):\n    return len(secrets.API_KEY)\n"},
        )
        assert run.status_code == 200, run.text
        assert run.json()["result"] == len(new_value)

    # Delete through the menu, which asks first: Cancel keeps it, the button deletes it.
    open_menu(page, "API_KEY").get_by_role("link", name="Delete").click()
    expect(page).to_have_url(path_is("/secrets/API_KEY/delete"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete API_KEY?")
    screenshot(page, "secret-delete")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(path_is("/secrets/API_KEY"))
    page.goto("/secrets")
    open_menu(page, "API_KEY").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete secret").click()
    expect(page).to_have_url(path_is("/secrets"))
    expect(secret_row(page, "API_KEY")).to_have_count(0)
    expect(page.get_by_text("No secrets yet")).to_be_visible()
    with server.client() as api:
        assert api.get("/v1/secrets/API_KEY").status_code == 404

    # A lower-case name: the browser's own check stops it first...
    page.goto("/secrets/new")
    page.get_by_label("Name").fill("api_key")
    page.get_by_label("Value").fill(value)
    page.get_by_label("Value").press("Enter")
    assert page.get_by_label("Name").evaluate("el => el.validity.patternMismatch")
    expect(page).to_have_url(path_is("/secrets/new"))
    # ... and without it the server refuses it with the rule, the value not echoed back.
    page.locator("main form").evaluate("form => { form.noValidate = true; }")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create secret").click()
    assert answer.value.status == 422
    expect(page.get_by_role("alert")).to_contain_text(
        "invalid secret name 'api_key': use upper-case letters, digits and _, not starting with a digit"
    )
    expect(page.get_by_label("Name")).to_have_value("api_key")
    expect(page.get_by_label("Value")).to_have_value("")
    assert value not in page.content() and value not in answer.value.text()
    with server.client() as api:
        assert api.get("/v1/secrets").json()["secrets"] == []


# 3. a used secret cannot be deleted ----------------------------------------------------


def test_a_secret_in_use_cannot_be_deleted(make_server, open_page):
    server = make_server()
    server.start()
    with server.client() as api:
        create_secret(api, "API_KEY", "used-Value-0b7f")
    page = open_page(server)
    sign_in(page, server.token)

    page.goto("/logic/define")
    page.get_by_label("Manifest").fill('{"name": "uses-key", "secrets": ["API_KEY"]}')
    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(path_is("/logic/uses-key"))
    expect(page.get_by_role("heading", level=1)).to_have_text("uses-key")
    expect(fact(page, "Secrets")).to_have_text("API_KEY")

    page.goto("/secrets")
    expect(secret_row(page, "API_KEY").get_by_role("cell").nth(1)).to_have_text("1")
    menu = open_menu(page, "API_KEY")
    expect(menu.get_by_role("button", name="Delete")).to_be_disabled()
    expect(menu.get_by_text("In use by uses-key")).to_be_visible()
    expect(menu.get_by_role("button", name="Delete")).to_have_accessible_description("In use by uses-key")

    page.goto("/secrets/API_KEY")
    expect(page.get_by_role("listitem").filter(has_text="Function uses-key")).to_be_visible()
    expect(page.get_by_role("link", name="Delete secret")).to_have_count(0)
    with server.client() as api:
        assert api.get("/v1/secrets/API_KEY").status_code == 200


# 4. execute on the define page ----------------------------------------------------------

READER = """import logic


def main(event, secrets):
    print("key is", secrets.API_KEY)
    logic.log.info("event", event.name, event.data)
    return {"length": len(secrets.API_KEY), "echo": secrets.API_KEY}
"""


def test_execute_shows_the_run_record_masked(make_server, open_page):
    value = "exec-Value-9d31c2aa"
    server = make_server()
    server.start()
    with server.client() as api:
        create_secret(api, "API_KEY", value)
    page = open_page(server)
    sign_in(page, server.token)

    page.goto("/logic/define")
    page.get_by_label("Code (Python)").fill(READER)
    page.get_by_label("Manifest").fill('{\n  "name": "reader",\n  "secrets": ["API_KEY"]\n}')
    page.get_by_label("Event name").fill("test-event")
    page.get_by_label("Event data").fill('{"n": 1}')
    page.get_by_role("button", name="Run").click()

    expect(page.get_by_role("heading", name="Run record")).to_be_visible()
    expect(page.locator("main .status")).to_have_text("success")
    record = page.locator(".record")
    expect(record).to_contain_text("read API_KEY")
    expect(record.locator(".logs li").first).to_contain_text(f"[info] key is {SENSITIVE}")
    expect(record.locator(".logs li").nth(1)).to_contain_text('event test-event {"n": 1}')
    expect(record.locator("pre")).to_contain_text(f'"echo": "{SENSITIVE}"')
    expect(record.locator("pre")).to_contain_text(f'"length": {len(value)}')
    expect(page.get_by_label("Code (Python)")).to_have_value(READER)  # the form keeps its inputs
    assert value not in page.content()
    screenshot(page, "define")

    # The read is audited; the secret's last access is set.
    page.goto("/audit")
    rows = page.get_by_role("row").filter(has_text="API_KEY")
    expect(rows).to_have_count(3)  # each read of secrets.API_KEY is one
    expect(rows.filter(has_text="function reader")).to_have_count(3)
    screenshot(page, "audit")
    page.goto("/secrets")
    expect(secret_row(page, "API_KEY").get_by_role("cell").nth(3).locator("time")).to_be_visible()
    assert value not in page.content()


# 5. the function page follows new runs (htmx) ---------------------------------------------


def test_function_page_shows_a_later_run_without_reload(make_server, open_page):
    server = make_server()
    server.start()
    source = 'import logic\n\n\ndef main(event):\n    logic.log.info("got", event.name, event.data)\n    return 1\n'
    with server.client() as api:
        deploy(
            api,
            name="on-ping",
            description="Answers pings",
            source=source,
            triggers=[{"type": "event", "event_name": "ping"}],
        )
        page = open_page(server)
        sign_in(page, server.token)
        page.goto("/logic/on-ping")
        expect(page.locator("#runs")).to_contain_text("No runs yet")
        expect(page.locator("main code").filter(has_text=re.compile("^ping$")).first).to_be_visible()  # its trigger
        page.evaluate("window.__loadedOnce = true")

        publish(api, "ping", "hello-from-the-api")
        runs = page.locator("#runs details.run")
        expect(runs).to_have_count(1, timeout=10_000)

    assert page.evaluate("window.__loadedOnce") is True  # the same document: no reload
    expect(runs.first.locator(".status")).to_have_text("success")
    expect(runs.first.locator("summary")).to_contain_text("event")
    runs.first.locator("summary").click()
    expect(runs.first.locator(".logs")).to_contain_text("[info] got ping hello-from-the-api")
    screenshot(page, "function")

    page.goto("/logic")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="on-ping"))
    expect(row.get_by_role("cell")).to_have_text(["on-ping", "yes", "event ping", re.compile("^success "), "1 / 0 / 0"])
    screenshot(page, "logic")


# 6. a webhook with a secret: the receiver gets the value, the log shows it masked ---------


def test_integration_log_masks_the_secret(make_server, open_page, receiver):
    value = "hook-Value-3e8a55f1"
    server = make_server()
    server.start()
    with server.client() as api:
        create_secret(api, "API_KEY", value)
        hook = api.post(
            "/v1/integrations",
            json={
                "name": "hook",
                "event": "ping",
                "url": receiver.url + "/h",
                "method": "POST",
                "secrets": ["API_KEY"],
                "headers": {"X-Key": "{{{API_KEY}}}"},
            },
        )
        assert hook.status_code == 201, hook.text
        publish(api, "ping", "knock")
        got = poll(lambda: receiver.requests, timeout=10)
        assert got[0].path == "/h" and got[0].headers.get("X-Key") == value
        poll(lambda: api.get(f"/v1/integrations/{hook.json()['id']}/logs").json()["logs"], timeout=10)

    page = open_page(server)
    sign_in(page, server.token)
    page.goto("/integrations")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="hook"))
    expect(row.get_by_role("cell").nth(1)).to_have_text("ping")
    expect(row.get_by_role("cell").nth(3)).to_have_text("API_KEY")
    screenshot(page, "integrations")

    row.get_by_role("link", name="hook").click()
    expect(page).to_have_url(path_is("/integrations/hook"))
    entries = page.locator("details.run")
    expect(entries).to_have_count(1)
    expect(entries.first.locator(".status")).to_have_text("ok")
    entries.first.locator("summary").click()
    expect(entries.first.locator("pre")).to_contain_text(f'"x-key": "{SENSITIVE}"')
    assert value not in page.content()
    screenshot(page, "integration")

    page.goto("/secrets")
    expect(secret_row(page, "API_KEY").get_by_role("cell").nth(1)).to_have_text("1")
    expect(open_menu(page, "API_KEY").get_by_text("In use by hook")).to_be_visible()


def test_the_secret_picker_declares_a_secret_the_webhook_then_sends(make_server, open_page, receiver):
    """The builder: the picker inserts {{{API_KEY}}} at the cursor and declares it; a secret made
    on the spot never comes back; the saved webhook sends the real value, its log shows the mask."""
    value = "picked-Value-5c2e91aa"
    server = make_server()
    server.start()
    with server.client() as api:
        create_secret(api, "API_KEY", value)
    page = open_page(server)
    sign_in(page, server.token)
    page.goto("/integrations")
    page.get_by_role("link", name="Create integration").first.click()
    expect(page).to_have_url(path_is("/integrations/new"))
    spec = {"name": "picked", "event": "knock", "url": receiver.url + "/p", "method": "POST", "headers": {"X-Key": ""}}
    text = json.dumps(spec, indent=2)
    area = page.get_by_label("Webhook JSON")
    area.fill(text)
    cursor = text.index('"X-Key": ""') + len('"X-Key": "')
    area.evaluate("(el, at) => { el.focus(); el.setSelectionRange(at, at); }", cursor)
    page.get_by_label("Secret", exact=True).select_option("API_KEY")
    page.get_by_role("button", name="Insert and declare").click()
    picked = json.loads(area.input_value())
    assert picked["headers"]["X-Key"] == "{{{API_KEY}}}" and picked["secrets"] == ["API_KEY"]

    # A new secret on the spot: created and declared, its value never put back into the page.
    page.get_by_label("Create a new secret: name").fill("SPARE_KEY")
    page.get_by_label("Value (you will not be able to see it again)").fill("spare-Value-0d9e")
    page.get_by_role("button", name="Create secret and declare it").click()
    expect(page.get_by_role("status")).to_contain_text("Created SPARE_KEY")
    assert "spare-Value-0d9e" not in page.content()
    assert json.loads(page.get_by_label("Webhook JSON").input_value())["secrets"] == ["API_KEY", "SPARE_KEY"]
    screenshot(page, "integration-builder")
    page.get_by_role("button", name="Create integration").click()
    expect(page).to_have_url(path_is("/integrations/picked"))

    with server.client() as api:
        publish(api, "knock", "hello")
        got = poll(lambda: receiver.requests, timeout=10)
        poll(lambda: api.get("/v1/integrations/picked/logs").json()["logs"], timeout=10)
    assert got[0].path == "/p" and got[0].headers.get("X-Key") == value
    page.reload()
    entry = page.locator("details.run").first
    expect(entry).to_be_visible(timeout=10_000)
    entry.locator("summary").click()
    expect(entry.locator("pre")).to_contain_text(f'"x-key": "{SENSITIVE}"')
    assert value not in page.content()


def test_editing_an_existing_integration_changes_what_it_sends(make_server, open_page, receiver):
    """Edit: the saved JSON is in the form; a broken edit is refused with its problems and the old
    webhook still runs; a good edit (a new header from a picked secret) is what the next event sends."""
    value = "edited-Value-77c1d2"
    server = make_server()
    server.start()
    with server.client() as api:
        create_secret(api, "API_KEY", value)
        made = api.post(
            "/v1/integrations",
            json={"name": "edit-me", "event": "tap", "url": receiver.url + "/before", "method": "POST"},
        )
        assert made.status_code == 201, made.text
    page = open_page(server)
    sign_in(page, server.token)
    page.goto("/integrations/edit-me")
    page.get_by_role("link", name="Edit").click()
    expect(page).to_have_url(path_is("/integrations/edit-me/edit"))
    area = page.get_by_label("Webhook JSON")
    saved = json.loads(area.input_value())
    assert saved["url"] == receiver.url + "/before" and saved["event"] == "tap"

    area.fill(json.dumps({**saved, "url": "not a url"}))
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Save").click()
    assert answer.value.status == 422
    expect(page.get_by_role("alert")).to_contain_text("url")
    with server.client() as api:
        assert api.get("/v1/integrations/edit-me").json()["url"] == receiver.url + "/before"

    edited = {**saved, "url": receiver.url + "/after", "headers": {"X-Key": ""}}
    text = json.dumps(edited, indent=2)
    area.fill(text)
    cursor = text.index('"X-Key": ""') + len('"X-Key": "')
    area.evaluate("(el, at) => { el.focus(); el.setSelectionRange(at, at); }", cursor)
    page.get_by_label("Secret", exact=True).select_option("API_KEY")
    page.get_by_role("button", name="Insert and declare").click()
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(path_is("/integrations/edit-me"))
    expect(page.locator("pre").first).to_contain_text("{{{API_KEY}}}")
    assert value not in page.content()

    with server.client() as api:
        publish(api, "tap", "once")
        got = poll(lambda: receiver.requests, timeout=10)
    assert [r.path for r in got] == ["/after"] and got[0].headers.get("X-Key") == value


def test_disable_stops_event_runs_and_enable_brings_them_back(make_server, open_page):
    server = make_server()
    server.start()
    with server.client() as api:
        deploy(
            api,
            name="switchable",
            source="def main(event):\n    return event.data\n",
            triggers=[{"type": "event", "event_name": "flip"}],
        )
    page = open_page(server)
    sign_in(page, server.token)
    page.goto("/logic/switchable")
    expect(fact(page, "Enabled")).to_have_text("yes")
    page.get_by_role("button", name="Disable").click()
    expect(page).to_have_url(path_is("/logic/switchable"))
    expect(fact(page, "Enabled")).to_have_text("no")
    with server.client() as api:
        assert api.get("/v1/logic/functions/switchable").json()["enabled"] is False
        publish(api, "flip", "while-off")  # no run: the function is disabled
        page.get_by_role("button", name="Enable").click()
        expect(fact(page, "Enabled")).to_have_text("yes")
        publish(api, "flip", "while-on")
        runs = poll(lambda: api.get("/v1/logic/functions/switchable/runs").json()["logic_runs"], timeout=10)
    assert [r["result"] for r in runs] == ["while-on"]  # the event published while off ran nothing
    page.goto("/logic")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="switchable"))
    expect(row.get_by_role("cell").nth(1)).to_have_text("yes")


def test_the_owner_switcher_shows_each_owners_own_things(make_server, open_page):
    """Sandbox and an org side by side: the switcher (a GET form: works without JavaScript and
    by keyboard) moves every page to the org; a secret created there is the org's, not the sandbox's."""
    server = make_server()
    created = server.cli("orgs", "create", "acme")
    assert created.returncode == 0, created.stderr
    server.start()
    with server.client() as api:
        create_secret(api, "SANDBOX_ONLY", "sandbox-Value-1")
    page = open_page(server)
    sign_in(page, server.token)
    expect(secret_row(page, "SANDBOX_ONLY")).to_have_count(1)

    page.get_by_label("Owner").select_option("acme")  # console.js submits on change
    expect(page).to_have_url(re.compile(r"/secrets\?org=acme$"))
    expect(page.get_by_label("Owner")).to_have_value("acme")
    expect(page.get_by_text("No secrets yet in acme")).to_be_visible()
    expect(page.get_by_role("link", name="Logic", exact=True)).to_have_attribute("href", "/logic?org=acme")
    page.get_by_role("link", name="Create the first one").click()
    expect(page).to_have_url(re.compile(r"/secrets/new\?org=acme$"))
    page.get_by_label("Name").fill("ORG_KEY")
    page.get_by_label("Value").fill("org-Value-2")
    page.get_by_role("button", name="Create secret").click()
    expect(page).to_have_url(re.compile(r"/secrets\?org=acme$"))
    expect(secret_row(page, "ORG_KEY")).to_have_count(1)
    expect(secret_row(page, "SANDBOX_ONLY")).to_have_count(0)
    screenshot(page, "owner-switcher")
    with server.client() as api:
        assert [s["name"] for s in api.get("/v1/orgs/acme/secrets").json()["secrets"]] == ["ORG_KEY"]
        assert [s["name"] for s in api.get("/v1/secrets").json()["secrets"]] == ["SANDBOX_ONLY"]

    # Back to the sandbox with the keyboard: Tab to the select, the arrow picks (and submits).
    tab_to(page, page.get_by_label("Owner"))
    page.keyboard.press("ArrowUp")
    expect(page).to_have_url(re.compile(r"/secrets\?org=$"))
    expect(page.get_by_label("Owner")).to_have_value("")
    expect(secret_row(page, "SANDBOX_ONLY")).to_have_count(1)
    # An org the user is not in: refused, never shown.
    page.goto("/secrets?org=nobodys")
    expect(page.get_by_role("alert")).to_be_visible()
    assert "ORG_KEY" not in page.content()


def test_environment_and_a_ledger_from_the_console_reach_a_run(make_server, open_page):
    """Set a variable and a ledger's data in the browser; a test run reads both (its ledger write is not saved)."""
    server = make_server()
    server.start()
    page = open_page(server)
    sign_in(page, server.token)
    page.get_by_role("link", name="Environment").click()
    expect(page).to_have_url(path_is("/environment"))
    page.get_by_label("Name").fill("GREETING")
    page.get_by_label("Value").fill("hello")
    page.get_by_role("button", name="Set variable").click()
    expect(page.get_by_role("row").filter(has_text="GREETING")).to_contain_text("hello")
    screenshot(page, "environment")

    page.get_by_role("link", name="Ledgers").click()
    page.get_by_label("Name").fill("counters")
    page.get_by_label("Description").fill("per room")
    page.get_by_role("button", name="Create ledger").click()
    expect(page).to_have_url(path_is("/ledgers/counters"))
    page.get_by_text("Advanced: edit the raw JSON").click()
    page.get_by_label("Data (one JSON object; replaces what is there)").fill('{"lab": 1}')
    page.get_by_role("button", name="Save data").click()
    expect(page.get_by_role("row").filter(has_text="lab")).to_contain_text("1")

    source = (
        "import logic\n\n\ndef main(env):\n"
        "    ledger = logic.ledger('counters')\n"
        "    ledger.set({'hall': len(env.GREETING)}, mode=logic.MERGE)\n"
        "    return env.GREETING\n"
    )
    with server.client() as api:
        run = api.post("/v1/logic/execute", json={"source": source}).json()
        assert run["status"] == "success" and run["result"] == "hello", run
        deploy(api, name="counter", source=source)
    # A test run saves no ledger writes; the data is what the browser saved.
    page.reload()
    expect(page.get_by_role("row").filter(has_text="lab")).to_contain_text("1")
    expect(page.get_by_role("row").filter(has_text="hall")).to_have_count(0)
    screenshot(page, "ledger")


# 7. security --------------------------------------------------------------------------

LEAKER = """import logic


def main(event, secrets):
    value = secrets.API_KEY
    print("key is", value)
    logic.log.error(value[::-1][::-1], value.upper().lower())
    logic.publish("leak-out", value)
    return {"value": value, "joined": "x" + value + "x"}
"""


def test_no_secret_value_in_any_response_and_security_headers(make_server, open_page, receiver):
    """7a: neither value in any body the browser received; 7b/7f: the security headers on every console page."""
    first, second = "first-Leak-7f3b9c1d22", "second-Leak-4a8e6d0f99"
    server = make_server()
    server.start()
    page = open_page(server)
    seen: list[tuple[str, int, dict[str, str], bytes]] = []
    unread: list[str] = []

    streams: list[str] = []

    def record(response) -> None:
        body = b""
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            streams.append(response.url)  # never ends while its page is open: read below
        elif not 300 <= response.status < 400:
            try:
                body = response.body()
            except PlaywrightError:  # gone with its page: a static file or an htmx poll cut short by a navigation
                unread.append(response.url)
        seen.append((response.url, response.status, response.headers, body))

    page.on("response", record)
    sign_in(page, server.token)

    # The values go in through the browser only: create, a refused create, edit.
    page.goto("/secrets/new")
    page.get_by_label("Name").fill("API_KEY")
    page.get_by_label("Value").fill(first)
    page.get_by_role("button", name="Create secret").click()
    expect(page).to_have_url(path_is("/secrets"))
    page.goto("/secrets/new")
    page.get_by_label("Name").fill("API_KEY")  # exists: 409 rendered as the form again
    page.get_by_label("Value").fill(first)
    page.get_by_role("button", name="Create secret").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.goto("/secrets/API_KEY/edit")
    page.get_by_label("New value").fill(second)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(path_is("/secrets"))

    # A function that tries hard to show it: run on the define page, then deployed and triggered.
    page.goto("/logic/define")
    page.get_by_label("Code (Python)").fill(LEAKER)
    manifest = {"name": "leaker", "secrets": ["API_KEY"], "triggers": [{"type": "event", "event_name": "leak"}]}
    page.get_by_label("Manifest").fill(json.dumps(manifest))
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".record .logs")).to_contain_text(f"key is {SENSITIVE}")
    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(path_is("/logic/leaker"))
    with server.client() as api:
        hook = {"name": "hook", "event": "leak", "url": receiver.url + "/h", "secrets": ["API_KEY"]}
        hook["headers"] = {"X-Key": "{{{API_KEY}}}"}
        assert api.post("/v1/integrations", json=hook).status_code == 201
        publish(api, "leak", "now")
        poll(lambda: receiver.requests, timeout=10)
        assert receiver.requests[0].headers.get("X-Key") == second
        poll(lambda: api.get("/v1/integrations/hook/logs").json()["logs"], timeout=10)
        poll(lambda: api.get("/v1/logic/functions/leaker/runs").json()["logic_runs"], timeout=10)

    for path in [
        "/secrets",
        "/secrets/new",
        "/secrets/API_KEY",
        "/secrets/API_KEY/edit",
        "/secrets/NOPE",
        "/logic",
        "/logic/define",
        "/logic/leaker",
        "/logic/leaker/runs",  # the fragment the function page fetches for each new run (htmx)
        "/integrations",
        "/integrations/hook",
        "/integrations/new",
        "/integrations/hook/edit",
        "/audit",
        "/audit?secret=API_KEY",
        "/tokens",
    ]:
        # Each page's body is read here, before the next navigation can discard it (the
        # response listener may lose that race on a loaded machine).
        response = page.goto(path)
        assert response is not None
        seen.append((response.url, response.status, response.headers, response.body()))
    # /docs fetches openapi.json itself: wait for that answer (the listener may still be reading it).
    with page.expect_response(lambda r: urlparse(r.url).path == "/openapi.json") as spec:
        page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("logic-runtime")
    seen.append((spec.value.url, spec.value.status, spec.value.headers, spec.value.body()))

    # 7a: nothing the browser received carries either value.
    paths = {urlparse(url).path for url, *_ in seen}
    assert {"/secrets", "/logic/leaker/runs", "/integrations/hook", "/openapi.json", "/static/console.js"} <= paths
    # A body the listener lost to a navigation (a static file, an htmx poll, Swagger's
    # openapi.json) is fetched again with the same session, so it is checked all the same.
    for url in unread:
        again = page.request.get(url)
        seen.append((url, again.status, again.headers, again.body()))
    # The function page's live run stream, read with the browser's own session while a run
    # that prints, returns and publishes the value happens.
    assert any(urlparse(url).path == "/logic/leaker/runs/stream" for url in streams)
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}
    with (
        httpx.Client(base_url=server.url, cookies=cookie, timeout=httpx.Timeout(10, read=20)) as browser_session,
        browser_session.stream("GET", "/logic/leaker/runs/stream") as live,
    ):
        assert live.headers["content-type"].startswith("text/event-stream")
        chunks = live.iter_bytes()
        opened = next(chunks)
        with server.client() as api:
            publish(api, "leak", "again")
        body = opened
        while b"event: run" not in body:
            body += next(chunks)
    seen.append((server.url + "/logic/leaker/runs/stream", 200, dict(live.headers), body))
    bodies = [(url, body) for url, status, _, body in seen if body]
    assert len(bodies) > 30
    for url, body in bodies:
        for value in (first, second):
            assert value.encode() not in body, f"{url} carries a secret value"
    assert any(SENSITIVE.encode() in body for _, body in bodies)
    kinds = {headers.get("content-type", "").split(";")[0] for _, _, headers, body in seen if body}
    assert {"text/html", "text/css", "application/json"} <= kinds
    assert kinds & {"text/javascript", "application/javascript"}

    # 7b and 7f: every console page (HTML, redirects too) carries the security headers.
    pages = [(url, status, headers) for url, status, headers, _ in seen if "/v1/" not in url]
    html = [p for p in pages if p[2].get("content-type", "").startswith("text/html")]
    assert len(html) > 20
    for url, _, headers in html + [p for p in pages if 300 <= p[1] < 400]:
        csp = headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, url
        assert "script-src 'self'" in csp and "unsafe-eval" not in csp, url
        assert headers.get("x-content-type-options") == "nosniff", url
        assert headers.get("referrer-policy") == "no-referrer", url
        assert headers.get("x-frame-options") == "DENY", url
    for url, _, headers in pages:  # static files and openapi.json too
        assert headers.get("x-content-type-options") == "nosniff", url
    assert all(h.get("cache-control") == "no-store" for u, _, h in html if "/docs" not in u)

    # 7f for real: a page of another origin cannot frame the console.
    page.goto("about:blank")
    page.set_content(f'<iframe src="{server.url}/sign-in"></iframe>')  # waits for the frame's load
    assert [frame.url for frame in page.frames] == ["about:blank", "chrome-error://chromewebdata/"]

    server.stop()
    assert first not in server.output() and second not in server.output()


XSS_DESCRIPTION = '<img src=x onerror="window.__pwned=1">'
XSS_SOURCE = """import logic


def main(event):
    logic.log.info("<script>window.__pwned=1</script>")
    print('<img src=x onerror="window.__pwned=1">')
    logic.publish("xss-out", '<svg onload="window.__pwned=1"></svg>')
    return {"html": "<script>window.__pwned=1</script>", "data": event.data}
"""
XSS_DATA = '<b onmouseover="window.__pwned=1">data</b><iframe src="javascript:window.__pwned=1"></iframe>'


def test_markup_from_functions_and_events_is_shown_as_text(make_server, open_page):
    """7c: a description, log lines, published events and event data with markup: text only."""
    server = make_server()
    server.start()
    page = open_page(server)
    sign_in(page, server.token)

    page.goto("/logic/define")
    page.get_by_label("Code (Python)").fill(XSS_SOURCE)
    manifest = {"name": "xss", "description": XSS_DESCRIPTION, "triggers": [{"type": "event", "event_name": "xss-in"}]}
    page.get_by_label("Manifest").fill(json.dumps(manifest))
    page.get_by_label("Event name").fill("xss-in")
    page.get_by_label("Event data").fill(XSS_DATA)
    page.get_by_role("button", name="Run").click()
    record = page.locator(".record")
    expect(record.locator(".logs")).to_contain_text("[info] <script>window.__pwned=1</script>")
    expect(record.locator(".logs")).to_contain_text(f"[info] {XSS_DESCRIPTION}")
    expect(record).to_contain_text('xss-out <svg onload="window.__pwned=1"></svg>')
    expect(record.locator("pre")).to_contain_text('"html": "<script>window.__pwned=1</script>"')
    assert_only_static_scripts(page)

    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(path_is("/logic/xss"))
    expect(page.locator("p.description")).to_have_text(XSS_DESCRIPTION)
    assert_only_static_scripts(page)
    with server.client() as api:
        publish(api, "xss-in", XSS_DATA)
        poll(lambda: api.get("/v1/logic/functions/xss/runs").json()["logic_runs"], timeout=10)
    page.reload()  # (test 5 covers the htmx swap of the same _runs.html)
    runs = page.locator("#runs details.run")
    expect(runs).to_have_count(1)
    runs.first.locator("summary").click()
    expect(runs.first.locator(".logs")).to_contain_text("<script>window.__pwned=1</script>")
    expect(runs.first.locator("pre")).to_contain_text("<b onmouseover=")
    expect(page.locator("main pre").last).to_contain_text(json.dumps(XSS_DESCRIPTION))  # the manifest
    assert_only_static_scripts(page)


def test_cross_site_posts_are_refused(make_server, open_page):
    """7d: with the cookie of a real sign-in, a POST from another origin or without the
    session's CSRF token is 403 and creates nothing; the same POST done right works."""
    server = make_server()
    server.start()
    page = open_page(server)
    sign_in(page, server.token)
    page.goto("/secrets/new")
    csrf = page.locator("input[name=csrf]").first.input_value()
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "logic_session")

    def post(name: str, headers: dict[str, str], **form: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, cookies={"logic_session": cookie}, timeout=10) as web:
            return web.post("/secrets/new", data={"name": name, "value": "forged-Value-1", **form}, headers=headers)

    ours = {"Origin": server.url}
    assert post("EVIL_ORIGIN", {"Origin": "http://evil.example"}, csrf=csrf).status_code == 403
    assert post("EVIL_FETCH_SITE", {"Sec-Fetch-Site": "cross-site"}, csrf=csrf).status_code == 403
    assert post("NO_CSRF", ours).status_code == 403
    assert post("WRONG_CSRF", ours, csrf=csrf[:-2] + "xx").status_code == 403
    assert post("EMPTY_CSRF", ours, csrf="").status_code == 403
    refused = post("NO_CSRF_AGAIN", ours)
    assert "forged-Value-1" not in refused.text
    with server.client() as api:
        assert api.get("/v1/secrets").json()["secrets"] == []
    # The control: the very same cookie and token from our origin are accepted.
    done = post("RIGHT", ours, csrf=csrf)
    assert done.status_code == 303 and done.headers["location"] == "/secrets"
    with server.client() as api:
        assert [s["name"] for s in api.get("/v1/secrets").json()["secrets"]] == ["RIGHT"]


def test_a_revoked_token_ends_its_session(make_server, open_page):
    """7e: a token created on /tokens (shown once), signed in with, revoked from its own
    row: the next page load is the sign-in page; the other token keeps working."""
    server = make_server()
    server.start()
    page = open_page(server)
    sign_in(page, server.token)
    page.goto("/tokens")
    page.get_by_label("Label").fill("browser")
    page.get_by_role("button", name="Create token").click()
    notice = page.get_by_role("status")
    expect(notice).to_contain_text("it is not shown again")
    token = notice.locator("code.token").inner_text().strip()
    assert token and token != server.token
    screenshot(page, "tokens", mask=[notice.locator("code.token")])
    rows = page.locator("tbody tr").count()
    # A reload posts the form again: it is refused, nothing is created, the token is not shown.
    with page.expect_response(lambda r: r.request.method == "POST") as again:
        page.reload()
    assert again.value.status == 409
    expect(page.get_by_role("alert")).to_contain_text("no token was created")
    assert token not in page.content()
    expect(page.locator("tbody tr")).to_have_count(rows)
    page.goto("/tokens")  # shown once: not on the next load
    expect(page.locator("code.token")).to_have_count(0)
    assert token not in page.content()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(path_is("/sign-in"))
    sign_in(page, token)
    page.goto("/tokens")
    mine = page.get_by_role("row").filter(has_text="(this session)")
    expect(mine).to_have_count(1)
    expect(mine).to_contain_text("browser")
    mine.get_by_role("link", name=re.compile(r"^Revoke token \d+$")).click()
    expect(page.get_by_text("this console session ends")).to_be_visible()
    page.get_by_role("button", name="Revoke token").click()
    expect(page).to_have_url(path_is("/sign-in"))
    page.goto("/secrets")
    expect(page).to_have_url(path_is("/sign-in"))

    with server.client(token) as api:
        assert api.get("/v1/secrets").status_code == 401
    with server.client() as api:
        assert api.get("/v1/secrets").status_code == 200


# 8. /docs works offline ----------------------------------------------------------------


def test_docs_render_swagger_ui_from_local_files(make_server, open_page):
    server = make_server()
    server.start()
    page = open_page(server)  # no form here
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/docs")
    expect(page.locator(".swagger-ui")).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("logic-runtime")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.get_by_text("/v1/secrets").first).to_be_visible()
    screenshot(page, "docs", full_page=False)
    assert f"{server.url}/openapi.json" in requested
    remote = [url for url in requested if urlparse(url).hostname != "127.0.0.1" and not url.startswith("data:")]
    assert remote == []
