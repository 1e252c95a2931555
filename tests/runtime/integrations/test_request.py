"""runtime.integrations.request: a spec rendered into a request, and the request's own checks."""

from __future__ import annotations

import json

import httpx
import pytest

from runtime.integrations.request import RenderedRequest, render_request
from runtime.integrations.templates import event_variables
from tests.runtime.integrations.support import EVENT, spec


def test_every_field_is_rendered():
    s = spec(
        url="https://api.example.com/{{{room}}}/{{{EVENT_NAME}}}?key={{{K}}}",
        method="PATCH",
        headers={"X-{{{room}}}": "Bearer {{{K}}}", "X-At": "{{{EVENT_PUBLISHED_AT}}}"},
        query={"src_{{{room}}}": "{{{EVENT_SOURCE}}}", "t": "{{t}}"},
        json={"{{{room}}}": {"deep": ["{{{K}}}", 3, True, None, "{{{nested}}}"]}, "d": "{{{EVENT_DATA}}}"},
        auth={"username": "u-{{{room}}}", "password": "{{{K}}}"},
        secrets=["K"],
    )
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


def test_default_body_is_the_event_for_post_put_patch_only():
    r = render_request(spec(), event_variables(EVENT))
    assert r.json_ == {
        "event": "sensor/temp",
        "data": EVENT["data"],
        "published_at": "2024-05-01T12:00:00.000000Z",
        "source": "dev-7",
    }
    assert render_request(spec(method="GET"), event_variables(EVENT)).json_ is None
    assert render_request(spec(method="DELETE"), event_variables(EVENT)).json_ is None


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
        v = event_variables({**EVENT, "data": data}, {"K": "s3cret"})
        r = render_request(s, v)
        assert "s3cret" not in r.body and "s3cret" not in r.url and "s3cret" not in r.headers["X"]
        assert r.body.startswith(data + "|")
        assert "s3cret" not in json.dumps(render_request(s2, v).json_)
        assert render_request(s2, v).headers == {"Y": "s3cret"}
    v = event_variables({**EVENT, "data": json.dumps({"room": "{{{K}}}"})}, {"K": "s3cret"})
    assert render_request(s, v).url == "https://api.example.com/{{{K}}}"


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
