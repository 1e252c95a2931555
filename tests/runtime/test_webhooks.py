"""runtime.integrations (spec, templates, request, guard, sender): the spec, its templates, sending and the destination check (no network:
httpx.MockTransport; the real guard against a loopback receiver is tests/security/test_webhook_rebinding.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from runtime.integrations.guard import DestinationRefused, GuardedBackend, GuardedTransport, address_refusal
from runtime.integrations.request import RenderedRequest, render_request
from runtime.integrations.sender import WebhookSender
from runtime.integrations.spec import load_spec, parse_spec
from runtime.integrations.templates import event_variables, render, template_names
from store.errors import DeployError

EVENT = {"id": "ev-1", "name": "sensor/temp", "data": '{"t": 21.5, "room": "lab", "nested": {"a": [1, 2]}, '
         '"flag": true, "none": null}', "published_at": "2024-05-01T12:00:00.000000Z", "source": "dev-7"}


def spec(**fields):
    data = {"name": "notify", "event": "sensor/", "url": "https://api.example.com/v1"}
    data.update(fields)
    return parse_spec(data)


def refused(**fields) -> str:
    with pytest.raises(DeployError) as info:
        spec(**fields)
    return info.value.message


# -- validation ----------------------------------------------------------------


def test_minimal_spec_has_defaults():
    s = spec()
    assert (s.method, s.headers, s.query, s.json_, s.form, s.body, s.auth, s.secrets, s.enabled) == (
        "POST", {}, {}, None, None, None, None, [], True)
    assert s.to_json() == {"name": "notify", "event": "sensor/", "url": "https://api.example.com/v1",
                           "method": "POST", "secrets": [], "enabled": True}


def test_full_spec_round_trips_through_to_json():
    data = {"name": "n", "event": "e", "url": "http://h/x", "method": "put", "headers": {"X-A": "1"},
            "query": {"q": "{{{EVENT_NAME}}}"}, "json": {"a": ["{{{K}}}", 1, None]},
            "auth": {"username": "u", "password": "{{{K}}}"}, "secrets": ["K"], "enabled": False}
    s = parse_spec(data)
    assert s.method == "PUT"
    assert parse_spec(s.to_json()) == s
    assert s.to_json()["json"] == {"a": ["{{{K}}}", 1, None]}


@pytest.mark.parametrize("fields, message", [
    ({"name": ""}, "name must be 1-64"),
    ({"name": "-x"}, "name must be 1-64"),
    ({"name": "a" * 65}, "name must be 1-64"),
    ({"event": ""}, "event: String should have at least 1 character"),
    ({"event": "e" * 65}, "event: String should have at most 64 characters"),
    ({"event": "a\nb"}, "control characters"),
    ({"url": "ftp://example.com/"}, "url must start with http:// or https://"),
    ({"url": "javascript:alert(1)"}, "url must start with http:// or https://"),
    ({"url": "https:///path"}, "url must start with http:// or https:// and a host"),
    ({"method": "TRACE"}, "method: Input should be 'GET', 'POST', 'PUT', 'PATCH' or 'DELETE'"),
    ({"headers": {"X": 1}}, "headers.X: Input should be a valid string"),
    ({"headers": {"bad name": "x"}}, "'bad name' is not a valid header name"),
    ({"query": ["a"]}, "query: Input should be a valid dictionary"),
    ({"form": {"a": ["b"]}}, "form.a: Input should be a valid string"),
    ({"body": 5}, "body: Input should be a valid string"),
    ({"auth": {"username": "u", "pass": "p"}}, "auth.pass: Extra inputs are not permitted"),
    ({"auth": {"password": "p"}}, "auth.username: Field required"),
    ({"secrets": ["api_key"]}, "invalid secret name 'api_key'"),
    ({"secrets": ["K", "K"]}, "a secret is declared twice"),
    ({"secrets": ["EVENT_DATA"]}, "EVENT_DATA is an event variable"),
    ({"enabled": "maybe"}, "enabled: Input should be a valid boolean"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"json": {}, "body": "x"}, "use at most one of json, form and body, not json and body"),
    ({"form": {}, "body": "x", "json": 1}, "not json and form and body"),
    ({"auth": {"username": "u"}, "headers": {"Authorization": "x"}}, "auth and an Authorization header"),
])
def test_each_bad_field_gets_a_clear_error(fields, message):
    assert message in refused(**fields)


def test_every_problem_is_reported_at_once():
    message = refused(body="{{> a}}", headers={"X": "{{#s}}{{/s}}"}, auth={"username": "{{{NOPE}}}"})
    assert "body: partials" in message
    assert "headers.X: sections" in message
    assert "auth.username: {{{NOPE}}} is neither a declared secret" in message


def test_missing_required_fields():
    with pytest.raises(DeployError) as info:
        parse_spec({})
    assert all(f"{f}: Field required" in info.value.message for f in ("name", "event", "url"))
    with pytest.raises(DeployError, match="expected a JSON object"):
        parse_spec(["not", "an", "object"])


@pytest.mark.parametrize("template, message", [
    ("{{> x}}", "partials ({{> x}}) are not supported"),
    ("{{#EVENT_DATA}}x{{/EVENT_DATA}}", "sections"),
    ("{{^EVENT_DATA}}x{{/EVENT_DATA}}", "sections"),
    ("{{a.b}}", "dotted names are not supported"),
    ("{{{EVENT_DATA.__class__}}}", "dotted names are not supported"),
    ("{{.}}", "dotted names are not supported"),
    ("{{{unclosed", "invalid template"),
    ("{{/x}}", "invalid template"),
])
def test_templates_allow_variables_only(template, message):
    assert message in refused(body=template)


def test_undeclared_secret_reference_is_refused_but_data_fields_are_not():
    assert "{{{API_KEY}}} is neither a declared secret nor an event variable" in refused(
        headers={"Authorization": "Bearer {{{API_KEY}}}"})
    s = spec(json={"t": "{{{t}}}", "room": "{{room}}", "n": "{{{EVENT_NAME}}}"})
    assert s.used_secrets() == []


def test_declared_but_unused_secret_is_allowed_and_not_read():
    s = spec(secrets=["A", "B"], body="{{{B}}}")
    assert s.used_secrets() == ["B"]


def test_secret_host_cannot_be_chosen_by_the_publisher():
    for url in ("https://{{{EVENT_SOURCE}}}/x", "https://{{{host}}}", "https://api.{{EVENT_DATA}}.com/",
                "https://user@{{{EVENT_DATA}}}/", "https://{{=<% %>=}}<%& EVENT_DATA %>/x"):
        assert "scheme and host may not use event variables" in refused(url=url, secrets=["K"], body="{{{K}}}"), url
    # Without secrets there is nothing to steal; after the host anything goes.
    spec(url="https://{{{EVENT_SOURCE}}}.example.com/x")
    spec(url="https://api.example.com/{{{EVENT_DATA}}}?k={{{K}}}", secrets=["K"])
    spec(url="https://{{{TENANT}}}.example.com/x", secrets=["TENANT"])


def test_load_spec_reads_the_example_files(tmp_path):
    from pathlib import Path

    examples = sorted((Path(__file__).parents[2] / "logic_examples" / "webhooks").glob("*.webhook.json"))
    assert examples
    for path in examples:
        assert parse_spec(load_spec(path), filename=path.name).name == path.name.removesuffix(".webhook.json")
    bad = tmp_path / "bad.webhook.json"
    bad.write_text('{"name": "x",\n "event": }')
    with pytest.raises(DeployError, match="bad.webhook.json:2: invalid JSON"):
        load_spec(bad)


# -- rendering -------------------------------------------------------------------


def test_event_variables_and_json_fields():
    v = event_variables(EVENT, {"API_KEY": "k-123"})
    assert v["EVENT_NAME"] == "sensor/temp"
    assert v["EVENT_DATA"] == EVENT["data"]
    assert v["EVENT_PUBLISHED_AT"] == "2024-05-01T12:00:00.000000Z"
    assert v["EVENT_SOURCE"] == "dev-7"
    assert v["EVENT_ID"] == "ev-1"
    assert v["PARTICLE_EVENT_VALUE"] == EVENT["data"] and v["PARTICLE_DEVICE_ID"] == "dev-7"
    assert (v["t"], v["room"], v["nested"], v["flag"], v["none"]) == ("21.5", "lab", '{"a":[1,2]}', "true", "")
    assert v["API_KEY"] == "k-123"


def test_data_that_is_not_a_json_object_gives_no_fields():
    for data in (None, "", "plain text", "[1, 2]", '"str"', "{broken"):
        v = event_variables({**EVENT, "data": data})
        assert set(v) == set(event_variables({**EVENT, "data": None}))
        assert v["EVENT_DATA"] == (data or "")


def test_event_data_cannot_shadow_secrets_or_event_variables():
    data = json.dumps({"API_KEY": "attacker", "EVENT_NAME": "forged", "ok": "1"})
    v = event_variables({**EVENT, "data": data}, {"API_KEY": "real"})
    assert (v["API_KEY"], v["EVENT_NAME"], v["ok"]) == ("real", "sensor/temp", "1")
    assert "API_KEY" not in event_variables({**EVENT, "data": data})


def test_every_field_is_rendered():
    s = spec(url="https://api.example.com/{{{room}}}/{{{EVENT_NAME}}}?key={{{K}}}", method="PATCH",
             headers={"X-{{{room}}}": "Bearer {{{K}}}", "X-At": "{{{EVENT_PUBLISHED_AT}}}"},
             query={"src_{{{room}}}": "{{{EVENT_SOURCE}}}", "t": "{{t}}"},
             json={"{{{room}}}": {"deep": ["{{{K}}}", 3, True, None, "{{{nested}}}"]}, "d": "{{{EVENT_DATA}}}"},
             auth={"username": "u-{{{room}}}", "password": "{{{K}}}"}, secrets=["K"])
    r = render_request(s, event_variables(EVENT, {"K": "s3cret"}))
    assert r.method == "PATCH"
    assert r.url == "https://api.example.com/lab/sensor/temp?key=s3cret"
    assert r.headers == {"X-lab": "Bearer s3cret", "X-At": "2024-05-01T12:00:00.000000Z"}
    assert r.query == {"src_lab": "dev-7", "t": "21.5"}
    assert r.json_ == {"lab": {"deep": ["s3cret", 3, True, None, '{"a":[1,2]}']}, "d": EVENT["data"]}
    assert r.auth == ("u-lab", "s3cret")
    f = render_request(spec(form={"{{room}}": "{{{t}}}"}), event_variables(EVENT))
    assert f.form == {"lab": "21.5"} and f.json_ is None
    b = render_request(spec(body="n={{{EVENT_NAME}}}"), event_variables(EVENT))
    assert b.body == "n=sensor/temp"


def test_double_braces_html_escape_triple_braces_do_not():
    v = event_variables({**EVENT, "data": '{"x": "<a&b>"}'})
    assert render("{{x}}|{{{x}}}|{{& x}}", v) == "&lt;a&amp;b&gt;|<a&b>|<a&b>"


def test_default_body_is_the_event_for_post_put_patch_only():
    r = render_request(spec(), event_variables(EVENT))
    assert r.json_ == {"event": "sensor/temp", "data": EVENT["data"],
                       "published_at": "2024-05-01T12:00:00.000000Z", "source": "dev-7"}
    assert render_request(spec(method="GET"), event_variables(EVENT)).json_ is None
    assert render_request(spec(method="DELETE"), event_variables(EVENT)).json_ is None


def test_event_data_is_never_rendered_again():
    """A publisher must not exfiltrate a secret by putting a template in the event data."""
    s = spec(url="https://api.example.com/{{{room}}}", body="{{{EVENT_DATA}}}|{{{room}}}|{{EVENT_DATA}}",
             headers={"X": "{{{EVENT_DATA}}}"}, json=None, secrets=["K"])
    s2 = spec(json={"a": "{{{EVENT_DATA}}}", "b": "{{{room}}}"}, secrets=["K"], headers={"Y": "{{{K}}}"})
    for data in (json.dumps({"room": "{{{K}}} {{> x}} {{#K}}{{/K}} {{=<% %>=}}<%& K %>"}),
                 "{{{K}}} {{> x}} {{#K}}{{/K}} {{=<% %>=}}<%& K %>"):
        v = event_variables({**EVENT, "data": data}, {"K": "s3cret"})
        r = render_request(s, v)
        assert "s3cret" not in r.body and "s3cret" not in r.url and "s3cret" not in r.headers["X"]
        assert r.body.startswith(data + "|")
        assert "s3cret" not in json.dumps(render_request(s2, v).json_)
        assert render_request(s2, v).headers == {"Y": "s3cret"}
    v = event_variables({**EVENT, "data": json.dumps({"room": "{{{K}}}"})}, {"K": "s3cret"})
    assert render_request(s, v).url == "https://api.example.com/{{{K}}}"


def test_partials_never_read_files(tmp_path, monkeypatch):
    (tmp_path / "x.mustache").write_text("FROM-DISK")
    (tmp_path / "x").write_text("FROM-DISK")
    monkeypatch.chdir(tmp_path)
    import chevron

    assert chevron.render("{{> x}}", {}) == "FROM-DISK"  # the threat is real with chevron's defaults
    with pytest.raises(ValueError, match="partials"):
        render("a{{> x}}b", {})
    with pytest.raises(ValueError, match="partials"):
        template_names("{{=<% %>=}}<%> x%>")
    assert template_names("{{=<% %>=}}<%& EVENT_NAME %>") == ["EVENT_NAME"]
    # Even a token list that gets past the check renders nothing from disk.
    from runtime.integrations import templates

    assert chevron.render([("partial", "x")], {}, partials_path=None,
                          partials_dict=templates._NO_PARTIALS) == ""


def test_rendered_request_checks_url_and_headers():
    client = httpx.Client()
    try:
        with pytest.raises(Exception, match="line break"):
            RenderedRequest("POST", "https://h/", {"X": "a\r\nInjected: 1"}, {}).build(client)
        with pytest.raises(Exception, match="http:// or https://"):
            RenderedRequest("GET", "file:///etc/passwd", {}, {}).build(client)
        req = RenderedRequest("GET", "https://h/p", {}, {"q": "a b"}, auth=("u", "p")).build(client)
        assert req.url == "https://h/p?q=a+b"
        assert req.headers["Authorization"] == "Basic dTpw"
        assert req.headers["Accept-Encoding"] == "identity"
    finally:
        client.close()


# -- sending ---------------------------------------------------------------------


class Script:
    """A MockTransport handler that answers from a list and records requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def sender(handler, *, retries=2, max_body=1000, sleeps=None):
    return WebhookSender(timeout_s=2, retries=retries, max_body_bytes=max_body,
                         transport=httpx.MockTransport(handler), backoff_s=0.25,
                         sleep=(sleeps.append if sleeps is not None else lambda s: None))


