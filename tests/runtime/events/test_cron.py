"""Cron helpers: a schedule's window (`next_fire_within`) and its ISO 8601 bounds (`parse_moment`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.events.cron import next_fire, next_fire_within, parse_moment


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_without_a_window_it_is_next_fire():
    after = at("2026-01-05T12:01:00")
    assert next_fire_within("*/5 * * * *", after) == next_fire("*/5 * * * *", after) == at("2026-01-05T12:05:00")


def test_a_tick_right_at_start_at_is_inside():
    start = at("2026-01-05T13:00:00")
    assert next_fire_within("*/5 * * * *", at("2026-01-05T12:01:00"), None, start) == start
    assert next_fire_within("*/5 * * * *", start, None, start) == at("2026-01-05T13:05:00")  # strictly after


def test_a_start_with_seconds_takes_the_next_whole_tick():
    start = at("2026-01-05T13:00:30")
    assert next_fire_within("* * * * *", at("2026-01-01T00:00:00"), None, start) == at("2026-01-05T13:01:00")


def test_end_at_is_inclusive_and_then_nothing():
    end = at("2026-01-05T12:10:00")
    assert next_fire_within("*/5 * * * *", at("2026-01-05T12:05:00"), None, None, end) == end
    assert next_fire_within("*/5 * * * *", end, None, None, end) is None
    assert next_fire_within("*/5 * * * *", end - timedelta(microseconds=1), None, None, end) == end


def test_the_window_and_a_time_zone():
    start, end = at("2026-01-05T23:00:00"), at("2026-01-08T00:00:00")
    ticks, after = [], at("2026-01-01T00:00:00")
    while (after := next_fire_within("0 9 * * *", after, "Europe/Berlin", start, end)) is not None:
        ticks.append(after)
    assert ticks == [at("2026-01-06T08:00:00"), at("2026-01-07T08:00:00")]


@pytest.mark.parametrize(
    "text,tz,expected",
    [
        ("2026-06-01T08:00:00Z", None, "2026-06-01T08:00:00+00:00"),
        ("2026-06-01T08:00:00+02:00", "America/New_York", "2026-06-01T06:00:00+00:00"),  # an offset wins
        ("2026-06-01T08:00:00", None, "2026-06-01T08:00:00+00:00"),  # no offset: UTC
        ("2026-06-01T08:00:00", "Europe/Berlin", "2026-06-01T06:00:00+00:00"),  # no offset: the trigger's zone
        ("2026-06-01", None, "2026-06-01T00:00:00+00:00"),
    ],
)
def test_parse_moment(text, tz, expected):
    assert parse_moment(text, tz).astimezone(UTC).isoformat() == expected


@pytest.mark.parametrize("text", ["soon", "2026-13-01T00:00:00Z", "", "2026-06-01T25:00"])
def test_parse_moment_names_the_problem(text):
    with pytest.raises(ValueError, match="is not an ISO 8601 date and time, such as 2026-06-01T08:00:00Z"):
        parse_moment(text)
