"""runtime.integrations.variables: an event's predefined variables and JSON data."""

from __future__ import annotations

import base64
import json

from runtime.integrations.templates import Budget, render
from runtime.integrations.variables import (
    DEVICE_VARIABLES,
    PREDEFINED,
    default_fields,
    event_namespace,
    event_variables,
    json_data,
)
from tests.runtime.integrations.support import EVENT


def test_ours_and_particles_names_for_the_event():
    v = event_variables(EVENT)
    assert (v["EVENT_NAME"], v["PARTICLE_EVENT_NAME"], v["SPARK_EVENT_NAME"]) == ("sensor/temp",) * 3
    assert v["EVENT_DATA"] == v["PARTICLE_EVENT_VALUE"] == v["SPARK_EVENT_VALUE"] == EVENT["data"]
    assert v["EVENT_PUBLISHED_AT"] == v["PARTICLE_PUBLISHED_AT"] == "2024-05-01T12:00:00.000000Z"
    assert v["EVENT_ID"] == v["PARTICLE_EVENT_ID"] == "ev-1"
    assert v["EVENT_SOURCE"] == "dev-7"
    assert set(v) == PREDEFINED


def test_device_and_product_variables_are_empty():
    v = event_variables(EVENT)
    assert DEVICE_VARIABLES == (
        "PARTICLE_DEVICE_ID",
        "SPARK_CORE_ID",
        "PRODUCT_ID",
        "PRODUCT_USER_ID",
        "PRODUCT_VERSION",
    )
    assert {name: v[name] for name in DEVICE_VARIABLES} == dict.fromkeys(DEVICE_VARIABLES, "")


def test_the_whole_event_as_json_and_base64():
    v = event_variables(EVENT)
    whole = {"name": "sensor/temp", "data": EVENT["data"], "published_at": "2024-05-01T12:00:00.000000Z", "coreid": ""}
    assert json.loads(v["PARTICLE_EVENT_JSON"]) == whole
    assert json.loads(base64.b64decode(v["PARTICLE_EVENT_BASE64"])) == whole


def test_missing_event_fields_are_empty_text():
    v = event_variables({"name": "n"})
    assert (v["EVENT_DATA"], v["EVENT_ID"], v["PARTICLE_PUBLISHED_AT"]) == ("", "", "")


def test_json_data_is_an_object_or_array_of_sane_depth():
    assert json_data('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    assert json_data(" [1, 2]") == [1, 2]
    for text in (None, "", "plain", '"str"', "21.5", "true", "{broken", "[" * 100 + "]" * 100, "1" * 5000):
        assert json_data(text) == {}, text
    assert json_data("[" * 64 + "]" * 64) != {} and json_data("[" * 66 + "]" * 66) == {}
    assert json_data("[" * 100_000) == {}  # deeper than the decoder's recursion


def test_event_namespace_renders_fields_paths_and_variables():
    ns = event_namespace(EVENT, {"API_KEY": "k-123"})
    template = "{{t}} {{room}} {{nested.a.1}} {{flag}} [{{none}}] {{{EVENT_NAME}}} {{{API_KEY}}} [{{nested}}]"
    assert render(template, ns, Budget(1000)) == "21.5 lab 2 true [] sensor/temp k-123 [{&quot;a&quot;:[1,2]}]"


def test_default_fields_are_particles():
    assert default_fields(event_variables(EVENT)) == {
        "event": "sensor/temp",
        "data": EVENT["data"],
        "published_at": "2024-05-01T12:00:00.000000Z",
        "coreid": "",
    }
