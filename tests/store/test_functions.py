"""FunctionStore's triggers: per-trigger `enabled`, schedule windows, and what a redeploy keeps."""

from __future__ import annotations

from store.functions import TriggerRow

OWNER = "user:root"
SOURCE = "def main(event):\n    return 1\n"


def deploy(store, triggers, name="fn"):
    return store.functions.deploy(OWNER, name, {"name": name}, SOURCE, triggers, [])


def test_triggers_keep_enabled_and_window(store):
    rows = [
        TriggerRow("event", event_name="on"),
        TriggerRow("event", event_name="off", enabled=False),
        TriggerRow(
            "schedule",
            cron="* * * * *",
            next_fire_at="2026-06-01T08:00:00.000000Z",
            start_at="2026-06-01T08:00:00.000000Z",
            end_at="2026-07-01T00:00:00.000000Z",
            enabled=False,
        ),
    ]
    fn = deploy(store, rows)
    assert store.functions.triggers(fn.id) == rows


def test_a_disabled_event_trigger_does_not_match(store):
    fn = deploy(store, [TriggerRow("event", event_name="on"), TriggerRow("event", event_name="off", enabled=False)])
    assert store.functions.for_event(OWNER, "on") == [fn.id]
    assert store.functions.for_event(OWNER, "off") == []
    # Another enabled trigger of the same name still matches.
    deploy(store, [TriggerRow("event", event_name="off", enabled=False), TriggerRow("event", event_name="off")])
    assert store.functions.for_event(OWNER, "off") == [fn.id]


def test_the_functions_own_enabled_still_applies(store):
    fn = deploy(store, [TriggerRow("event", event_name="on")])
    store.functions.set_enabled(fn.id, False)
    assert store.functions.for_event(OWNER, "on") == []


def schedule(next_fire_at, **window):
    return TriggerRow("schedule", cron="*/5 * * * *", next_fire_at=next_fire_at, **window)


def next_ticks(store, fn):
    return [t.next_fire_at for t in store.functions.triggers(fn.id)]


def test_a_redeploy_keeps_the_next_tick_of_an_unchanged_window(store):
    window = {"start_at": "2026-01-01T00:00:00.000000Z", "end_at": "2026-02-01T00:00:00.000000Z"}
    fn = deploy(store, [schedule("2026-01-05T12:05:00.000000Z", **window)])
    deploy(store, [schedule("2026-01-05T12:10:00.000000Z", **window)])
    assert next_ticks(store, fn) == ["2026-01-05T12:05:00.000000Z"]
    # Disabling the trigger keeps its tick too: it goes on passing ticks by, unrun.
    deploy(store, [schedule("2026-01-05T12:10:00.000000Z", enabled=False, **window)])
    assert next_ticks(store, fn) == ["2026-01-05T12:05:00.000000Z"]


def test_a_changed_window_starts_afresh(store):
    ended = {"start_at": "2026-01-01T00:00:00.000000Z", "end_at": "2026-01-02T00:00:00.000000Z"}
    fn = deploy(store, [schedule(None, **ended)])  # a window that is over: no next tick
    longer = {**ended, "end_at": "2027-01-01T00:00:00.000000Z"}
    deploy(store, [schedule("2026-01-05T12:05:00.000000Z", **longer)])
    assert next_ticks(store, fn) == ["2026-01-05T12:05:00.000000Z"]
