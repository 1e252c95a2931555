"""Webhook templates, attacked: full Mustache must not reach a secret, a file, or another host.

The attacker is whoever publishes events (they choose the event data, and so
the JSON names a template reads, the lists its sections loop over) and, for
the budget, whoever writes the template. Each test names the promise it tries
to break (DESIGN "Integrations (webhooks)": secrets are plain variables only;
event data is never rendered twice; a secret-bearing request keeps its host;
the SSRF guard; logs and published events hold [[SENSITIVE]]).
"""

from __future__ import annotations

import json
import socket

import pytest

from runtime.integrations.templates import Budget, Namespace, compile_template, render
from store import MASK, Settings
from store.errors import DeployError
from tests.support import OwnerIntegrations

OWNER = "user:alice"
SECRET = "tpl-Secret-7f3a9c21e5"
EVENT = {"id": "ev-1", "name": "sensor/x", "data": "{}", "published_at": "2024-05-01T00:00:00Z", "source": "api"}


@pytest.fixture
def settings(logic_home):
    return Settings(home=logic_home, webhook_timeout_s=2, webhook_retries=0)


@pytest.fixture
def service(store, settings):
    store.secrets.create(OWNER, "API_KEY", SECRET)
    svc = OwnerIntegrations(store, settings, backoff_s=0.01)
    yield svc
    svc.close()


def hook(receiver, **fields):
    return {"name": "attacked", "event": "sensor/", "url": receiver.url + "/in", "secrets": ["API_KEY"], **fields}


def fire(service, receiver, data, **fields):
    try:
        record = service.update(OWNER, "attacked", hook(receiver, **fields))
    except Exception:
        record = service.create(OWNER, hook(receiver, **fields))
    return service.fire(record, {**EVENT, "data": json.dumps(data) if not isinstance(data, str) else data})


def refused_and_nothing_stored(service, db_rows, spec) -> str:
    service.list(OWNER)
    before = db_rows()
    with pytest.raises(DeployError) as info:
        service.create(OWNER, spec)
    assert db_rows() == before
    return info.value.message


def everything_kept(result) -> str:
    return json.dumps([result.log, result.events, repr(result)], ensure_ascii=False)


# -- a secret is a plain variable: never a section, never iterable, never a path ------------------


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{#API_KEY}}{{.}}{{/API_KEY}}", "{{#API_KEY}}: API_KEY is a secret: a plain variable only, never a section"),
        ("{{^API_KEY}}empty{{/API_KEY}}", "{{^API_KEY}}: API_KEY is a secret: a plain variable only, never a section"),
        ("{{#list}}{{#API_KEY}}x{{/API_KEY}}{{/list}}", "never a section"),
        ("{{API_KEY.0}}", "{{API_KEY.0}}: API_KEY is a secret: it has no fields or items"),
        ("{{{API_KEY.length}}}", "API_KEY is a secret: it has no fields or items"),
        ("{{#API_KEY.0}}x{{/API_KEY.0}}", "API_KEY is a secret"),
        ("{{x.API_KEY}}", "{{x.API_KEY}}: API_KEY is a declared secret, so it cannot name a field of the data"),
        ("{{#c}}{{c.0.API_KEY}}{{/c}}", "cannot name a field of the data"),
        ("{{> API_KEY}}", "partials ({{> API_KEY}}) are not supported"),
    ],
)
def test_a_secret_used_as_anything_but_a_plain_variable_is_refused_at_create(
    service, receiver, db_rows, template, message
):
    for field in ({"body": template}, {"headers": {"X": template}}, {"json": {"k": [template]}}):
        assert message in refused_and_nothing_stored(service, db_rows, hook(receiver, **field))


def test_a_tampered_template_still_cannot_iterate_or_walk_a_secret():
    """Past the create-time check (a row edited in the database), the renderer itself refuses."""
    ns = Namespace(data={"x": {"API_KEY": "event-value"}, "API_KEY": "event-top"}, secrets={"API_KEY": SECRET})
    for template in (
        "{{#API_KEY}}[{{.}}]{{/API_KEY}}",
        "{{API_KEY.0}}{{API_KEY.1}}{{{API_KEY.length}}}",
        "{{x.API_KEY}}",
        "{{#x}}{{#API_KEY}}{{.}}{{/API_KEY}}{{/x}}",
    ):
        assert render(template, ns, Budget(10_000)) == "", template
    assert render("{{^API_KEY}}shown either way{{/API_KEY}}", ns, Budget(10_000)) == "shown either way"


