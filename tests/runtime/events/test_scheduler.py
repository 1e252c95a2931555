"""Cron ticks: on time, once per tick, across restarts, missed ticks caught up once."""

from datetime import UTC, datetime

import pytest

from runtime.events.cron import next_fire
from runtime.events.scheduler import Scheduler
from runtime.manifest import files_from_json, trigger_rows
from store import Settings, Store
from store.clock import iso
from store.functions import TriggerRow


class Clock:
    def __init__(self, moment: datetime):
        self.now = moment

    def __call__(self) -> datetime:
        return self.now

    def set(self, text: str) -> None:
        self.now = datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def home(tmp_path):
    settings = Settings(home=tmp_path / "home")
    store, _ = Store.initialize(settings)
    store.close()
    return settings


def open_parts(settings):
    store = Store.open(settings)
    return store, store.functions, store.events


def deploy(functions, clock, cron="*/5 * * * *", tz=None, name="ticker"):
    row = TriggerRow("schedule", cron=cron, timezone=tz, next_fire_at=iso(next_fire(cron, clock(), tz)))
    manifest = {"name": name, "triggers": [{"type": "schedule", "cron": cron}]}
    return functions.deploy("user:root", name, manifest, "def main(scheduled):\n    return 1\n", [row], [])


def scheduled_runs(store):
    return [
        tuple(r)
        for r in store.db.all("SELECT scheduled_at, cron FROM deliveries WHERE target_kind = 'function' ORDER BY id")
    ]


def test_fires_on_time_and_once_per_tick(home):
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    deploy(functions, clock)
    scheduler = Scheduler(store, clock=clock)

    clock.set("2026-01-05T12:04:59")
    assert scheduler.tick() == 0
    clock.set("2026-01-05T12:05:00")
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0  # same instant again: already fired
    clock.set("2026-01-05T12:09:59")
    assert scheduler.tick() == 0
    clock.set("2026-01-05T12:10:00.5")
    assert scheduler.tick() == 1
    assert scheduled_runs(store) == [
        ("2026-01-05T12:05:00.000000Z", "*/5 * * * *"),
        ("2026-01-05T12:10:00.000000Z", "*/5 * * * *"),
    ]


def test_restart_does_not_fire_a_tick_twice(home):
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    deploy(functions, clock)
    clock.set("2026-01-05T12:05:01")
    assert Scheduler(store, clock=clock).tick() == 1
    store.close()

    store, _, events = open_parts(home)  # a new process, same database
    assert Scheduler(store, clock=clock).tick() == 0
    clock.set("2026-01-05T12:10:00")
    assert Scheduler(store, clock=clock).tick() == 1
    assert len(scheduled_runs(store)) == 2


def test_missed_ticks_fire_once_on_start_up(home):
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    deploy(functions, clock)
    clock.set("2026-01-05T13:02:00")  # down from 12:01 to 13:02: twelve ticks missed
    scheduler = Scheduler(store, clock=clock)
    assert scheduler.tick() == 1
    assert scheduler.tick() == 0
    assert scheduled_runs(store) == [("2026-01-05T12:05:00.000000Z", "*/5 * * * *")]
    nxt = store.db.one("SELECT next_fire_at FROM triggers")[0]
    assert nxt == "2026-01-05T13:05:00.000000Z"  # continues from now


def test_two_schedulers_on_one_database_fire_once(home):
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store_a, functions, events_a = open_parts(home)
    store_b, _, events_b = open_parts(home)
    deploy(functions, clock)
    clock.set("2026-01-05T12:05:00")
    a = Scheduler(store_a, clock=clock)
    b = Scheduler(store_b, clock=clock)
    assert a.tick() + b.tick() == 1
    assert len(scheduled_runs(store_a)) == 1


def test_timezone_and_disabled_functions(home):
    clock = Clock(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    store, functions, events = open_parts(home)
    fn = deploy(functions, clock, cron="0 9 * * *", tz="Europe/Berlin", name="morning")
    scheduler = Scheduler(store, clock=clock)
    clock.set("2026-01-05T07:59:59")
    assert scheduler.tick() == 0
    clock.set("2026-01-05T08:00:00")  # 09:00 in Berlin (CET, UTC+1)
    assert scheduler.tick() == 1
    functions.set_enabled(fn.id, False)
    clock.set("2026-01-06T08:00:00")
    assert scheduler.tick() == 0  # a disabled function's tick passes without a run
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] == "2026-01-07T08:00:00.000000Z"


