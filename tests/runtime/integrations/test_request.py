"""runtime.integrations.request: a spec rendered into a request, and the request's own checks."""

from __future__ import annotations

import json

import httpx
import pytest

from runtime.integrations.request import RenderedRequest, render_request
from runtime.integrations.templates import Budget
from runtime.integrations.variables import event_namespace
from store.errors import TooLarge
from tests.runtime.integrations.support import EVENT, spec


def rendered(s, event=EVENT, secrets=None, limit=1_000_000):
    return render_request(s, event_namespace(event, secrets), Budget(limit))


def test_every_field_is_rendered():
    s = spec(
        url="https://api.example.com/{{{room}}}/{{{EVENT_NAME}}}?key={{{K}}}",
        method="PATCH",
        headers={"X-{{{room}}}": "Bearer {{{K}}}", "X-At": "{{{EVENT_PUBLISHED_AT}}}"},
        query={"src_{{{room}}}": "{{{EVENT_SOURCE}}}", "t": "{{t}}"},
        json={"{{{room}}}": {"deep": ["{{{K}}}", 3, True, None, "{{{nested}}}"]}, "d": "{{{EVENT_DATA}}}"},
        auth={"username": "u-{{{room}}}", "password": "{{{K}}}"},
        secrets=["K"],
        noDefaults=True,
    )
    r = rendered(s, secrets={"K": "s3cret"})
    assert r.method == "PATCH"
    assert r.url == "https://api.example.com/lab/sensor/temp?key=s3cret"
    assert r.headers == {"X-lab": "Bearer s3cret", "X-At": "2024-05-01T12:00:00.000000Z"}
    assert r.query == {"src_lab": "dev-7", "t": "21.5"}
    assert r.json_ == {"lab": {"deep": ["s3cret", 3, True, None, '{"a":[1,2]}']}, "d": EVENT["data"]}
    assert r.auth == ("u-lab", "s3cret")
    assert r.verify is True
    f = rendered(spec(form={"{{room}}": "{{{t}}}"}, noDefaults=True))
    assert f.form == {"lab": "21.5"} and f.json_ is None
    b = rendered(spec(body="n={{{EVENT_NAME}}}"))
    assert b.body == "n=sensor/temp"


def test_particles_default_fields_go_with_every_request_unless_no_defaults():
    defaults = {
        "event": "sensor/temp",
        "data": EVENT["data"],
        "published_at": "2024-05-01T12:00:00.000000Z",
        "coreid": "",
    }
    for method in ("POST", "PUT", "PATCH"):
        r = rendered(spec(method=method))
        assert (r.form, r.json_, r.body, r.query) == (defaults, None, None, {})
    for method in ("GET", "DELETE"):  # no body: the query string carries them
        r = rendered(spec(method=method, query={"k": "v", "event": "mine"}))
        assert (r.form, r.json_, r.body, r.query) == (None, None, None, {**defaults, "k": "v", "event": "mine"})
    # Beside a json object's or a form's own fields, which win over a default of the same name.
    r = rendered(spec(json={"a": "1", "data": "{{{room}}}"}))
    assert (r.json_, r.form) == ({**defaults, "a": "1", "data": "lab"}, None)
    r = rendered(spec(form={"a": "{{{room}}}"}))
    assert (r.form, r.json_) == ({**defaults, "a": "lab"}, None)
    # A raw body, a json template and noDefaults send exactly what was written.
    assert rendered(spec(body="x")).body == "x" and rendered(spec(body="x")).form is None
    assert rendered(spec(json="[{{t}}]")).body == "[21.5]"
    for fields in ({}, {"json": {"a": "1"}}, {"form": {"a": "1"}}, {"method": "GET", "query": {"a": "1"}}):
        r = rendered(spec(noDefaults=True, **fields))
        assert not {"event", "published_at", "coreid"} & {*(r.form or {}), *(r.json_ or {}), *r.query}, fields


def test_particle_json_as_one_template_is_sent_as_is():
    """Particle's `json` may be a string: a template that is JSON only once rendered."""
    r = rendered(spec(json='{"t": {{t}}, "room": "{{{room}}}", "list": [{{#nested.a}}{{.}},{{/nested.a}}0]}'))
    assert r.json_ is None and r.headers == {"Content-Type": "application/json"}
    assert json.loads(r.body) == {"t": 21.5, "room": "lab", "list": [1, 2, 0]}
    typed = rendered(spec(json="{{{EVENT_DATA}}}", headers={"content-type": "application/vnd+json"}))
    assert typed.headers == {"content-type": "application/vnd+json"} and typed.body == EVENT["data"]


def test_reject_unauthorized_false_turns_certificate_checks_off_for_that_request():
    assert rendered(spec(rejectUnauthorized=False)).verify is False


def test_rendering_is_bounded_per_request():
    s = spec(headers={"X": "{{{EVENT_DATA}}}"}, body="{{{EVENT_DATA}}}{{{EVENT_DATA}}}")
    size = len(EVENT["data"])
    rendered(s, limit=3 * size + 200)
    with pytest.raises(TooLarge):
        rendered(s, limit=3 * size)  # shared by every field of the request


def test_event_data_is_never_rendered_again():
    """A publisher must not exfiltrate a secret by putting a template in the event data."""
    s = spec(
        url="https://api.example.com/{{{room}}}",
        body="{{{EVENT_DATA}}}|{{{room}}}|{{EVENT_DATA}}",
        headers={"X": "{{{EVENT_DATA}}}"},
        json=None,
        secrets=["K"],
    )
    s2 = spec(json={"a": "{{{EVENT_DATA}}}", "b": "{{{room}}}"}, secrets=["K"], headers={"Y": "{{{K}}}"})
    for data in (
        json.dumps({"room": "{{{K}}} {{> x}} {{#K}}{{/K}} {{=<% %>=}}<%& K %>"}),
        "{{{K}}} {{> x}} {{#K}}{{/K}} {{=<% %>=}}<%& K %>",
    ):
        ev = {**EVENT, "data": data}
        r = rendered(s, ev, {"K": "s3cret"})
        assert "s3cret" not in r.body and "s3cret" not in r.url and "s3cret" not in r.headers["X"]
        assert r.body.startswith(data + "|")
        assert "s3cret" not in json.dumps(rendered(s2, ev, {"K": "s3cret"}).json_)
        assert rendered(s2, ev, {"K": "s3cret"}).headers == {"Y": "s3cret"}
    ev = {**EVENT, "data": json.dumps({"room": "{{{K}}}"})}
    assert rendered(s, ev, {"K": "s3cret"}).url == "https://api.example.com/{{{K}}}"


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