def test_a_tampered_stored_config_is_refused_at_fire_time(service, receiver, store):
    record = service.create(OWNER, hook(receiver, body="{{{API_KEY}}}"))
    with store.db.transaction() as conn:
        config = {"url": receiver.url, "secrets": ["API_KEY"], "body": "{{#API_KEY}}{{.}}{{/API_KEY}}"}
        conn.execute("UPDATE integrations SET config = ? WHERE id = ?", (json.dumps(config), record.id))
    result = service.fire(service.get(OWNER, record.id), dict(EVENT))
    assert (result.ok, result.accesses, receiver.requests) == (False, [], [])


def test_event_data_named_like_the_secret_never_stands_in_for_it(service, receiver):
    """The secret wins: the event's API_KEY is never sent as the secret, nor the secret as the event's."""
    data = {"API_KEY": "attacker-value", "x": {"API_KEY": "attacker-nested"}, "list": [{"API_KEY": "attacker-item"}]}
    result = fire(
        service,
        receiver,
        data,
        body="{{{API_KEY}}}|{{#x}}{{{API_KEY}}}{{/x}}|{{#list}}{{{API_KEY}}}{{/list}}|{{{PARTICLE_EVENT_VALUE}}}",
    )
    assert result.ok
    sent = receiver.requests[-1].text.split("|", 3)
    assert sent == [SECRET, SECRET, SECRET, json.dumps(data)]  # the event's values only where it is the event
    assert SECRET not in everything_kept(result)


def test_an_undeclared_all_caps_name_cannot_be_filled_by_the_publisher(service, receiver, db_rows):
    """A typo'd secret (API_KY) must not become a name the event data answers."""
    message = refused_and_nothing_stored(service, db_rows, hook(receiver, headers={"Authorization": "{{{API_KY}}}"}))
    assert "{{{API_KY}}} is neither a declared secret nor an event variable" in message


# -- event data is written once, never rendered ----------------------------------------------------------


ATTACKS = [
    "{{{API_KEY}}}",
    "{{API_KEY}}",
    "{{#x}}{{{API_KEY}}}{{/x}}",
    "{{> API_KEY}}",
    "{{=<% %>=}}<%& API_KEY %>",
    "{{{PARTICLE_EVENT_VALUE}}}",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_event_data_that_is_a_template_goes_out_literally(service, receiver, attack):
    fields = {
        "url": receiver.url + "/in/{{{field}}}",
        "headers": {"X-Field": "{{{field}}}", "X-Key": "{{{API_KEY}}}"},
        "json": {"whole": "{{{PARTICLE_EVENT_VALUE}}}", "field": "{{{field}}}", "loop": "{{#list}}{{{.}}}{{/list}}"},
    }
    result = fire(service, receiver, {"field": attack, "list": [attack, attack]}, **fields)
    assert result.ok
    got = receiver.requests[-1]
    body = json.loads(got.text)
    assert body["field"] == attack and body["loop"] == attack * 2
    assert json.loads(body["whole"]) == {"field": attack, "list": [attack, attack]}
    assert got.headers["X-Field"] == attack
    assert SECRET not in got.text and SECRET not in got.path and got.headers["X-Key"] == SECRET
    raw = fire(service, receiver, attack, body="{{{PARTICLE_EVENT_VALUE}}}|{{{EVENT_DATA}}}")
    assert raw.ok and receiver.requests[-1].text == f"{attack}|{attack}"


def test_a_response_that_is_a_template_is_published_literally(service, receiver):
    receiver.body = json.dumps({"echo": "{{{API_KEY}}}", "list": ["{{API_KEY}}"]}).encode()
    result = fire(service, receiver, {}, responseTemplate="{{{echo}}}|{{#list}}{{{.}}}{{/list}}")
    assert result.events[-1] == ("hook-response/sensor/x", "{{{API_KEY}}}|{{API_KEY}}")


def test_partials_and_set_delimiters_are_refused_and_read_no_file(service, receiver, db_rows, tmp_path, monkeypatch):
    (tmp_path / "x.mustache").write_text("SERVER-FILE")
    (tmp_path / "x").write_text("SERVER-FILE")
    monkeypatch.chdir(tmp_path)
    for template in ("{{> x}}", "{{>x}}", "  {{> x}}\n", "{{#a}}{{> x}}{{/a}}", "{{=<% %>=}}<%> x%>", "{{ = | | = }}"):
        message = refused_and_nothing_stored(service, db_rows, hook(receiver, body=template))
        assert "partials" in message or "set-delimiter" in message, template


# -- a secret-bearing request keeps the host its template wrote ---------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://{{host}}/x",
        "https://{{{host}}}/x",
        "https://{{#h}}{{.}}{{/h}}/x",
        "https://{{^h}}evil.example{{/h}}/x",
        "https://api.example.com{{{rest}}}",  # rest = "@evil.example/" would move the host
        "https://api.example.com:{{port}}/x",
        "https://user:{{pw}}@api.example.com/x",
        "https://api.{{{PARTICLE_EVENT_NAME}}}.example/x",
        "https://{{{EVENT_SOURCE}}}/x",
    ],
)
def test_a_publisher_cannot_choose_where_the_secret_goes(service, receiver, db_rows, url):
    message = refused_and_nothing_stored(service, db_rows, hook(receiver, url=url, headers={"X": "{{{API_KEY}}}"}))
    assert "url: the scheme and host may not use event variables" in message, url