def get(url="https://h/x"):
    return RenderedRequest("GET", url, {}, {})


def test_retries_5xx_with_exponential_backoff_then_succeeds():
    script, sleeps = Script(httpx.Response(500), httpx.Response(503), httpx.Response(200, text="ok")), []
    out = sender(script, sleeps=sleeps).send(get())
    assert (out.ok, out.status, out.body, out.attempts, sleeps) == (True, 200, b"ok", 3, [0.25, 0.5])


def test_retries_are_bounded():
    script = Script(httpx.Response(502))
    out = sender(script, retries=2).send(get())
    assert (out.ok, out.status, out.attempts, len(script.requests)) == (False, 502, 3, 3)


def test_no_retry_on_4xx():
    script = Script(httpx.Response(404), httpx.Response(200))
    out = sender(script).send(get())
    assert (out.ok, out.status, out.attempts) == (False, 404, 1)


def test_connection_errors_are_retried():
    script = Script(httpx.ConnectError("refused"), httpx.Response(200))
    out = sender(script).send(get())
    assert (out.ok, out.attempts) == (True, 2)
    out = sender(Script(httpx.ConnectError("refused"))).send(get())
    assert (out.ok, out.attempts, out.status) == (False, 3, None)
    assert out.error.startswith("connection failed")


