"""Run replay (runtime/execution/trigger_input.py): a stored run keeps its trigger input,
redacted for display and sealed for replay; `replay_run` runs the function's current
version again with it as a new run marked `replay_of`. Every refusal runs nothing.

The service runs on the real worker pool (a module-scoped home): the leak checks read the
database file itself."""

from __future__ import annotations

import json
import sqlite3

import pytest

from runtime.manifest import files_from_json
from store.errors import Conflict, DecryptionError, NotFound
from store.sensitive import MASK
from tests.conftest import BACKENDS
from tests.support import runtime_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


SECRET = "replay-secret-value-3b9d1f7e"
ECHO = """import logic


def main(event, scheduled, trigger, secrets):
    logic.log.info("seen", event.data if event else None, "key", secrets.KEY)
    return {
        "version": VERSION,
        "type": trigger.type,
        "event": None if event is None else [event.id, event.name, event.data, event.source, event.published_at],
        "scheduled": None if scheduled is None else [scheduled.scheduled_at, scheduled.cron],
    }
"""


def echo(version: int, triggers: list | None = None):
    source = ECHO.replace("VERSION", str(version))
    return files_from_json(
        {
            "name": "echo",
            "secrets": ["KEY"],
            "source": source,
            "triggers": triggers or [{"type": "event", "event_name": "replay-in"}],
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    service = runtime_service(tmp_path_factory, "replay", workers=2, run_timeout_s=10.0)
    try:
        admin = service.actor()
        alice = service.create_user(admin, "alice")
        bob = service.create_user(admin, "bob")
        service.create_secret(alice, "KEY", SECRET)
        service.create_secret(bob, "KEY", "bob-key-value-0a1b2c3d")
        service.deploy_function(alice, echo(1))
        yield service, alice, bob
    finally:
        service.close()


def run_count(service) -> int:
    return service.store.db.one("SELECT COUNT(*) FROM runs")[0]


def database_bytes(service) -> bytes:
    home = service.settings.home
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.name.startswith("logic.db"))


def test_an_event_run_replays_on_the_current_version_with_the_same_event(world):
    service, alice, _ = world
    accepted = service.publish_event(alice, "replay-in", '{"reading": 21.5}')
    service.dispatcher().drain()
    (original,) = [r for r in service.function_runs(alice, "echo") if r["trigger"]["event_id"] == accepted["id"]]
    assert original["status"] == "success" and original["result"]["version"] == 1
    stored = service.store.events.event(accepted["id"])
    assert original["trigger"]["event"] == {
        "name": "replay-in",
        "data": '{"reading": 21.5}',
        "source": "user:alice",
        "published_at": stored["published_at"],
    }
    service.deploy_function(alice, echo(2))  # the replay runs what is deployed now

    replay = service.replay_run(alice, original["id"])
    assert replay["id"] != original["id"] and replay["replay_of"] == original["id"]
    assert replay["status"] == "success", replay["error"]
    assert replay["function_version"] == 2 and replay["result"]["version"] == 2
    assert replay["result"]["event"] == original["result"]["event"]  # id, name, data, source, time
    assert replay["result"]["type"] == "event" and replay["trigger"] == original["trigger"]
    assert service.get_run(alice, replay["id"]) == replay  # stored, listed with its mark
    assert service.function_runs(alice, "echo", limit=1)[0]["replay_of"] == original["id"]

    again = service.replay_run(alice, replay["id"])  # a replay is a run like any other
    assert again["replay_of"] == replay["id"] and again["result"]["event"] == original["result"]["event"]


def test_a_schedule_run_replays_its_tick_and_a_manual_run_its_nothing(world):
    service, alice, _ = world
    fn = service.get_function(alice, "echo")
    tick = "2026-12-01T12:05:00.000000Z"
    ticked = service.engine.run(fn, {"type": "schedule"}, scheduled={"scheduled_at": tick, "cron": "*/5 * * * *"})
    replay = service.replay_run(alice, ticked["id"])
    assert replay["result"]["scheduled"] == [tick, "*/5 * * * *"] and replay["result"]["type"] == "schedule"
    assert replay["trigger"]["scheduled_at"] == tick and replay["trigger"]["cron"] == "*/5 * * * *"

    manual = service.execute_function(alice, "echo")
    replay = service.replay_run(alice, manual["id"])
    assert replay["result"]["event"] is None and replay["result"]["type"] == "manual"


def test_the_raw_input_is_sealed_and_the_display_copy_redacted(world):
    service, alice, _ = world
    # A publisher put the secret value into the event data (a manual run: no event row).
    data = json.dumps({"leaked": SECRET, "plain": "visible-part"})
    record = service.execute_function(alice, "echo", event_name="replay-in", data=data)
    assert record["trigger"]["event"]["data"] == json.dumps({"leaked": MASK, "plain": "visible-part"})
    replay = service.replay_run(alice, record["id"])
    assert replay["status"] == "success"
    assert SECRET not in json.dumps(replay) and "visible-part" in json.dumps(replay)
    assert SECRET.encode() not in database_bytes(service)
    raw = service.store.db.one("SELECT input FROM runs WHERE id = ?", (record["id"],))[0]
    assert raw is not None and b"replay-in" not in bytes(raw)  # sealed: not even the event name shows


def test_unknown_foreign_and_inputless_runs_are_refused_and_nothing_runs(world):
    service, alice, bob = world
    run = service.execute_function(alice, "echo")
    before = run_count(service)
    with pytest.raises(NotFound, match="run no-such-run does not exist, so it cannot be replayed"):
        service.replay_run(alice, "no-such-run")
    with pytest.raises(NotFound, match="cannot be replayed"):
        service.replay_run(bob, run["id"])  # another owner's run: as unknown
    with pytest.raises(NotFound):
        service.replay_run(alice, run["id"], ref="some-other-function")
    # A run stored before inputs were kept (migration 13): its record, no input.
    fn = service.get_function(alice, "echo")
    service.store.functions.add_run({**run, "id": "old-run", "started_at": "2020-01-01T00:00:00.000000Z"})
    with pytest.raises(Conflict, match="old-run has no recorded input"):
        service.replay_run(alice, "old-run")
    assert run_count(service) == before + 1 and fn.id == run["function_id"]


def test_a_deleted_functions_run_is_a_clear_error(world):
    service, alice, _ = world
    service.deploy_function(alice, files_from_json({"name": "doomed", "source": "def main():\n    return 1\n"}))
    run = service.execute_function(alice, "doomed")
    service.delete_function(alice, "doomed")
    before = run_count(service)
    with pytest.raises(NotFound) as refused:
        service.replay_run(alice, run["id"])
    assert refused.value.message == (
        f"run {run['id']} does not exist, so it cannot be replayed (a function's runs are deleted with it)"
    )
    assert run_count(service) == before


def test_an_input_moved_to_another_run_fails_to_decrypt(world):
    service, alice, _ = world
    first = service.execute_function(alice, "echo", event_name="replay-in", data="first")
    second = service.execute_function(alice, "echo", event_name="replay-in", data="second")
    conn = sqlite3.connect(service.settings.db_path)
    try:
        with conn:
            conn.execute(
                "UPDATE runs SET input = (SELECT input FROM runs WHERE id = ?) WHERE id = ?",
                (first["id"], second["id"]),
            )
    finally:
        conn.close()
    before = run_count(service)
    with pytest.raises(DecryptionError, match=f"the input of run {second['id']} cannot be decrypted"):
        service.replay_run(alice, second["id"])
    assert run_count(service) == before
    assert service.replay_run(alice, first["id"])["result"]["event"][2] == "first"


def test_key_rotation_reseals_run_inputs_and_drops_one_that_no_longer_decrypts(world):
    service, alice, _ = world
    record = service.execute_function(alice, "echo", event_name="replay-in", data="before rotation")
    broken = service.execute_function(alice, "echo", event_name="replay-in", data="to be broken")
    service.store.db.execute("UPDATE runs SET input = x'0100000001' || zeroblob(40) WHERE id = ?", (broken["id"],))
    ring = service.store.ring
    old_key = ring.key_id_of(service.store.db.one("SELECT input FROM runs WHERE id = ?", (record["id"],))[0])
    result = service.rotate_keys(service.actor())
    new_key = result["data_key_id"]
    assert new_key != old_key and ring.key_ids == [new_key]  # the old data key is gone
    blob = service.store.db.one("SELECT input FROM runs WHERE id = ?", (record["id"],))[0]
    assert ring.key_id_of(blob) == new_key
    assert service.replay_run(alice, record["id"])["result"]["event"][2] == "before rotation"
    with pytest.raises(Conflict, match="no recorded input"):  # it could not be re-sealed: dropped
        service.replay_run(alice, broken["id"])


def test_a_run_after_a_rotation_by_another_process_is_sealed_under_the_new_key(world):
    """`logic keys rotate` in another process drops the data key this server still holds in
    memory: an input sealed with it would never decrypt again (found by the PostgreSQL review)."""
    from store import Store

    service, alice, _ = world
    # No secret read: a read would make the ring catch up on its own (the value's key is new).
    service.deploy_function(
        alice,
        files_from_json(
            {
                "name": "plain",
                "source": "def main(event):\n    return event.data\n",
                "triggers": [{"type": "event", "event_name": "replay-plain"}],
            }
        ),
    )
    service.execute_function(alice, "plain", event_name="replay-plain", data="warm")  # the ring in use
    other = Store.open(service.settings)
    try:
        new_key, _count = other.rotate_data_key()
    finally:
        other.close()
    record = service.execute_function(alice, "plain", event_name="replay-plain", data="after rotation elsewhere")
    blob = service.store.db.one("SELECT input FROM runs WHERE id = ?", (record["id"],))[0]
    assert service.store.ring.key_id_of(blob) == new_key
    fresh = Store.open(service.settings)
    try:
        assert "after rotation elsewhere" in json.dumps(fresh.functions.run_input(record["id"]))
    finally:
        fresh.close()


def test_a_ledger_change_run_replays_the_change_it_saw(settings):
    from store import Store
    from tests.support import in_process_service

    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    try:
        actor = service.actor()
        service.create_ledger(actor, "state")
        source = (
            "def main(ledger_change, trigger):\n"
            "    return [trigger.type, ledger_change.name, ledger_change.change_type, ledger_change.data]\n"
        )
        body = {"name": "watcher", "source": source, "triggers": [{"type": "ledger_change", "ledger": "state"}]}
        service.deploy_function(actor, files_from_json(body))
        service.write_ledger(actor, "state", "replace", {"v": 1})
        service.dispatcher().drain()
        service.write_ledger(actor, "state", "replace", {"v": 2})  # the ledger moved on since
        service.dispatcher().drain()
        first = service.function_runs(actor, "watcher")[-1]
        assert first["result"] == ["ledger_change", "state", "set", {"v": 1}]
        assert first["trigger"]["ledger_change"]["name"] == "state"
        replay = service.replay_run(actor, first["id"])
        assert replay["result"] == first["result"] and replay["replay_of"] == first["id"]
    finally:
        service.close()