def test_after_the_host_event_data_cannot_move_the_request(service, receiver):
    for rest in ("@evil.example/", "/@evil.example", "//evil.example/", "\\\\evil.example", "#@evil.example"):
        result = fire(
            service,
            receiver,
            {"rest": rest},
            url=receiver.url + "/{{{rest}}}?k={{{API_KEY}}}",
        )
        assert result.log["request"] is None or result.log["request"]["url"].startswith(receiver.url + "/"), rest
    assert receiver.requests and all(got.headers["Host"] == f"127.0.0.1:{receiver.port}" for got in receiver.requests)


def test_the_ssrf_guard_still_applies_to_a_templated_host(store, logic_home, receiver):
    """Without secrets a host may be templated; the connect-time guard still refuses loopback."""
    settings = Settings(home=logic_home, webhook_timeout_s=2, webhook_retries=0, webhook_allow_private=False)
    svc = OwnerIntegrations(store, settings)
    try:
        record = svc.create(OWNER, {"name": "inward", "event": "e", "url": "http://{{{host}}}/{{path.0}}"})
        ev = {**EVENT, "name": "e", "data": json.dumps({"host": f"127.0.0.1:{receiver.port}", "path": ["x"]})}
        result = svc.fire(record, ev)
    finally:
        svc.close()
    assert not result.ok and "is not a public address (loopback)" in result.log["error"]
    assert (receiver.connections, receiver.requests) == (0, [])


# -- logs and published events hold [[SENSITIVE]] ----------------------------------------------------------------


def test_response_template_output_and_hook_events_are_masked(service):
    from tests.receiver import Receiver

    half = len(SECRET) // 2

    def echo(got) -> bytes:
        key = got.headers["X-Key"]
        return json.dumps({"echo": key, "a": key[:half], "b": key[half:], "items": [key, "<" + key + ">"]}).encode()

    with Receiver(body=echo) as r:
        result = fire(
            service,
            r,
            {},
            url=r.url + "/in",
            headers={"X-Key": "{{{API_KEY}}}"},
            responseTemplate={"raw": "{{{echo}}}", "joined": "{{{a}}}{{{b}}}", "loop": "{{#items}}{{.}};{{/items}}"},
        )
    assert result.ok
    name, data = result.events[-1]
    assert name == "hook-response/sensor/x"
    published = json.loads(data)
    assert published["raw"] == MASK and published["joined"] == MASK
    assert published["loop"] == f"{MASK};&lt;{MASK}&gt;;"
    kept = everything_kept(result)
    assert (
        SECRET not in kept
        and MASK in result.log["response"]["body"]
        and MASK in result.log["request"]["headers"]["x-key"]
    )


def test_an_html_escaped_secret_with_a_quote_is_masked(service, store):
    from tests.receiver import Receiver

    secret = "it's-a&<secret>\"-9c1d"
    store.secrets.create(OWNER, "QUOTED", secret)
    with Receiver(body=lambda got: got.body) as r:
        record = service.create(
            OWNER,
            {"name": "q", "event": "sensor/", "url": r.url, "secrets": ["QUOTED"], "body": "{{QUOTED}}|{{{QUOTED}}}"},
        )
        result = service.fire(record, dict(EVENT))
        assert r.requests[-1].text == "it&#39;s-a&amp;&lt;secret&gt;&quot;-9c1d|" + secret
    assert secret not in everything_kept(result) and "it&#39;s-a&amp;" not in everything_kept(result)
    assert result.events[-1][1] == f"{MASK}|{MASK}"


