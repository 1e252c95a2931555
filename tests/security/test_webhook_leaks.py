"""Security promise 1 for webhooks: the receiver gets the real secret; nothing we keep or publish does.

Each test sends to a real HTTP server on 127.0.0.1, takes what arrived on
the wire (raw path, raw headers, raw body), and checks that the secret's
part of it appears nowhere in the log record, the published response or the
FireResult: only [[SENSITIVE]] does.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from urllib.parse import parse_qs, quote, quote_plus, unquote

import pytest

from store import MASK, Settings
from store.errors import DeployError, InvalidInput
from tests.conftest import BACKENDS
from tests.receiver import Receiver
from tests.support import OwnerIntegrations

OWNER = "user:alice"
# Characters that httpx's URL quoting treats differently from urllib's (: @ ! $ ' ( ) * , ; = ~ | ` { }),
# non-ASCII, a space; no '#', '?', '&', '+' or '%' (those would change the URL's meaning).
URL_SECRET = "Zq9 é:@!$'()*,;=~|`{}x-url-secret"
# JSON and base64 trouble: quotes, backslash, slash, plus, a tab, non-ASCII.
BODY_SECRET = 'Pw:"\\é/+= \tbody-secret-value'


@pytest.fixture
def echo():
    """A receiver that answers with what it got (path, headers, body): a response that quotes the secret."""

    def what_arrived(got) -> bytes:
        return json.dumps({"path": got.path, "headers": got.headers, "body": got.text}).encode()

    with Receiver(body=what_arrived) as r:
        yield r


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The integration logs this module reads back are stored: on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"webhook_timeout_s": 2, "webhook_retries": 1})


@pytest.fixture
def service(store, settings):
    store.secrets.create(OWNER, "URL_SECRET", URL_SECRET)
    store.secrets.create(OWNER, "BODY_SECRET", BODY_SECRET)
    svc = OwnerIntegrations(store, settings, backoff_s=0.01)
    yield svc
    svc.close()


EVENT = {"id": "ev-1", "name": "sensor/x", "data": '{"t": 1}', "published_at": "2024-05-01T00:00:00Z", "source": "dev"}


def fire(service, **spec):
    # noDefaults: each test checks the exact request its templates make (the defaults hold no secret).
    data = {"name": "leak", "event": "sensor/", "secrets": ["URL_SECRET", "BODY_SECRET"], "noDefaults": True, **spec}
    try:
        record = service.get(OWNER, "leak")
        record = service.update(OWNER, record.id, data)
    except Exception:
        record = service.create(OWNER, data)
    return service.fire(record, dict(EVENT))


def kept(result) -> str:
    """Everything of a FireResult that is stored, published or printed."""
    return "\n".join(
        [
            json.dumps(result.log),
            json.dumps(result.log, ensure_ascii=False),
            repr(result),
            json.dumps(result.response_event),
            str(result.response_event),
        ]
    )


def known_forms(secret: str) -> set[str]:
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote_plus(secret, safe="/"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
        secret.encode().hex(),
    }
    return forms


def assert_absent(pieces, text: str):
    for piece in pieces:
        assert piece and piece not in text, f"leaked form {piece!r}"


# -- what the receiver gets, and what we keep ------------------------------------------


def test_secret_in_url_path_and_query_template(service, receiver):
    result = fire(service, url=receiver.url + "/p/AA{{{URL_SECRET}}}BB/x?key=CC{{{URL_SECRET}}}DD&z=1", method="GET")
    assert result.ok
    [got] = receiver.requests
    path_form, query_form = re.fullmatch(r"/p/AA(.*)BB/x\?key=CC(.*)DD&z=1", got.path).groups()
    assert unquote(path_form) == URL_SECRET and unquote(query_form) == URL_SECRET  # the real secret arrived
    assert path_form != quote(URL_SECRET, safe="")  # httpx's own quoting: the redactor must know it
    text = kept(result)
    assert_absent({path_form, query_form} | known_forms(URL_SECRET), text)
    assert result.log["request"]["url"] == f"{receiver.url}/p/AA{MASK}BB/x?key=CC{MASK}DD&z=1"


def test_secret_in_query_dict_is_form_encoded_on_the_wire(service, receiver):
    result = fire(service, url=receiver.url + "/q?fixed=1", query={"key": "{{{URL_SECRET}}}"}, method="GET")
    assert result.ok
    [got] = receiver.requests
    assert parse_qs(got.path.split("?", 1)[1])["key"] == [URL_SECRET]
    wire = re.search(r"key=([^&]*)", got.path).group(1)
    assert_absent({wire} | known_forms(URL_SECRET), kept(result))
    assert f"key={MASK}" in result.log["request"]["url"]


@pytest.mark.parametrize("username", ["u", "us", "usr", "service-user"])
def test_basic_auth_password_is_masked_inside_base64_at_every_offset(service, receiver, username):
    result = fire(service, url=receiver.url, auth={"username": username, "password": "{{{BODY_SECRET}}}"}, method="GET")
    assert result.ok
    [got] = receiver.requests
    scheme, token = got.headers["Authorization"].split(" ")
    assert scheme == "Basic" and base64.b64decode(token).decode() == f"{username}:{BODY_SECRET}"
    # The characters that depend on the secret alone: after the prefix's, before the padding's.
    core = token[-(-4 * (len(username) + 1) // 3) : 4 * len(f"{username}:{BODY_SECRET}".encode()) // 3]
    assert len(core) > 20
    text = kept(result)
    assert_absent({token, core} | known_forms(BODY_SECRET), text)
    logged = result.log["request"]["headers"]["authorization"]
    assert logged.startswith("Basic ") and MASK in logged


def test_secret_in_headers_json_form_and_body(service, receiver):
    for spec in (
        {"json": {"k": "{{{BODY_SECRET}}}", "{{{URL_SECRET}}}": ["x{{{BODY_SECRET}}}"]}},
        {"form": {"k": "{{{BODY_SECRET}}}", "u": "{{{URL_SECRET}}}"}},
        {"body": "raw {{{BODY_SECRET}}} and {{{URL_SECRET}}}"},
    ):
        result = fire(service, url=receiver.url, headers={"X-Key": "{{{URL_SECRET}}}"}, **spec)
        assert result.ok
        got = receiver.requests[-1]
        assert got.headers["X-Key"] == URL_SECRET.encode().decode("latin-1")  # http.server reads latin-1
        body = got.text
        if "json" in spec:
            assert json.loads(body) == {"k": BODY_SECRET, URL_SECRET: ["x" + BODY_SECRET]}
            wire = {body[body.index('"k":"') + 5 : body.index('","')]}
        elif "form" in spec:
            assert parse_qs(body) == {"k": [BODY_SECRET], "u": [URL_SECRET]}
            wire = {v for part in body.split("&") for v in [part.split("=", 1)[1]]}
        else:
            assert body == f"raw {BODY_SECRET} and {URL_SECRET}"
            wire = set()
        text = kept(result)
        assert_absent(wire | known_forms(BODY_SECRET) | known_forms(URL_SECRET), text)
        assert MASK in result.log["request"]["body"]
        assert result.log["request"]["headers"]["x-key"] == MASK


def test_an_echo_server_cannot_put_the_secret_into_logs_or_events(service, echo):
    result = fire(
        service,
        url=echo.url + "/e?k={{{URL_SECRET}}}",
        headers={"Authorization": "Bearer {{{BODY_SECRET}}}"},
        json={"k": "{{{BODY_SECRET}}}"},
    )
    assert result.ok
    name, data = result.response_event
    assert name == "hook-response/sensor/x"
    assert MASK in data and MASK in result.log["response"]["body"]
    echoed = json.loads(echo.requests[0].text)
    assert echoed == {"k": BODY_SECRET}
    assert_absent(known_forms(BODY_SECRET) | known_forms(URL_SECRET), kept(result))


def test_errors_do_not_quote_the_secret(service):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = fire(
        service, url=f"http://127.0.0.1:{port}/x?k={{{{{{URL_SECRET}}}}}}", headers={"X": "{{{BODY_SECRET}}}"}
    )
    assert not result.ok and result.response_event[0] == "hook-error/sensor/x"
    assert_absent(known_forms(BODY_SECRET) | known_forms(URL_SECRET), kept(result))
    assert result.log["request"]["url"].endswith(f"k={MASK}")


def test_stored_records_and_logs_never_hold_a_value(service, store, receiver):
    result = fire(
        service, url=receiver.url + "?k={{{URL_SECRET}}}", auth={"username": "u", "password": "{{{BODY_SECRET}}}"}
    )
    record = service.get(OWNER, "leak")
    store_repo = service.integrations
    with store.transaction():
        store_repo.add_log(record.id, "ev-1", result.log)
    text = "\n".join(
        [repr(record), json.dumps(record.to_json()), json.dumps(store_repo.logs(record.id)), repr(service.list(OWNER))]
    )
    assert_absent(known_forms(BODY_SECRET) | known_forms(URL_SECRET), text)
    rows = store.db.all("SELECT * FROM integrations") + store.db.all("SELECT * FROM integration_logs")
    assert_absent(known_forms(BODY_SECRET) | known_forms(URL_SECRET), repr([tuple(r) for r in rows]))


# -- what a publisher or an author cannot do ----------------------------------------------


def test_a_template_in_event_data_is_sent_literally(service, receiver, store):
    record = service.create(
        OWNER,
        {
            "name": "inj",
            "event": "sensor/",
            "url": receiver.url,
            "headers": {"X-Key": "{{{BODY_SECRET}}}"},
            "body": "{{{EVENT_DATA}}}|{{{x}}}|{{{EVENT_SOURCE}}}",
            "secrets": ["BODY_SECRET"],
        },
    )
    payload = "{{{BODY_SECRET}}} {{> x}} {{#BODY_SECRET}}{{/BODY_SECRET}}"
    ev = {**EVENT, "data": json.dumps({"x": payload}), "source": "{{{BODY_SECRET}}}"}
    assert service.fire(record, ev).ok
    body = receiver.requests[-1].text
    assert body == f"{ev['data']}|{payload}|{{{{{{BODY_SECRET}}}}}}"
    assert_absent(known_forms(BODY_SECRET), body)


def test_event_data_cannot_choose_where_secrets_go(service):
    for url in ("http://{{{EVENT_DATA}}}/x", "http://{{{host}}}:80/", "http://a.{{{EVENT_SOURCE}}}/"):
        with pytest.raises(DeployError, match="scheme and host may not use event variables"):
            service.create(
                OWNER,
                {
                    "name": "exfil",
                    "event": "e",
                    "url": url,
                    "secrets": ["BODY_SECRET"],
                    "headers": {"X": "{{{BODY_SECRET}}}"},
                },
            )


def test_only_declared_secrets_of_the_owner_are_reachable(service, store, receiver):
    with pytest.raises(DeployError, match=r"\{\{\{BODY_SECRET\}\}\} is neither a declared secret"):
        service.create(OWNER, {"name": "sneaky", "event": "e", "url": receiver.url, "body": "{{{BODY_SECRET}}}"})
    store.secrets.create("user:bob", "BOBS_KEY", "bobs-secret-value")
    with pytest.raises(InvalidInput, match="BOBS_KEY does not exist for user:alice"):
        service.create(
            OWNER,
            {"name": "cross", "event": "e", "url": receiver.url, "body": "{{{BOBS_KEY}}}", "secrets": ["BOBS_KEY"]},
        )
    # A config edited in the database to use an undeclared secret is refused at fire time too.
    record = service.create(OWNER, {"name": "ok", "event": "e", "url": receiver.url})
    with store.db.transaction() as conn:
        conn.execute(
            "UPDATE integrations SET config = ? WHERE id = ?",
            (json.dumps({"url": receiver.url, "body": "{{{BODY_SECRET}}}", "secrets": []}), record.id),
        )
    result = service.fire(service.get(OWNER, "ok"), dict(EVENT))
    assert (result.ok, result.accesses, receiver.requests) == (False, [], [])


def test_partials_cannot_read_server_files(service, receiver, tmp_path, monkeypatch):
    (tmp_path / "x.mustache").write_text("SERVER-FILE-CONTENT")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeployError, match="partials"):
        service.create(OWNER, {"name": "p", "event": "e", "url": receiver.url, "body": "a{{> x}}b"})
    # Nor through event data, which is never parsed as a template.
    record = service.create(OWNER, {"name": "p", "event": "e", "url": receiver.url, "body": "{{{EVENT_DATA}}}"})
    assert service.fire(record, {**EVENT, "data": "{{> x}}"}).ok
    assert receiver.requests[-1].text == "{{> x}}"


def test_html_escaped_secret_from_double_braces_is_masked(service, store, receiver):
    secret = 'a&b<c>"d-html-secret'
    store.secrets.create(OWNER, "HTML_SECRET", secret)
    result = fire(
        service,
        url=receiver.url + "/h/{{HTML_SECRET}}",
        headers={"X-H": "{{HTML_SECRET}}"},
        json={"k": "{{HTML_SECRET}}"},
        secrets=["HTML_SECRET"],
    )
    assert result.ok
    got = receiver.requests[-1]
    escaped = "a&amp;b&lt;c&gt;&quot;d-html-secret"
    assert got.headers["X-H"] == escaped and json.loads(got.text) == {"k": escaped}
    wire = got.path.removeprefix("/h/")
    assert_absent({wire} | known_forms(escaped) | known_forms(secret), kept(result))


@pytest.mark.parametrize("secret", ["tok  en-9f8e7d6c5b4a\x0brest-of-it", "long-" + "q" * 400 + "\x0bz"])
def test_an_error_quoting_the_secret_is_masked_before_it_is_tidied_or_cut(store, settings, receiver, secret):
    # h11 refuses the vertical tab in a header and quotes the whole header value in its error;
    # tidying whitespace or cutting at 300 characters first would hide it from the redactor.
    store.secrets.create(OWNER, "ODD", secret)
    svc = OwnerIntegrations(store, settings, backoff_s=0.01)
    try:
        record = svc.create(
            OWNER,
            {
                "name": "odd",
                "event": "e",
                "secrets": ["ODD"],
                "url": receiver.url + "/x",
                "headers": {"X": "{{{ODD}}}"},
            },
        )
        result = svc.fire(record, dict(EVENT, name="e"))
    finally:
        svc.close()
    assert not result.ok and MASK in result.log["error"]
    for piece in (secret, secret[:20], " ".join(secret.split())[:20], secret[5:60]):
        assert piece not in kept(result)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/x",
        "http://[::1]:9/x",
        "http://192.168.0.10/x",
    ],
)
def test_webhooks_cannot_reach_the_servers_own_network_by_default(store, monkeypatch, receiver, url):
    # SSRF: a tenant's webhook must not read loopback services, cloud metadata or the LAN.
    monkeypatch.setenv("LOGIC_WEBHOOK_ALLOW_PRIVATE", "0")
    settings = Settings()
    assert settings.webhook_allow_private is False
    repo = store.integrations
    svc = OwnerIntegrations(store, settings, backoff_s=0.01)
    try:
        record = svc.create(OWNER, {"name": "inward", "event": "e", "url": url})
        result = svc.fire(record, dict(EVENT, name="e"))
        assert not result.ok and "not a public address" in result.log["error"]
        assert result.response_event[0] == "hook-error/e"
        # The same check with the operator's consent lets a loopback receiver through.
        monkeypatch.setenv("LOGIC_WEBHOOK_ALLOW_PRIVATE", "1")
        allowed = OwnerIntegrations(store, Settings(), backoff_s=0.01)
        try:
            svc.update(OWNER, record.id, {"name": "inward", "event": "e", "url": receiver.url + "/ok"})
            assert allowed.fire(repo.get_by_id(record.id), dict(EVENT, name="e")).ok
        finally:
            allowed.close()
    finally:
        svc.close()
    assert receiver.requests  # only the allowed call arrived