def test_a_repeated_wall_clock_hour_fires_once():
    # Europe/Berlin turns its clocks back at 03:00 CEST on 2026-10-25: 02:30 happens twice.
    after = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    first = next_fire("30 2 * * *", after, "Europe/Berlin")
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert next_fire("30 2 * * *", first, "Europe/Berlin") == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_redeploying_the_same_schedule_keeps_its_next_tick(home):
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    deploy(functions, clock)  # next tick 12:05
    clock.set("2026-01-05T12:05:30")  # the tick is due, and then the author redeploys
    deploy(functions, clock)  # a fresh computation would say 12:10 and skip the 12:05 tick
    assert Scheduler(store, clock=clock).tick() == 1
    assert scheduled_runs(store) == [("2026-01-05T12:05:00.000000Z", "*/5 * * * *")]
    deploy(functions, clock, cron="*/10 * * * *")  # a changed schedule starts afresh
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] == "2026-01-05T12:10:00.000000Z"


# windows (start_at/end_at) and per-trigger enabled ----------------------------------------


def deploy_rows(store, clock, name="window", **trigger):
    """Deploy through runtime.manifest: the rows a deploy writes, first tick inside the window."""
    files = files_from_json({"name": name, "source": "def main():\n    return 1\n", "triggers": [trigger]})
    manifest = files.manifest.model_dump(mode="json", exclude_none=True)
    return store.functions.deploy("user:root", name, manifest, files.source, trigger_rows(files.manifest, clock()), [])


def test_ticks_before_start_at_and_after_end_at_do_not_fire(home):
    clock = Clock(datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC))
    store, functions, events = open_parts(home)
    deploy_rows(
        store,
        clock,
        type="schedule",
        cron="*/5 * * * *",
        start_at="2026-01-05T12:10:00Z",
        end_at="2026-01-05T12:20:00Z",
    )
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] == "2026-01-05T12:10:00.000000Z"
    scheduler = Scheduler(store, clock=clock)
    for moment in ["12:05:00", "12:10:00", "12:15:00", "12:20:00", "12:25:00", "13:00:00"]:
        clock.set(f"2026-01-05T{moment}")
        scheduler.tick()
    assert [at for at, _ in scheduled_runs(store)] == [
        "2026-01-05T12:10:00.000000Z",  # start_at and end_at are inside the window
        "2026-01-05T12:15:00.000000Z",
        "2026-01-05T12:20:00.000000Z",
    ]
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] is None  # over: never due again


def test_a_window_read_in_the_triggers_time_zone(home):
    clock = Clock(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    store, functions, events = open_parts(home)
    # 09:00 Berlin (08:00 UTC) daily, from the 6th, 00:00 Berlin (5th, 23:00 UTC).
    deploy_rows(store, clock, type="schedule", cron="0 9 * * *", timezone="Europe/Berlin", start_at="2026-01-06T00:00")
    assert tuple(store.db.one("SELECT start_at, next_fire_at FROM triggers")) == (
        "2026-01-05T23:00:00.000000Z",
        "2026-01-06T08:00:00.000000Z",
    )


def test_a_tick_already_past_the_window_when_deployed(home):
    clock = Clock(datetime(2026, 3, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    window = {"start_at": "2026-01-01T00:00Z", "end_at": "2026-02-01T00:00Z"}
    deploy_rows(store, clock, type="schedule", cron="* * * * *", **window)
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] is None
    assert Scheduler(store, clock=clock).tick() == 0


def test_a_tick_computed_without_its_window_is_passed_by(home):
    # A next time written before the trigger had a window (or by an older deploy): it is
    # claimed, unrun, and the schedule moves to the window's first tick.
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    row = TriggerRow(
        "schedule",
        cron="*/5 * * * *",
        next_fire_at="2026-01-05T12:05:00.000000Z",
        start_at="2026-01-05T13:00:00.000000Z",
    )
    functions.deploy("user:root", "early", {"name": "early"}, "def main():\n    return 1\n", [row], [])
    clock.set("2026-01-05T12:05:00")
    assert Scheduler(store, clock=clock).tick() == 0
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] == "2026-01-05T13:00:00.000000Z"


def test_a_disabled_schedule_does_not_fire_but_keeps_time(home):
    clock = Clock(datetime(2026, 1, 5, 12, 1, tzinfo=UTC))
    store, functions, events = open_parts(home)
    deploy_rows(store, clock, type="schedule", cron="*/5 * * * *", enabled=False)
    scheduler = Scheduler(store, clock=clock)
    clock.set("2026-01-05T12:05:00")
    assert scheduler.tick() == 0
    assert store.db.one("SELECT next_fire_at FROM triggers")[0] == "2026-01-05T12:10:00.000000Z"  # passed by
    deploy_rows(store, clock, type="schedule", cron="*/5 * * * *")  # enabled again: no catch-up of passed ticks
    clock.set("2026-01-05T12:10:00")
    assert scheduler.tick() == 1
    assert scheduled_runs(store) == [("2026-01-05T12:10:00.000000Z", "*/5 * * * *")]
