"""Cron expressions of schedule triggers: checking one, and its next tick.

Four or five fields (a minute is the finest schedule), read in an IANA time
zone (UTC by default), ticks computed with croniter and returned in UTC. A
schedule may have a window, `start_at` to `end_at` (both inclusive, either
open): `next_fire_within` finds no tick outside it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError


def normalize_cron(expr: str) -> str:
    """5 fields as usual; 4 fields mean `minute hour day month` on any weekday."""
    fields = expr.split()
    if len(fields) == 4:
        fields.append("*")
    if len(fields) != 5:
        raise ValueError(
            f"cron {expr!r} must have 4 or 5 fields (minute hour day month [weekday]); "
            "the finest schedule is once a minute"
        )
    normalized = " ".join(fields)
    if not croniter.is_valid(normalized):
        raise ValueError(f"cron {expr!r} is not a valid cron expression")
    try:  # valid fields can still name a day that never comes (`0 0 31 2 *`)
        croniter(normalized, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron {expr!r} never fires (no such date)") from None
    return normalized


def check_timezone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from None
    return name


def next_fire(cron: str, after: datetime, tz: str | None = None) -> datetime:
    """The first tick strictly after `after`, in UTC (cron read in `tz`, default UTC).

    When a time zone turns its clocks back, a wall-clock time happens twice; like cron,
    a tick at such a time fires once, at its first occurrence.
    """
    zone = ZoneInfo(tz) if tz else UTC
    ticks = croniter(cron, after.astimezone(zone))
    for _ in range(4):
        tick: datetime = ticks.get_next(datetime).astimezone(UTC)  # croniter is untyped
        wall = tick.astimezone(zone).replace(tzinfo=None)
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if first == tick:
            return tick
    return tick


def next_fire_within(
    cron: str, after: datetime, tz: str | None = None, start_at: datetime | None = None, end_at: datetime | None = None
) -> datetime | None:
    """The first tick strictly after `after` that is not before `start_at`; None if it would
    come after `end_at` (the window is over: the schedule never fires again)."""
    if start_at is not None and after < start_at:
        after = start_at - timedelta(microseconds=1)  # a tick right at start_at is in the window
    tick = next_fire(cron, after, tz)
    return None if end_at is not None and tick > end_at else tick


def parse_moment(text: str, tz: str | None = None) -> datetime:
    """An ISO 8601 date and time; without an offset it is read in `tz` (UTC by default)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not an ISO 8601 date and time, such as 2026-06-01T08:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz) if tz else UTC)
    return moment
