"""Deliveries carried out: event runs, cron runs, and targets that went away meanwhile.

Runs go to an InProcessPool, but where a delivery waits for a worker (real workers there)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runtime.events.dispatcher import schedule_window
from runtime.manifest import files_from_json, trigger_rows
from runtime.service import Service
from store import Settings, Store
from store.clock import iso
from tests.support import in_process_service


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("home"), run_timeout_s=2, workers=2, webhook_allow_private=True)
    Store.initialize(settings)[0].close()
    clock = Clock()
    service = in_process_service(settings, clock=clock)
    yield service, service.actor(), clock
    service.close()


def deploy(service, actor, name, source, triggers):
    return service.deploy_function(actor, files_from_json({"name": name, "source": source, "triggers": triggers}))


def test_event_delivery_runs_the_function_once(world):
    service, actor, _ = world
    deploy(
        service,
        actor,
        "echo",
        "def main(event):\n    return [event.name, event.data]\n",
        [{"type": "event", "event_name": "ping"}],
    )
    accepted = service.publish_event(actor, "ping", "hello")
    assert service.dispatcher().drain() == 1
    [run] = service.function_runs(actor, "echo")
    assert run["status"] == "success" and run["result"] == ["ping", "hello"]
    assert run["trigger"]["event_id"] == accepted["id"]
    [delivery] = service.store.events.deliveries_of(accepted["id"])
    assert (delivery["status"], delivery["run_id"]) == ("done", run["id"])
    assert service.dispatcher().drain() == 0  # nothing runs twice


def test_exact_match_for_functions_and_owner_scope(world):
    service, actor, _ = world
    deploy(service, actor, "exact", "def main(event):\n    return 1\n", [{"type": "event", "event_name": "exact"}])
    assert service.publish_event(actor, "exact/more", None)["deliveries"] == 0
    assert service.publish_event(actor, "exac", None)["deliveries"] == 0
    other = service.create_user(actor, "other-user")
    assert service.publish_event(other, "exact", None)["deliveries"] == 0  # another tenant's event
    assert service.publish_event(actor, "exact", None)["deliveries"] == 1
    service.dispatcher().drain()


def test_cron_tick_runs_with_the_scheduled_context(world):
    service, actor, clock = world
    deploy(
        service,
        actor,
        "every-minute",
        "def main(scheduled, trigger):\n    return [scheduled.scheduled_at, scheduled.cron, trigger.type]\n",
        [{"type": "schedule", "cron": "* * * * *"}],
    )
    scheduler = service.scheduler(clock=clock)
    clock.now = datetime(2026, 3, 1, 12, 1, 0, tzinfo=UTC)
    assert scheduler.tick() == 1
    service.dispatcher().drain()
    [run] = service.function_runs(actor, "every-minute")
    assert run["result"] == ["2026-03-01T12:01:00.000000Z", "* * * * *", "schedule"]
    assert run["trigger"] == {
        "type": "schedule",
        "event_id": None,
        "scheduled_at": "2026-03-01T12:01:00.000000Z",
        "cron": "* * * * *",
        "event": None,
        "ledger_change": None,
    }


def deploy_rows(service, actor, name, source, triggers):
    """Deploy as the service does, with the rows `runtime.manifest.trigger_rows` writes
    (per-trigger `enabled`, schedule windows)."""
    files = files_from_json({"name": name, "source": source, "triggers": triggers})
    manifest = files.manifest.model_dump(mode="json", exclude_none=True)
    rows = trigger_rows(files.manifest, service.clock())
    return service.store.functions.deploy(service.owner_for(actor), name, manifest, files.source, rows, [])


def test_a_tick_runs_with_its_schedules_window(world):
    service, actor, clock = world
    source = "def main(scheduled):\n    return [scheduled.scheduled_at, scheduled.start_at, scheduled.end_at]\n"
    clock.now = datetime(2026, 4, 1, 0, 0, 30, tzinfo=UTC)
    deploy_rows(
        service,
        actor,
        "windowed",
        source,
        [
            # Two schedules with one cron: the tick names the one whose window holds it.
            {"type": "schedule", "cron": "*/5 * * * *", "start_at": "2026-04-01T00:00Z", "end_at": "2026-04-01T00:05Z"},
            {"type": "schedule", "cron": "*/5 * * * *", "start_at": "2026-04-01T00:10Z"},
        ],
    )
    scheduler = service.scheduler(clock=clock)
    for minute in (5, 10):
        clock.now = datetime(2026, 4, 1, 0, minute, tzinfo=UTC)
        assert scheduler.tick() >= 1  # other tests' schedules share this world
        service.dispatcher().drain()
    assert sorted(run["result"] for run in service.function_runs(actor, "windowed")) == [
        ["2026-04-01T00:05:00.000000Z", "2026-04-01T00:00:00.000000Z", "2026-04-01T00:05:00.000000Z"],
        ["2026-04-01T00:10:00.000000Z", "2026-04-01T00:10:00.000000Z", None],
    ]


def test_schedule_window_picks_the_trigger_that_fired():
    manifest = {
        "triggers": [
            {"type": "event", "event_name": "x"},
            {"type": "schedule", "cron": "* * * * *", "end_at": "2026-01-01T00:00:00.000000Z", "enabled": False},
            {"type": "schedule", "cron": "* * * * *", "start_at": "2026-02-01T00:00:00.000000Z"},
        ]
    }
    assert schedule_window(manifest, "* * * * *", "2026-03-01T00:00:00.000000Z") == {
        "start_at": "2026-02-01T00:00:00.000000Z",
        "end_at": None,
    }
    assert schedule_window(manifest, "0 * * * *", "2026-03-01T00:00:00.000000Z") == {"start_at": None, "end_at": None}


def test_a_disabled_event_trigger_does_not_match(world):
    service, actor, _ = world
    source = "def main(event):\n    return event.name\n"
    deploy_rows(
        service,
        actor,
        "half-on",
        source,
        [
            {"type": "event", "event_name": "half-off", "enabled": False},
            {"type": "event", "event_name": "half-on"},
        ],
    )
    assert service.publish_event(actor, "half-off", None)["deliveries"] == 0
    assert service.publish_event(actor, "half-on", None)["deliveries"] == 1
    service.dispatcher().drain()
    assert [run["result"] for run in service.function_runs(actor, "half-on")] == ["half-on"]


def test_a_disabled_function_with_an_enabled_trigger_stays_off(world):
    service, actor, _ = world
    fn = deploy_rows(
        service,
        actor,
        "all-off",
        "def main(event):\n    return 1\n",
        [
            {"type": "event", "event_name": "all-off", "enabled": True},
        ],
    )
    service.store.functions.set_enabled(fn.id, False)
    assert service.publish_event(actor, "all-off", None)["deliveries"] == 0


def test_deleted_or_disabled_function_fails_its_delivery_with_a_reason(world):
    service, actor, _ = world
    deploy(service, actor, "gone", "def main(event):\n    return 1\n", [{"type": "event", "event_name": "gone"}])
    deploy(service, actor, "off", "def main(event):\n    return 1\n", [{"type": "event", "event_name": "off"}])
    gone = service.publish_event(actor, "gone", None)
    off = service.publish_event(actor, "off", None)
    service.delete_function(actor, "gone")
    service.set_function_enabled(actor, "off", False)
    service.dispatcher().drain()
    [d_gone] = service.store.events.deliveries_of(gone["id"])
    [d_off] = service.store.events.deliveries_of(off["id"])
    assert d_gone["status"] == "failed" and "does not exist" in d_gone["last_error"]
    assert d_off["status"] == "failed" and "disabled" in d_off["last_error"]
    assert service.function_runs(actor, "off") == []


def test_a_run_publishing_events_feeds_the_next_function(world):
    service, actor, _ = world
    deploy(
        service,
        actor,
        "first",
        "import logic\ndef main(event):\n    logic.publish('second-step', event.data + '!')\n",
        [{"type": "event", "event_name": "first-step"}],
    )
    deploy(
        service,
        actor,
        "second",
        "def main(event):\n    return event.data\n",
        [{"type": "event", "event_name": "second-step"}],
    )
    service.publish_event(actor, "first-step", "go")
    assert service.dispatcher().drain() == 2
    [run] = service.function_runs(actor, "second")
    assert run["result"] == "go!"
    event = service.store.events.event(run["trigger"]["event_id"])
    assert event["depth"] == 1 and event["source"].startswith("run:")


def test_a_function_deleted_while_it_runs_still_audits_its_secret_reads(world, monkeypatch):
    from store.errors import NotFound

    service, actor, _ = world
    service.create_secret(actor, "RACE_KEY", "race-secret-value-1234")
    fn = service.deploy_function(
        actor,
        files_from_json(
            {
                "name": "slow-reader",
                "secrets": ["RACE_KEY"],
                "source": "def main(secrets):\n    return len(secrets.RACE_KEY)\n",
            }
        ),
    )
    real_run = service.pool.run

    def delete_at_the_read(job, on_secret, on_start=None, on_ledger=None):  # the run is surely under way then
        def read(name):
            service.delete_function(actor, fn.id)
            return on_secret(name)

        return real_run(job, read, on_start, on_ledger)

    monkeypatch.setattr(service.pool, "run", delete_at_the_read)
    with pytest.raises(NotFound, match="deleted while it ran"):
        service.execute_function(actor, "slow-reader")
    [access] = service.audit(actor, "RACE_KEY")
    assert access.consumer_name == "slow-reader" and access.run_id


def test_a_full_queue_refuses_events_from_runs_too(tmp_path):
    settings = Settings(home=tmp_path / "home", run_timeout_s=2, workers=1, queue_max_pending=3)
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    try:
        actor = service.actor()
        # A function that publishes its own trigger 5 times would grow as 5^n without a bound.
        deploy(
            service,
            actor,
            "amplifier",
            "import logic\ndef main(event):\n    for _ in range(5):\n        logic.publish('amp', 'x')\n",
            [{"type": "event", "event_name": "amp"}],
        )
        service.publish_event(actor, "amp", "go")
        service.dispatcher().step()
        [run] = service.function_runs(actor, "amplifier")
        assert run["status"] == "error" and "queue is full" in run["error"]["message"]
        assert service.store.events.open_deliveries() <= settings.queue_max_pending
    finally:
        service.close()


def test_a_response_event_the_bus_refuses_still_stores_the_log_and_the_audit(world, receiver):
    service, actor, _ = world
    try:
        service.create_secret(actor, "HOOK_KEY", "hook-key-value-0987")
        url = receiver.url + "/in"
        # A hook event fires no webhook, so the refused name comes from a responseTopic.
        topics = {"first": {}, "second": {"responseTopic": "{{{PARTICLE_EVENT_NAME}}}/{{{PARTICLE_EVENT_NAME}}}"}}
        for name, extra in topics.items():
            service.create_integration(
                actor,
                {
                    "name": name,
                    "event": "a" * 10,
                    "url": url,
                    "secrets": ["HOOK_KEY"],
                    "headers": {"X-Key": "{{{HOOK_KEY}}}"},
                    **extra,
                },
            )
        service.publish_event(actor, "a" * 60, "x")
        service.dispatcher().drain()
        # second's response would be named aaa.../aaa... (121 characters)
        [log] = service.integration_logs(actor, "second")
        assert log["ok"] and "response event not published" in log["error"]
        assert {a.consumer_name for a in service.audit(actor, "HOOK_KEY")} == {"first", "second"}
    finally:
        for name in ("first", "second"):
            service.delete_integration(actor, name)


def test_waiting_for_a_worker_does_not_use_up_the_lease(tmp_path):
    import time

    # One worker, two delivery threads, a lease of exactly the run timeout: the second
    # delivery waits ~0.7 s for the worker. Counted from the claim, its lease would run
    # out during its own run and the other thread would claim and run it again.
    settings = Settings(
        home=tmp_path / "home",
        workers=1,
        run_timeout_s=1,
        delivery_lease_s=1,
        webhook_timeout_s=0.1,
        webhook_retries=0,
        runs_in_flight_per_owner=2,  # both threads claim at once: one delivery then waits for the worker
    )
    Store.initialize(settings)[0].close()
    service = Service.open(settings, runtime=True)
    try:
        actor = service.actor()
        deploy(
            service,
            actor,
            "slow",
            "import time\ndef main(event):\n    time.sleep(0.7)\n    return event.data\n",
            [{"type": "event", "event_name": "go"}],
        )
        for n in range(2):
            service.publish_event(actor, "go", str(n))
        dispatcher = service.dispatcher(threads=2, poll_s=0.05)
        dispatcher.start()
        deadline = time.monotonic() + 10
        while service.store.events.open_deliveries() and time.monotonic() < deadline:
            time.sleep(0.05)
        # A wrongly expired lease is claimed again while its first run is still going (about
        # 1.0 s in, before that run ends at 1.4 s); stop() lets every run in flight finish, so
        # such a second run would be recorded below.
        dispatcher.stop()
        runs = service.function_runs(actor, "slow")
        assert sorted(r["result"] for r in runs) == ["0", "1"]
    finally:
        service.close()


def test_a_run_right_after_its_claim_skips_the_lease_renewal(world, monkeypatch):
    import time

    service, actor, clock = world
    deploy(service, actor, "renewal", "def main(event):\n    return 1\n", [{"type": "event", "event_name": "renew"}])
    renewed = []
    real_renew = service.store.events.renew
    monkeypatch.setattr(
        service.store.events, "renew", lambda *args, **kw: (renewed.append(args[0]), real_renew(*args, **kw))
    )
    dispatcher = service.dispatcher()
    service.publish_event(actor, "renew", "fresh")
    assert dispatcher.drain() == 1
    assert renewed == []  # claimed a moment ago: all but a sliver of the lease is left
    service.publish_event(actor, "renew", "waited")
    (delivery,) = service.store.events.claim(iso(clock()), iso(clock() + dispatcher.lease))
    dispatcher.deliver(delivery, claimed_at=time.monotonic() - 5)  # as if it waited 5 s for a worker
    assert renewed == [delivery.id]
    assert [r["status"] for r in service.function_runs(actor, "renewal")] == ["success", "success"]


def test_history_past_its_retention_is_pruned(tmp_path):
    from datetime import timedelta

    from store.clock import iso, utcnow
    from store.secrets import Access

    clock = Clock()
    clock.now = utcnow()  # events are stamped with the real time
    settings = Settings(home=tmp_path / "home", event_retention_days=7, audit_retention_days=5)
    Store.initialize(settings)[0].close()
    service = Service.open(settings, clock=clock)
    try:
        actor = service.actor()
        service.create_secret(actor, "OLD_KEY", "old-key-value-123")
        service.store.secrets.record_access(
            [Access(actor.owner, "OLD_KEY", "logic_function", "f", "f", "r1", iso(clock.now - timedelta(days=4)))]
        )
        service.publish_event(actor, "nobody-listens", None)
        assert service.prune_history() == {
            "events_and_deliveries": 0,
            "audit_rows": 0,
            "console_sessions": 0,
            "change_rows": 0,
        }
        clock.now += timedelta(days=8)
        assert service.prune_history() == {
            "events_and_deliveries": 1,
            "audit_rows": 1,
            "console_sessions": 0,
            "change_rows": 0,
        }
        assert service.get_secret(actor, "OLD_KEY").last_accessed_at is not None  # kept
    finally:
        service.close()


def test_a_trigger_name_longer_than_the_operators_limit_is_refused_at_deploy(tmp_path):
    from store.errors import DeployError

    settings = Settings(home=tmp_path / "home", event_name_max_chars=16)
    Store.initialize(settings)[0].close()
    service = Service.open(settings)
    try:
        with pytest.raises(DeployError, match="triggers.0.event_name: event name must be 1-16 characters"):
            service.check_function(
                service.actor().owner,
                files_from_json(
                    {
                        "name": "long",
                        "source": "def main(event):\n    return 1\n",
                        "triggers": [{"type": "event", "event_name": "x" * 17}],
                    }
                ),
            )
    finally:
        service.close()
