"""The CLI's habits from particle-cli (issue 13, item 6) and `logic runs replay`:
`functions deploy --test-event` deploys only after a test run succeeds; `functions get`
shows each trigger's enabled flag and each schedule's next fire time; `functions list`
shows today's success/error/timeout counts (one service answer with the console)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from runtime.manifest import files_from_json
from runtime.service import Service
from store import Store
from tests.conftest import BACKENDS
from tests.runtime.test_functions_cli import MANIFEST, ok, one_error, write_function
from tests.support import in_process_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


VALUE = "deploy-guard-secret-5c7e9a1b"
GUARDED = """\
import json
import logic


def main(event, secrets):
    data = json.loads(event.data)
    logic.log.info("checking", data["i"], secrets.API_KEY)
    if data["i"] < 0:
        raise ValueError("negative reading " + secrets.API_KEY)
    return {"ok": data["i"]}
"""


@pytest.fixture
def ready(cli, settings):
    store, result = Store.initialize(settings)
    try:
        store.secrets.create(result.admin.owner, "API_KEY", VALUE)
    finally:
        store.close()
    return cli


def deployed_versions(settings) -> list[int]:
    store = Store.open(settings)
    try:
        return [f.version for f in store.functions.list(store.identity.first_admin().owner)]
    finally:
        store.close()


# deploy --test-event -------------------------------------------------------------------


def test_a_failing_test_run_deploys_nothing_and_exits_1(ready, tmp_path, settings, db_rows):
    cli = ready
    directory = write_function(tmp_path / "guarded", source=GUARDED)
    before = db_rows()
    failed = cli("functions", "deploy", str(directory), "--test-event", "sensor-test", "--test-data", '{"i": -1}')
    assert failed.exit_code == 1
    assert " ERROR " in failed.stdout.splitlines()[0]  # the test run, printed
    assert "  error: ValueError: negative reading [[SENSITIVE]]" in failed.stdout
    assert failed.stderr.strip() == "Error: the test run ended error: nothing was deployed"
    assert VALUE not in failed.stdout + failed.stderr
    after = db_rows()
    assert deployed_versions(settings) == []
    # Only the test run's secret access was recorded (as `functions execute` does it).
    for table in ("functions", "function_versions", "triggers", "runs", "secret_usages", "events"):
        assert after[table] == before[table], table


def test_a_succeeding_test_run_deploys(ready, tmp_path, settings):
    cli = ready
    directory = write_function(tmp_path / "guarded", source=GUARDED)
    out = ok(cli("functions", "deploy", str(directory), "--test-event", "sensor-test", "--test-data", '{"i": 3}'))
    assert " SUCCESS " in out.splitlines()[0]
    assert out.rstrip().splitlines()[-1].startswith("Deployed reformat version 1")
    assert deployed_versions(settings) == [1]
    as_json = json.loads(
        ok(cli("functions", "deploy", str(directory), "--test-event", "e", "--test-data", '{"i": 4}', "--json"))
    )
    assert as_json["test_run"]["status"] == "success" and as_json["test_run"]["result"] == {"ok": 4}
    assert as_json["deployed"]["version"] == 2 and deployed_versions(settings) == [2]


def test_a_crash_or_timeout_in_the_test_run_is_refused_too(ready, tmp_path, settings):
    cli = ready
    looping = "def main(event):\n    while True:\n        pass\n"
    directory = write_function(tmp_path / "loop", source=looping, manifest={**MANIFEST, "secrets": []})
    failed = cli(
        "functions", "deploy", str(directory), "--test-event", "x", "--json", env={"LOGIC_RUN_TIMEOUT_S": "0.5"}
    )
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert report["test_run"]["status"] == "timeout" and report["deployed"] is None
    assert "Error: the test run ended timeout: nothing was deployed" in failed.stderr
    assert deployed_versions(settings) == []


def test_test_data_without_test_event_is_a_usage_error(ready, tmp_path):
    result = ready("functions", "deploy", str(write_function(tmp_path / "f")), "--test-data", "{}")
    assert result.exit_code == 2 and "--test-data needs --test-event" in result.stderr


def test_broken_files_are_refused_before_any_run(ready, tmp_path, settings):
    directory = write_function(tmp_path / "broken", source="def main(:\n")
    line = one_error(ready("functions", "deploy", str(directory), "--test-event", "x"))
    assert "reformat.py:1" in line and deployed_versions(settings) == []


# get: triggers; list: today's counts ----------------------------------------------------


def test_get_shows_each_trigger_enabled_and_the_next_tick(ready, tmp_path):
    cli = ready
    manifest = {
        **MANIFEST,
        "triggers": [
            {"type": "event", "event_name": "sensor-test", "enabled": False},
            {"type": "schedule", "cron": "*/5 * * * *"},
            {"type": "schedule", "cron": "0 0 * * *", "end_at": "2020-01-02T00:00:00Z"},
        ],
    }
    ok(cli("functions", "deploy", str(write_function(tmp_path / "r", manifest=manifest))))
    got = json.loads(ok(cli("functions", "get", "reformat", "--json")))
    event, every_five, over = got["triggers"]
    assert event == {"type": "event", "event_name": "sensor-test", "enabled": False}
    assert every_five["enabled"] is True and every_five["next_fire_at"].endswith(":00.000000Z")
    tick = datetime.fromisoformat(every_five["next_fire_at"].replace("Z", "+00:00"))
    assert tick.minute % 5 == 0 and timedelta(0) < tick - datetime.now(UTC) <= timedelta(minutes=5)
    assert over["next_fire_at"] is None  # its window is over
    shown = ok(cli("functions", "get", "reformat"))
    assert "  event sensor-test  (disabled)" in shown
    assert f"  schedule */5 * * * *  next: {tick.strftime('%Y-%m-%d %H:%M')}" in shown
    assert "  schedule 0 0 * * *  next: none (its window is over)" in shown


def test_list_counts_todays_runs_by_status_in_utc(settings):
    Store.initialize(settings)[0].close()
    now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    service: Service = in_process_service(settings, clock=lambda: now)
    try:
        admin = service.actor()
        source = "def main():\n  return 1\n"
        fn = service.deploy_function(admin, files_from_json({"name": "counted", "source": source}))
        quiet = service.deploy_function(admin, files_from_json({"name": "quiet", "source": source}))
        statuses = ["success", "success", "error", "timeout", "crashed", "memory_exceeded"]
        for n, status in enumerate(statuses):
            service.store.functions.add_run(
                {"id": f"r{n}", "function_id": fn.id, "function_version": 1, "status": status,
                 "started_at": f"2026-12-01T00:0{n}:00.000000Z"}
            )  # fmt: skip
        for n, stamp in enumerate(["2026-11-30T23:59:59.999999Z", "2026-12-02T00:00:00.000000Z"]):
            service.store.functions.add_run(
                {"id": f"x{n}", "function_id": fn.id, "function_version": 1, "status": "success", "started_at": stamp}
            )
        today = service.runs_today(admin)
        assert today == {fn.id: {"success": 2, "error": 3, "timeout": 1}}  # crashed, memory_exceeded: errors
        assert quiet.id not in today
    finally:
        service.close()


def test_list_shows_the_counts_in_text_and_json(ready, tmp_path):
    cli = ready
    directory = write_function(tmp_path / "r", source=GUARDED)
    ok(cli("functions", "deploy", str(directory)))
    ok(cli("functions", "execute", "reformat", "--event", "e", "--data", '{"i": 1}'))
    ok(cli("functions", "execute", "reformat", "--event", "e", "--data", '{"i": -1}'))
    listing = json.loads(ok(cli("functions", "list", "--json")))
    assert listing[0]["runs_today"] == {"success": 1, "error": 1, "timeout": 0}
    assert "1/1/0" in ok(cli("functions", "list"))


# runs replay ---------------------------------------------------------------------------


def test_runs_replay_prints_the_new_run_and_refusals_are_one_error_line(ready, tmp_path):
    cli = ready
    ok(cli("functions", "deploy", str(write_function(tmp_path / "r", source=GUARDED))))
    first = json.loads(ok(cli("functions", "execute", "reformat", "--event", "e", "--data", '{"i": 8}', "--json")))
    replay = json.loads(ok(cli("runs", "replay", first["id"], "--json")))
    assert replay["replay_of"] == first["id"] and replay["result"] == {"ok": 8}
    assert replay["trigger"]["event"]["data"] == '{"i": 8}'
    shown = ok(cli("runs", "replay", first["id"]))
    assert f"  replay of run {first['id']}" in shown and '  event e: {"i": 8}' in shown
    assert VALUE not in shown
    assert one_error(cli("runs", "replay", "nope")) == (
        "Error: run nope does not exist, so it cannot be replayed (a function's runs are deleted with it)"
    )
    ok(cli("functions", "delete", "reformat"))
    assert "cannot be replayed" in one_error(cli("runs", "replay", first["id"]))