def test_read_timeout_is_not_retried():
    out = sender(Script(httpx.ReadTimeout("slow"))).send(get())
    assert (out.ok, out.attempts, out.error) == (False, 1, "timed out after 2 s")


def test_redirects_are_not_followed():
    script = Script(httpx.Response(302, headers={"Location": "https://evil.example/"}))
    out = sender(script).send(get())
    assert (out.ok, out.status, len(script.requests)) == (False, 302, 1)


def test_response_body_is_capped():
    out = sender(Script(httpx.Response(200, content=b"x" * 5000)), max_body=1000).send(get())
    assert (len(out.body), out.truncated, out.ok) == (1000, True, True)
    out = sender(Script(httpx.Response(200, content=b"x" * 1000)), max_body=1000).send(get())
    assert (len(out.body), out.truncated) == (1000, False)


def test_a_broken_rendered_request_is_not_sent():
    script = Script(httpx.Response(200))
    out = sender(script).send(RenderedRequest("GET", "https://h/", {"X": "a\nb"}, {}))
    assert (out.ok, out.request, out.attempts, script.requests) == (False, None, 0, [])
    assert "line break" in out.error


def test_sender_ignores_netrc_and_proxy_environment(tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine h login server-user password server-pass\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:1")
    script = Script(httpx.Response(200))
    assert sender(script).send(get()).ok
    assert "authorization" not in script.requests[0].headers


def test_a_trickling_response_is_cut_off_at_the_deadline():
    import time as _time

    def trickle():
        for _ in range(50):
            _time.sleep(0.05)
            yield b"x"

    s = WebhookSender(timeout_s=0.3, retries=2, max_body_bytes=1000,
                      transport=httpx.MockTransport(lambda r: httpx.Response(200, content=trickle())),
                      sleep=lambda s: None)
    started = _time.monotonic()
    out = s.send(get())
    assert (out.ok, out.error, out.attempts) == (False, "timed out after 0.3 s", 1)
    assert _time.monotonic() - started < 1.5


# -- destinations ------------------------------------------------------------------

ALLOW = "set LOGIC_WEBHOOK_ALLOW_PRIVATE=true to allow it"


@pytest.mark.parametrize("address, shown, kind", [
    ("127.0.0.1", "127.0.0.1", "loopback"),
    ("127.255.0.9", "127.255.0.9", "loopback"),
    ("10.0.0.5", "10.0.0.5", "private"),
    ("172.16.0.1", "172.16.0.1", "private"),
    ("192.168.1.1", "192.168.1.1", "private"),
    ("169.254.169.254", "169.254.169.254", "link-local"),  # cloud metadata
    ("0.0.0.0", "0.0.0.0", "unspecified"),
    ("224.0.0.1", "224.0.0.1", "multicast"),
    ("240.0.0.1", "240.0.0.1", "reserved"),
    ("255.255.255.255", "255.255.255.255", "reserved"),
    ("100.64.0.1", "100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("192.0.2.1", "192.0.2.1", "private"),  # documentation: Python counts it private
    ("::1", "::1", "loopback"),
    ("::", "::", "unspecified"),
    ("fe80::1%eth0", "fe80::1%eth0", "link-local"),
    ("fc00::1", "fc00::1", "private"),
    ("ff02::1", "ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1 (127.0.0.1)", "loopback"),
    ("::ffff:10.0.0.5", "::ffff:10.0.0.5 (10.0.0.5)", "private"),
    ("2002:7f00:1::", "2002:7f00:1:: (127.0.0.1)", "loopback"),  # 6to4, which Python calls global
    ("64:ff9b::a00:5", "64:ff9b::a00:5 (10.0.0.5)", "private"),  # NAT64, which Python calls global
])
def test_address_refusal_names_the_address_and_the_setting(address, shown, kind):
    assert address_refusal(address) == f"destination {shown} is not a public address ({kind}); {ALLOW}"


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "2a00:1450:4001:80b::200e"])
def test_public_addresses_pass(address):
    assert address_refusal(address) is None


def test_a_refused_destination_is_final_and_not_retried():

    script, sleeps = Script(DestinationRefused(f"destination 10.0.0.5 is not a public address (private); {ALLOW}")), []
    out = sender(script, retries=3, sleeps=sleeps).send(get())
    assert (out.ok, out.attempts, sleeps, len(script.requests)) == (False, 1, [], 1)
    assert out.error == f"destination 10.0.0.5 is not a public address (private); {ALLOW}"


def test_the_guard_is_on_unless_a_transport_is_given_and_private_is_off_by_default():
    s = WebhookSender(timeout_s=1, retries=0, max_body_bytes=10)
    try:
        assert s.allow_private is False
        assert isinstance(s.client._transport, GuardedTransport)
        backend = s.client._transport._pool._network_backend
        assert isinstance(backend, GuardedBackend) and backend.allow_private is False
    finally:
        s.close()
