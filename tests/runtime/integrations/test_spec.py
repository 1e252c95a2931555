"""runtime.integrations.spec: a webhook spec, every field's check, its templates, the example files."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.integrations.spec import load_spec, parse_spec
from store.errors import DeployError
from tests.runtime.integrations.support import spec

EXAMPLES = Path(__file__).resolve().parents[3] / "logic_examples" / "webhooks"


def refused(**fields) -> str:
    with pytest.raises(DeployError) as info:
        spec(**fields)
    return info.value.message


def test_minimal_spec_has_defaults():
    s = spec()
    assert (s.method, s.headers, s.query, s.json_, s.form, s.body, s.auth, s.secrets, s.enabled) == (
        "POST",
        {},
        {},
        None,
        None,
        None,
        None,
        [],
        True,
    )
    assert s.to_json() == {
        "name": "notify",
        "event": "sensor/",
        "url": "https://api.example.com/v1",
        "method": "POST",
        "secrets": [],
        "enabled": True,
    }


def test_full_spec_round_trips_through_to_json():
    data = {
        "name": "n",
        "event": "e",
        "url": "http://h/x",
        "method": "put",
        "headers": {"X-A": "1"},
        "query": {"q": "{{{EVENT_NAME}}}"},
        "json": {"a": ["{{{K}}}", 1, None]},
        "auth": {"username": "u", "password": "{{{K}}}"},
        "secrets": ["K"],
        "enabled": False,
    }
    s = parse_spec(data)
    assert s.method == "PUT"
    assert parse_spec(s.to_json()) == s
    assert s.to_json()["json"] == {"a": ["{{{K}}}", 1, None]}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": ""}, "name must be 1-64"),
        ({"name": "-x"}, "name must be 1-64"),
        ({"name": "a" * 65}, "name must be 1-64"),
        ({"event": ""}, "event: String should have at least 1 character"),
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
    ],
)
def test_each_bad_field_gets_a_clear_error(fields, message):
    assert message in refused(**fields)


def test_every_problem_is_reported_at_once():
    message = refused(
        body="{{> a}}",
        headers={"X": "{{#K}}{{/K}}"},
        auth={"username": "{{{NOPE}}}"},
        query={"q": "{{#a}}"},
        secrets=["K"],
    )
    assert "body: partials" in message
    assert "headers.X: {{#K}}: K is a secret: a plain variable only, never a section" in message
    assert "auth.username: {{{NOPE}}} is neither a declared secret" in message
    assert "query.q: invalid template: {{#a}} is not closed" in message


def test_missing_required_fields():
    with pytest.raises(DeployError) as info:
        parse_spec({})
    assert all(f"{f}: Field required" in info.value.message for f in ("name", "event", "url"))
    with pytest.raises(DeployError, match="expected a JSON object"):
        parse_spec(["not", "an", "object"])


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{> x}}", "body: partials ({{> x}}) are not supported"),
        ("{{=<% %>=}}", "body: set-delimiter tags ({{=<% %>=}}) are not supported"),
        ("{{{EVENT_DATA.__class__}}}", "body: {{{EVENT_DATA.__class__}}}: EVENT_DATA is text: it has no fields"),
        ("{{.}}", "body: {{.}}: '.' means the current item, so it is only used inside a section"),
        ("{{{unclosed", "body: invalid template: the tag at character 1 is not closed"),
        ("{{/x}}", "body: invalid template: Section end tag mismatch"),
        ("{{#readings}}{{t}}", "body: invalid template: {{#readings}} is not closed"),
    ],
)
def test_templates_that_are_refused_name_the_field(template, message):
    assert message in refused(body=template)


def test_full_mustache_is_accepted_in_every_field():
    template = (
        "{{#list}}{{a.b}}{{c.0.d}}{{.}}{{/list}}{{^x}}none{{/x}}{{! note }}"
        "{{#PARTICLE_EVENT_VALUE}}y{{/PARTICLE_EVENT_VALUE}}"
    )
    s = spec(
        url="https://api.example.com/{{#p}}{{p}}{{/p}}",
        headers={"X-A": template},
        query={"q": template},
        json={"k": template, "l": [template]},
        auth={"username": template, "password": template},
        responseTemplate=template,
        responseTopic="r/{{#p}}{{p}}{{/p}}",
    )
    assert s.used_secrets() == []


def test_particle_field_names_are_ours_too():
    s = parse_spec(
        {
            "name": "notify",
            "url": "https://api.example.com/v1",
            "eventName": "sensor/",
            "requestType": "put",
            "noDefaults": True,
            "rejectUnauthorized": False,
            "responseTemplate": {"lat": "{{{results.0.location.lat}}}"},
            "responseTopic": "{{PARTICLE_DEVICE_ID}}/hook-response/{{PARTICLE_EVENT_NAME}}",
            "errorResponseTopic": "save_failed_for_{{PARTICLE_DEVICE_ID}}",
            "mydevices": True,
            "unchunked": False,
            "disabled": True,
            "deviceID": "",
        }
    )
    assert (s.event, s.method, s.no_defaults, s.reject_unauthorized, s.enabled) == (
        "sensor/",
        "PUT",
        True,
        False,
        False,
    )
    assert s.to_json() == {
        "name": "notify",
        "event": "sensor/",
        "url": "https://api.example.com/v1",
        "method": "PUT",
        "noDefaults": True,
        "responseTemplate": {"lat": "{{{results.0.location.lat}}}"},
        "responseTopic": "{{PARTICLE_DEVICE_ID}}/hook-response/{{PARTICLE_EVENT_NAME}}",
        "errorResponseTopic": "save_failed_for_{{PARTICLE_DEVICE_ID}}",
        "rejectUnauthorized": False,
        "secrets": [],
        "enabled": False,
    }
    assert parse_spec(s.to_json()) == s
    assert spec(method="POST", requestType="Post").method == "POST"  # the same method, spelt two ways


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"method": "GET", "requestType": "POST"}, "requestType and method name the same field: give one"),
        ({"event": "a", "eventName": "b"}, "eventName and event name the same field"),
        ({"disabled": True, "enabled": True}, "disabled and enabled say different things"),
        ({"disabled": "no"}, "disabled: must be true or false"),
        ({"deviceID": "3f002b000000000000000000"}, "deviceID: a webhook here fires for the owner's events"),
        ({"dataUrlResponseEvent": True}, "dataUrlResponseEvent: responses are published as text"),
        ({"noDefaults": "maybe"}, "noDefaults: Input should be a valid boolean"),
        ({"responseTemplate": 5}, "responseTemplate"),
        ({"productIdOrSlug": "x"}, "productIdOrSlug: Extra inputs are not permitted"),
        ({"responseTopic": "{{{K}}}", "secrets": ["K"]}, "responseTopic: {{{K}}}: secrets cannot be used here"),
        ({"responseTemplate": {"k": "{{{K}}}"}, "secrets": ["K"]}, "responseTemplate.k: {{{K}}}: secrets cannot"),
        ({"errorResponseTopic": "{{#x}}"}, "errorResponseTopic: invalid template: {{#x}} is not closed"),
        ({"rejectUnauthorized": False, "secrets": ["K"]}, "rejectUnauthorized: false is refused in an integration"),
    ],
)
def test_particle_fields_get_clear_errors(fields, message):
    assert message in refused(**fields)


def test_particles_descriptive_name_becomes_an_identifier():
    assert spec(name="Record my metric").name == "Record-my-metric"
    assert spec(name="  Temp → cloud (v2)!").name == "Temp-cloud-v2"
    data = {"event": "sensor/", "url": "https://api.example.com/v1"}
    assert parse_spec(data).name == "sensor"  # no name: the event prefix's
    assert "name must be 1-64" in refused(name="→")


def test_undeclared_secret_reference_is_refused_but_data_fields_are_not():
    assert "{{{API_KEY}}} is neither a declared secret nor an event variable" in refused(
        headers={"Authorization": "Bearer {{{API_KEY}}}"}
    )
    s = spec(json={"t": "{{{t}}}", "room": "{{room}}", "n": "{{{EVENT_NAME}}}"})
    assert s.used_secrets() == []


def test_declared_but_unused_secret_is_allowed_and_not_read():
    s = spec(secrets=["A", "B"], body="{{{B}}}")
    assert s.used_secrets() == ["B"]


def test_secret_host_cannot_be_chosen_by_the_publisher():
    for url in (
        "https://{{{EVENT_SOURCE}}}/x",
        "https://{{{host}}}",
        "https://api.{{EVENT_DATA}}.com/",
        "https://user@{{{EVENT_DATA}}}/",
        "https://api.example.com{{{path}}}",
        "https://api.example.com:{{port}}/",
        "https://{{#h}}api.example.com{{/h}}/x",
        "https://{{^h}}api.example.com{{/h}}/x",
        "https://{{{TENANT.x}}}.example.com/",
    ):
        message = refused(url=url, secrets=["K", "TENANT"], body="{{{K}}}")
        assert "scheme and host may not use event variables" in message or "TENANT is a secret" in message, url
    assert "set-delimiter tags" in refused(url="https://{{=<% %>=}}<%& EVENT_DATA %>/x", secrets=["K"])
    # Without secrets there is nothing to steal; after the host anything goes; a secret is the owner's.
    spec(url="https://{{{EVENT_SOURCE}}}.example.com/x")
    spec(url="https://api.example.com/{{{EVENT_DATA}}}?k={{{K}}}#{{x}}", secrets=["K"])
    spec(url="https://api.example.com?{{#q}}{{q}}{{/q}}", secrets=["K"])
    spec(url="https://{{{TENANT}}}.example.com/x", secrets=["TENANT"])
    spec(url="https://{{! the host: }}api.example.com/x", secrets=["K"])  # a comment writes nothing


def test_load_spec_reads_the_example_files(tmp_path):
    examples = sorted(EXAMPLES.glob("*.webhook.json"))
    assert examples
    for path in examples:
        assert parse_spec(load_spec(path), filename=path.name).name == path.name.removesuffix(".webhook.json")
    particle = parse_spec(load_spec(EXAMPLES.parent / "particle_webhook.webhook.json"))
    assert (particle.name, particle.event, particle.method, particle.no_defaults) == (
        "Record-my-metric",
        "metric/",
        "POST",
        True,
    )
    bad = tmp_path / "bad.webhook.json"
    bad.write_text('{"name": "x",\n "event": }')
    with pytest.raises(DeployError, match="bad.webhook.json:2: invalid JSON"):
        load_spec(bad)
