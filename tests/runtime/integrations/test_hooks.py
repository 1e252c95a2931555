"""runtime.integrations.hooks: which events are a webhook's, their topics, responseTemplate."""

from __future__ import annotations

import json

import pytest

from runtime.execution.redactor import Redactor
from runtime.integrations.hooks import is_hook_event, response_data, source_of, topics
from runtime.integrations.templates import Budget
from runtime.integrations.variables import event_namespace
from store import MASK
from store.errors import TooLarge
from tests.runtime.integrations.support import EVENT, spec

NONE = Redactor.for_values(())


@pytest.mark.parametrize(
    "name, source, hook",
    [
        ("hook-response/sensor/temp", "api", True),
        ("hook-error/sensor/temp", "api", True),
        ("hook-sent/sensor/temp", "api", True),
        ("weather-result", source_of("notify"), True),  # a custom responseTopic: known by its source
        ("sensor/temp", "api", False),
        ("sensor/temp", "run:42", False),
        ("hook-response", "api", False),
        ("my-hook-response/x", "api", False),
    ],
)
def test_a_webhooks_events_are_known_by_name_or_source(name, source, hook):
    assert is_hook_event({"name": name, "source": source}) is hook


def test_topics_default_to_particles_and_render_the_events_names():
    ns = event_namespace({**EVENT, "name": "a&b", "data": '{"room": "lab"}'})
    assert topics(spec(), ns, Budget(1000)) == ("hook-response/a&b", "hook-error/a&b")
    custom = spec(
        responseTopic="{{PARTICLE_DEVICE_ID}}/hook-response/{{{PARTICLE_EVENT_NAME}}}",
        errorResponseTopic="failed/{{room}}/{{PARTICLE_EVENT_NAME}}",
    )
    assert topics(custom, ns, Budget(1000)) == ("/hook-response/a&b", "failed/lab/a&amp;b")


def test_topics_never_see_a_secret():
    ns = event_namespace(EVENT, {"K": "s3cret"})
    s = spec(secrets=["K"], body="{{{K}}}")
    s.response_topic = "r/{{{K}}}"  # past the spec's own check, as a tampered record would be
    assert topics(s, ns, Budget(1000))[0] == "r/"


def test_without_a_template_the_body_is_published_masked():
    redactor = Redactor.for_values(["s3cret-value"])
    ns = event_namespace(EVENT)
    assert response_data(spec(), "ok s3cret-value", ns, redactor, Budget(1000)) == f"ok {MASK}"


def test_response_template_renders_the_json_body_and_the_events_variables():
    body = json.dumps({"results": [{"location": {"lat": 1.5, "lng": -2}}], "STATUS": "OK", "tags": ["a", "b"]})
    ns = event_namespace(EVENT)
    text = spec(
        responseTemplate="{{results.0.location.lat}},{{results.0.location.lng}} {{STATUS}} {{tags}} {{{EVENT_NAME}}}"
    )
    assert response_data(text, body, ns, NONE, Budget(1000)) == "1.5,-2 OK a,b sensor/temp"
    as_json = spec(responseTemplate={"lat": "{{{results.0.location.lat}}}", "all": ["{{#tags}}{{.}}!{{/tags}}"]})
    assert json.loads(response_data(as_json, body, ns, NONE, Budget(1000))) == {"lat": "1.5", "all": ["a!b!"]}
    assert response_data(text, "not json", ns, NONE, Budget(1000)) == ",   sensor/temp"


def test_a_secret_the_server_echoes_is_masked_before_and_after_the_template():
    secret = "s3cret-value-echoed"
    redactor = Redactor.for_values([secret])
    body = json.dumps({"echo": secret, "a": secret[:9], "b": secret[9:], "html": "<" + secret + ">"})
    s = spec(responseTemplate="{{{echo}}}|{{{a}}}{{{b}}}|{{html}}")
    data = response_data(s, body, event_namespace(EVENT), redactor, Budget(1000))
    assert secret not in data and data.count(MASK) == 3, data


def test_a_response_template_is_bounded():
    body = json.dumps({"a": list(range(100))})
    s = spec(responseTemplate="{{#a}}{{#a}}{{#a}}x{{/a}}{{/a}}{{/a}}")
    with pytest.raises(TooLarge):
        response_data(s, body, event_namespace(EVENT), NONE, Budget(100_000))
