"""runtime.integrations.templates: event variables, rendering, and no partials from disk."""

from __future__ import annotations

import json

import pytest

from runtime.integrations.templates import event_variables, render, template_names
from tests.runtime.integrations.support import EVENT


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


def test_double_braces_html_escape_triple_braces_do_not():
    v = event_variables({**EVENT, "data": '{"x": "<a&b>"}'})
    assert render("{{x}}|{{{x}}}|{{& x}}", v) == "&lt;a&amp;b&gt;|<a&b>|<a&b>"


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

    assert chevron.render([("partial", "x")], {}, partials_path=None, partials_dict=templates._NO_PARTIALS) == ""