def test_secrets_are_refused_where_what_renders_is_published(service, receiver, db_rows):
    for field in (
        {"responseTemplate": "{{{API_KEY}}}"},
        {"responseTemplate": {"k": ["{{API_KEY}}"]}},
        {"responseTopic": "r/{{{API_KEY}}}"},
        {"errorResponseTopic": "e/{{API_KEY}}"},
    ):
        message = refused_and_nothing_stored(service, db_rows, hook(receiver, **field))
        assert "secrets cannot be used here (what this field renders is published)" in message, field


# -- no loops, no blow-ups ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, source",
    [
        ("hook-response/sensor/x", "integration:attacked"),
        ("hook-error/sensor/x", "integration:attacked"),
        ("hook-sent/sensor/x", "integration:attacked"),
        ("sensor/custom-topic", "integration:attacked"),  # a responseTopic outside hook-*/
        ("hook-response/sensor/x", "api"),  # a person publishing a hook name by hand
    ],
)
def test_a_webhooks_own_events_never_fire_a_webhook(service, receiver, name, source):
    record = service.create(OWNER, hook(receiver, event="hook-", body="{{{API_KEY}}}"))
    other = service.create(OWNER, hook(receiver, name="broad", event="sensor/", body="{{{API_KEY}}}"))
    for r in (record, other):
        result = service.fire(r, {**EVENT, "name": name, "source": source})
        assert (result.ok, result.events, result.accesses) == (False, [], [])
    assert receiver.requests == []


def test_nested_sections_over_a_published_list_cannot_exhaust_the_server(service, receiver):
    """An event of a 10,000-item list, looped in sections four deep, would render ~10^21 characters."""
    template = "{{#a}}{{#a}}{{#a}}{{#a}}{{{PARTICLE_EVENT_VALUE}}}{{/a}}{{/a}}{{/a}}{{/a}}"
    result = fire(service, receiver, {"a": list(range(10_000))}, body=template)
    assert (result.ok, receiver.requests) == (False, [])
    assert result.events == [("hook-error/sensor/x", "the templates rendered more than 1024000 characters")]


def test_json_nested_too_deep_to_render_gives_no_names(service, receiver):
    deep = '{"a": ' * 5000 + "1" + "}" * 5000
    result = fire(service, receiver, deep, body="[{{a}}]|{{{a.a.a}}}")
    assert result.ok and receiver.requests[-1].text == "[]|"


def test_a_malformed_template_is_refused_at_create_naming_the_field(service, receiver, db_rows):
    spec = hook(receiver, json={"readings": "{{#readings}}{{t}};"}, headers={"X": "{{API_KEY}"})
    message = refused_and_nothing_stored(service, db_rows, spec)
    assert "json.readings: invalid template: {{#readings}} is not closed" in message
    assert "headers.X: invalid template: the tag at character 1 is not closed with }}" in message


@pytest.mark.parametrize("template", ["{{" * 20_000, "{{{a}}" * 10_000, "{{=a=}}" * 10_000])
def test_templates_that_would_make_the_parser_quadratic_are_refused_before_it(template):
    """pystache's tag regex rescans to the end from every `{{` it cannot close (32 KB: 35 s)."""
    with pytest.raises(ValueError, match="not closed|set-delimiter"):
        compile_template(template)


def test_long_runs_of_spaces_parse_like_any_text():
    """pystache's regex is quadratic on a run of spaces; ours is anchored (same tree, linear)."""
    source = " " * 200_000 + "{{x}}" + "\t " * 100_000
    assert render(source, Namespace(data={"x": "y"}), Budget(1_000_000)) == " " * 200_000 + "y" + "\t " * 100_000


def test_connection_refused_still_publishes_no_secret(service):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    record = service.create(
        OWNER,
        {
            "name": "down",
            "event": "sensor/",
            "url": f"http://127.0.0.1:{port}/{{{{{{API_KEY}}}}}}",
            "secrets": ["API_KEY"],
        },
    )
    result = service.fire(record, dict(EVENT))
    assert not result.ok and SECRET not in everything_kept(result)
