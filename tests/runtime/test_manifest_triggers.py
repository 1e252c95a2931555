"""Manifest triggers: per-trigger `enabled`, a schedule's `start_at`/`end_at` window, and the
rows a deploy writes for them (`trigger_rows`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from runtime.manifest import parse_manifest, trigger_rows
from store.errors import DeployError
from store.functions import TriggerRow


def manifest(*triggers: dict):
    return parse_manifest({"name": "fn", "triggers": list(triggers)}, filename="fn.logic.json")


def stored(*triggers: dict) -> list[dict]:
    return manifest(*triggers).model_dump(mode="json", exclude_none=True)["triggers"]


def test_enabled_defaults_to_true_and_is_stored_only_when_false():
    assert stored({"type": "event", "event_name": "a"}, {"type": "event", "event_name": "b", "enabled": True}) == [
        {"type": "event", "event_name": "a"},
        {"type": "event", "event_name": "b"},
    ]
    assert stored({"type": "schedule", "cron": "* * * * *", "enabled": False}) == [
        {"type": "schedule", "cron": "* * * * *", "enabled": False}
    ]
    assert [t.enabled for t in manifest({"type": "event", "event_name": "a"}).triggers] == [True]


def test_window_is_stored_in_utc():
    assert stored(
        {
            "type": "schedule",
            "cron": "0 9 * * *",
            "timezone": "Europe/Berlin",
            "start_at": "2026-06-01T00:00:00",  # no offset: Berlin time (CEST)
            "end_at": "2026-07-01T00:00:00-04:00",
        }
    ) == [
        {
            "type": "schedule",
            "cron": "0 9 * * *",
            "timezone": "Europe/Berlin",
            "start_at": "2026-05-31T22:00:00.000000Z",
            "end_at": "2026-07-01T04:00:00.000000Z",
        }
    ]


@pytest.mark.parametrize(
    "trigger,problem",
    [
        (
            {"type": "schedule", "cron": "* * * * *", "start_at": "2026-06-02T00:00Z", "end_at": "2026-06-01T00:00Z"},
            "triggers.0.end_at: end_at (2026-06-01T00:00:00.000000Z) must be after start_at "
            "(2026-06-02T00:00:00.000000Z)",
        ),
        (
            {"type": "schedule", "cron": "* * * * *", "start_at": "2026-06-01T00:00Z", "end_at": "2026-06-01T00:00Z"},
            "triggers.0.end_at: end_at (2026-06-01T00:00:00.000000Z) must be after start_at",
        ),
        (
            {"type": "schedule", "cron": "0 0 * * *", "start_at": "2026-06-01T08:00Z", "end_at": "2026-06-01T09:00Z"},
            "triggers.0.end_at: cron '0 0 * * *' never fires between start_at and end_at",
        ),
        (
            {"type": "schedule", "cron": "* * * * *", "start_at": "next tuesday"},
            "triggers.0.start_at: 'next tuesday' is not an ISO 8601 date and time, such as 2026-06-01T08:00:00Z",
        ),
        ({"type": "schedule", "cron": "* * * * *", "end_at": 1767225600}, "triggers.0.end_at: Input should be a valid"),
        ({"type": "schedule", "cron": "* * * * *", "enabled": "no"}, "triggers.0.enabled: Input should be a valid"),
        ({"type": "event", "event_name": "e", "enabled": 0}, "triggers.0.enabled: Input should be a valid boolean"),
        ({"type": "event", "event_name": "e", "start_at": "2026-06-01"}, "triggers.0.start_at: Extra inputs"),
    ],
)
def test_bad_windows_and_flags_are_refused_naming_the_problem(trigger, problem):
    with pytest.raises(DeployError) as refused:
        manifest(trigger)
    assert [p for p in refused.value.problems if problem in p], refused.value.problems


def test_the_problem_names_the_line_of_the_field():
    window = {"start_at": "2026-06-02T00:00Z", "end_at": "2026-06-01T00:00Z"}
    text = json.dumps({"name": "fn", "triggers": [{"type": "schedule", "cron": "* * * * *", **window}]}, indent=2)
    with pytest.raises(DeployError) as refused:
        parse_manifest(json.loads(text), filename="fn.logic.json", text=text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if '"end_at"' in row)
    assert refused.value.problems[0].startswith(f"fn.logic.json:{line}: triggers.0.end_at: ")


NOW = datetime(2026, 1, 5, 12, 1, tzinfo=UTC)


def test_trigger_rows():
    rows = trigger_rows(
        manifest(
            {"type": "event", "event_name": "ping", "enabled": False},
            {"type": "schedule", "cron": "*/5 * * * *"},
            {"type": "schedule", "cron": "*/5 * * * *", "start_at": "2026-02-01T00:00Z", "end_at": "2026-03-01T00:00Z"},
            {"type": "schedule", "cron": "*/5 * * * *", "end_at": "2026-01-01T00:00Z"},  # over already
        ),
        NOW,
    )
    assert rows == [
        TriggerRow("event", event_name="ping", enabled=False),
        TriggerRow("schedule", cron="*/5 * * * *", next_fire_at="2026-01-05T12:05:00.000000Z"),
        TriggerRow(
            "schedule",
            cron="*/5 * * * *",
            next_fire_at="2026-02-01T00:00:00.000000Z",
            start_at="2026-02-01T00:00:00.000000Z",
            end_at="2026-03-01T00:00:00.000000Z",
        ),
        TriggerRow("schedule", cron="*/5 * * * *", next_fire_at=None, end_at="2026-01-01T00:00:00.000000Z"),
    ]
