import re
from datetime import UTC, datetime, timedelta, timezone

from store.clock import iso, now_iso, parse_iso

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_now_iso_is_the_store_format_and_agrees_with_iso():
    before = datetime.now(UTC)
    stamp = now_iso()
    after = datetime.now(UTC)
    assert STAMP.match(stamp), stamp
    assert before <= parse_iso(stamp) <= after
    assert iso(parse_iso(stamp)) == stamp


def test_iso_converts_other_zones_to_utc_and_sorts_as_text():
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2026, 3, 29, 3, 30, tzinfo=plus_two)) == "2026-03-29T01:30:00.000000Z"
    stamps = [iso(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=n)) for n in (0, 9, 10, 999_999)]
    assert stamps == sorted(stamps)
