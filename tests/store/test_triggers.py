"""TriggerStore: due ticks carry their window and both enabled flags; a claim may end a schedule."""

from __future__ import annotations

from store.functions import TriggerRow

OWNER = "user:root"
WINDOW = {"start_at": "2026-01-01T00:00:00.000000Z", "end_at": "2026-02-01T00:00:00.000000Z"}


def deploy(store, **trigger):
    row = TriggerRow("schedule", cron="*/5 * * * *", next_fire_at="2026-01-05T12:05:00.000000Z", **trigger)
    return store.functions.deploy(OWNER, "ticker", {"name": "ticker"}, "def main():\n    return 1\n", [row], [])


def test_a_due_tick_carries_its_window(store):
    fn = deploy(store, **WINDOW)
    [tick] = store.triggers.due("2026-01-05T12:05:00.000000Z")
    assert (tick.function_id, tick.enabled, tick.start_at, tick.end_at) == (fn.id, True, *WINDOW.values())
    assert store.triggers.due("2026-01-05T12:04:59.999999Z") == []


def test_enabled_is_false_when_either_the_trigger_or_the_function_is_off(store):
    fn = deploy(store, enabled=False)
    assert [t.enabled for t in store.triggers.due("2026-01-06T00:00:00.000000Z")] == [False]
    fn = deploy(store)
    assert [t.enabled for t in store.triggers.due("2026-01-06T00:00:00.000000Z")] == [True]
    store.functions.set_enabled(fn.id, False)
    assert [t.enabled for t in store.triggers.due("2026-01-06T00:00:00.000000Z")] == [False]


def test_claiming_the_last_tick_of_a_window_ends_the_schedule(store):
    deploy(store, **WINDOW)
    [tick] = store.triggers.due("2026-01-05T12:05:00.000000Z")
    with store.transaction():
        assert store.triggers.claim_tick(tick.trigger_id, tick.next_fire_at, None)
    assert store.triggers.due("2099-01-01T00:00:00.000000Z") == []  # never due again
    with store.transaction():
        assert not store.triggers.claim_tick(tick.trigger_id, tick.next_fire_at, None)  # claimed once only
