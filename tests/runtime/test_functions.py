"""Logic functions through the service and the engine: deploy checks, versions,
secret usages, enable/disable/delete, test runs versus manual runs, run
retention, the run record's exact shape (DESIGN.md "Runs") and who may read a
run. Runs go to an InProcessPool: none of this is about the workers, which
tests/runtime/workers/, execution/test_engine.py and tests/security/ exercise."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime

import pytest

from runtime.manifest import files_from_json
from runtime.service import Service
from store.errors import Conflict, DeployError, NotFound, PermissionDenied
from tests.conftest import BACKENDS
from tests.support import runtime_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


RUNS_KEPT = 5
RUN_KEYS = [
    "id",
    "function_id",
    "function_version",
    "trigger",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "logs",
    "result",
    "error",
    "secrets_accessed",
    "events_published",
    "replay_of",
]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
API_VALUE = "functions-test-api-key-4c1d9e"

CONTEXT_SOURCE = """\
import logic

def main(event, trigger, function_info, secrets):
    print("hello", event.name if event else None)
    logic.log.warning("careful")
    logic.log.error("oops")
    return {
        "event": None if event is None else {"id": event.id, "name": event.name, "data": event.data,
                                             "published_at": event.published_at, "source": event.source},
        "trigger": {"type": trigger.type, "triggered_at": trigger.triggered_at, "event_id": trigger.event_id},
        "function_info": {"id": function_info.id, "name": function_info.name,
                          "version": function_info.version, "owner": function_info.owner},
        "secrets": {"attr": len(secrets.API_KEY), "item": len(secrets["API_KEY"]),
                    "get": len(secrets.get("API_KEY", "")), "in": "API_KEY" in secrets,
                    "not_in": "OTHER" in secrets, "names": list(secrets)},
    }
"""


def body(name: str, source: str = "def main(event):\n    return 1\n", **manifest) -> dict:
    return {"name": name, "source": source, **manifest}


def files(name: str, source: str = "def main(event):\n    return 1\n", **manifest):
    return files_from_json(body(name, source, **manifest))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """A service running in-process, runs_kept=5; users alice and bob, org acme (alice), alice's API_KEY."""
    service = runtime_service(
        tmp_path_factory, "functions", in_process=True, workers=2, runs_kept=RUNS_KEPT, run_timeout_s=10.0
    )
    try:
        admin = service.actor()
        alice = service.create_user(admin, "alice")
        bob = service.create_user(admin, "bob")
        service.create_org(alice, "acme")
        service.create_secret(alice, "API_KEY", API_VALUE)
        yield service, alice, bob
    finally:
        service.close()


def rows(service: Service, table: str, where: str = "", params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(service.settings.db_path)
    try:
        return [tuple(r) for r in conn.execute(f"SELECT * FROM {table} {where}", params)]
    finally:
        conn.close()


def function_tables(service: Service) -> dict:
    return {
        t: sorted(rows(service, t), key=repr)
        for t in ("functions", "function_versions", "triggers", "runs", "secret_usages")
    }


# deploy ----------------------------------------------------------------------------


def test_deploy_then_redeploy_adds_versions(env):
    service, alice, _ = env
    first = service.deploy_function(
        alice,
        files(
            "versions",
            "def main(event):\n    return 'one'\n",
            description="first",
            triggers=[{"type": "event", "event_name": "v-old"}],
        ),
    )
    assert (first.name, first.version, first.owner, first.enabled) == ("versions", 1, "user:alice", True)
    second = service.deploy_function(
        alice,
        files(
            "versions",
            "def main(event):\n    return 'two'\n",
            description="second",
            triggers=[{"type": "event", "event_name": "v-new"}, {"type": "schedule", "cron": "0 12 * *"}],
        ),
    )
    assert (second.id, second.version, second.created_at) == (first.id, 2, first.created_at)
    assert second.updated_at >= first.updated_at
    data = service.get_function(alice, "versions").to_json()
    assert list(data) == [
        "id",
        "name",
        "owner",
        "enabled",
        "version",
        "created_at",
        "updated_at",
        "description",
        "entry",
        "secrets",
        "triggers",
        "limits",
    ]
    assert data["description"] == "second" and data["version"] == 2
    assert data["triggers"] == [
        {"type": "event", "event_name": "v-new"},
        {"type": "schedule", "cron": "0 12 * * *"},
    ]  # 4 fields: any weekday
    assert service.get_function(alice, first.id) == service.get_function(alice, "versions")
    # Each version is kept; the triggers are the current version's only.
    assert service.store.functions.get_version(first.id, 1).source == "def main(event):\n    return 'one'\n"
    assert service.store.functions.for_event("user:alice", "v-old") == []
    assert service.store.functions.for_event("user:alice", "v-new") == [first.id]
    triggers = rows(service, "triggers", "WHERE function_id = ? ORDER BY id", (first.id,))
    assert [(t[2], t[3], t[4]) for t in triggers] == [("event", "v-new", None), ("schedule", None, "0 12 * * *")]
    assert ISO.match(triggers[1][6])  # next_fire_at
    # Runs name the version they ran.
    assert service.execute_function(alice, "versions")["result"] == "two"
    assert service.execute_function(alice, "versions")["function_version"] == 2


def test_deploy_by_id_must_keep_the_name(env):
    service, alice, _ = env
    fn = service.deploy_function(alice, files("by-id"))
    again = service.deploy_function(alice, files("by-id", "def main(event):\n    return 2\n"), function_id=fn.id)
    assert again.version == 2
    before = function_tables(service)
    with pytest.raises(DeployError, match="name 'renamed' does not match function 'by-id'"):
        service.deploy_function(alice, files("renamed"), function_id=fn.id)
    assert function_tables(service) == before


@pytest.mark.parametrize(
    "source, manifest, problems",
    [
        ("def main(event:\n    return 1\n", {}, [r"^bad\.py:1: syntax error"]),
        ("import os\ndef main(event):\n    return os.getcwd()\n", {}, [r"^bad\.py:1: module 'os' is not available"]),
        ("def main(event):\n    return event.__class__\n", {}, [r"^bad\.py:2: .*__class__"]),
        ("def handler(event):\n    return 1\n", {}, [r"^bad\.py:1: entry point 'main' is not defined"]),
        (
            "def main(event):\n    return 1\n",
            {"entry": "handler"},
            [r"^bad\.py:1: entry point 'handler' is not defined"],
        ),
        (
            "def main(evt, secrets):\n    return 1\n",
            {},
            [
                r"^bad\.py:1: parameter 'evt' of main\(\) is not a context part; "
                r"choose from event, scheduled, trigger, function_info, secrets"
            ],
        ),
        (
            "def main(secrets):\n    a = 1\n    return secrets.NOPE + secrets['ALSO']\n",
            {"secrets": ["API_KEY"]},
            [
                r"^bad\.py:3: secret 'NOPE' is not declared in the manifest \(declared: API_KEY\)",
                r"^bad\.py:3: secret 'ALSO' is not declared",
            ],
        ),
        (
            "def main(secrets):\n    return 1\n",
            {"secrets": ["MISSING"]},
            [
                r"^bad\.logic\.json: secrets: secret MISSING does not exist in alice's sandbox; "
                r"create it first with `logic secrets create MISSING`$"
            ],
        ),
    ],
)
def test_every_deploy_check_names_the_problem_and_changes_nothing(env, source, manifest, problems):
    service, alice, _ = env
    before = function_tables(service)
    with pytest.raises(DeployError) as refused:
        service.deploy_function(alice, files("bad", source, **manifest))
    assert len(refused.value.problems) == len(problems), refused.value.problems
    for problem, pattern in zip(refused.value.problems, problems, strict=True):
        assert re.search(pattern, problem), problem
    with pytest.raises(DeployError):  # a test run makes the same checks
        service.execute_function(alice, files("bad", source, **manifest))
    assert function_tables(service) == before


def test_all_problems_are_reported_together(env):
    service, alice, _ = env
    source = "import os\ndef main(evt):\n    return secrets.X\n"
    with pytest.raises(DeployError) as refused:
        service.deploy_function(alice, files("many", source, secrets=["GONE"]))
    text = "\n".join(refused.value.problems)
    assert "module 'os'" in text and "parameter 'evt'" in text and "secret GONE does not exist" in text


@pytest.mark.parametrize(
    "manifest, message",
    [
        ({"triggers": [{"type": "event", "event_name": f"e{i}"} for i in range(6)]}, "at most 5 triggers, not 6"),
        ({"triggers": [{"type": "schedule", "cron": "*/5 * * *  * *"}]}, "must have 4 or 5 fields"),
        ({"triggers": [{"type": "schedule", "cron": "61 * * * *"}]}, "is not a valid cron expression"),
        ({"triggers": [{"type": "schedule", "cron": "0 0 31 2 *"}]}, "never fires"),
        ({"triggers": [{"type": "event", "event_name": ""}]}, "at least 1 character"),
        ({"triggers": [{"type": "event", "event_name": "e" * 65}]}, "event name must be 1-64 characters"),
        ({"triggers": [{"type": "event", "event_name": "a\nb"}]}, "event name must not contain control characters"),
        ({"secrets": ["K" * 65]}, "secret name must be at most 64 characters, not 65"),
        ({"triggers": [{"type": "webhook"}]}, "does not match any of the expected tags"),
        ({"secrets": ["lower"]}, "invalid secret name 'lower'"),
        ({"secrets": ["API_KEY", "API_KEY"]}, "a secret is declared twice"),
        ({"limits": {"timeout_s": 0}}, "greater than 0"),
        ({"entry": "1bad"}, "should match pattern"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_manifests_are_refused(env, manifest, message):
    """By the parse (shape) or by the deploy checks (the limits that are settings)."""
    service, alice, _ = env
    with pytest.raises(DeployError, match=re.escape(message)):
        service.deploy_function(alice, files_from_json(body("bad-manifest", **manifest)))
    with pytest.raises(NotFound):
        service.get_function(alice, "bad-manifest")


def test_event_names_of_1_and_64_characters_are_fine(env):
    service, alice, _ = env
    fn = service.deploy_function(
        alice,
        files("edges", triggers=[{"type": "event", "event_name": "e"}, {"type": "event", "event_name": "e" * 64}]),
    )
    assert service.store.functions.for_event("user:alice", "e" * 64) == [fn.id]


# secret usages ---------------------------------------------------------------------


def test_declared_secrets_are_usages(env):
    service, alice, _ = env
    service.create_secret(alice, "USAGE_KEY", "usage-key-value-1234")
    source = "def main(secrets):\n    return len(secrets.USAGE_KEY)\n"
    service.deploy_function(alice, files("user-a", source, secrets=["USAGE_KEY"]))
    service.deploy_function(alice, files("user-b", source, secrets=["USAGE_KEY"]))
    info = service.get_secret(alice, "USAGE_KEY")
    assert (info.logic_functions, info.usage_count) == (["user-a", "user-b"], 2)
    with pytest.raises(Conflict, match="in use by function user-a, function user-b"):
        service.delete_secret(alice, "USAGE_KEY")
    # A new version without the secret stops using it; deleting a function does too.
    service.deploy_function(alice, files("user-a"))
    assert service.get_secret(alice, "USAGE_KEY").logic_functions == ["user-b"]
    service.delete_function(alice, "user-b")
    assert service.get_secret(alice, "USAGE_KEY").usage_count == 0
    service.delete_secret(alice, "USAGE_KEY")


# enable, disable, delete -------------------------------------------------------------


def test_disable_stops_triggers_and_enable_restores_them(env):
    service, alice, _ = env
    fn = service.deploy_function(alice, files("toggle", triggers=[{"type": "event", "event_name": "toggle-ev"}]))
    disabled = service.set_function_enabled(alice, "toggle", False)
    assert disabled.enabled is False and disabled.version == fn.version
    assert service.publish_event(alice, "toggle-ev")["deliveries"] == 0
    enabled = service.set_function_enabled(alice, fn.id, True)
    assert enabled.enabled is True
    assert service.publish_event(alice, "toggle-ev")["deliveries"] == 1
    service.dispatcher().drain()
    runs = service.function_runs(alice, "toggle")
    assert [r["trigger"]["type"] for r in runs] == ["event"]


def test_a_delivery_to_a_function_disabled_meanwhile_fails_cleanly(env):
    service, alice, _ = env
    service.deploy_function(alice, files("late-off", triggers=[{"type": "event", "event_name": "late-ev"}]))
    assert service.publish_event(alice, "late-ev")["deliveries"] == 1
    service.set_function_enabled(alice, "late-off", False)
    service.dispatcher().drain()
    assert service.function_runs(alice, "late-off") == []
    assert rows(service, "deliveries", "WHERE last_error = ?", ("function late-off is disabled",))


def test_delete_removes_versions_triggers_and_runs(env):
    service, alice, bob = env
    fn = service.deploy_function(alice, files("doomed", triggers=[{"type": "event", "event_name": "doomed-ev"}]))
    service.deploy_function(alice, files("doomed"))
    run = service.execute_function(alice, "doomed")
    with pytest.raises(NotFound):
        service.delete_function(bob, fn.id)  # another user's id is not found
    service.delete_function(alice, "doomed")
    for table in ("functions", "function_versions", "triggers", "runs"):
        column = "id" if table == "functions" else "function_id"
        assert rows(service, table, f"WHERE {column} = ?", (fn.id,)) == []
    with pytest.raises(NotFound, match="^function doomed does not exist$"):
        service.get_function(alice, "doomed")
    with pytest.raises(NotFound, match=f"^run {run['id']} does not exist$"):
        service.get_run(alice, run["id"])
    with pytest.raises(NotFound):
        service.delete_function(alice, "doomed")


def test_functions_are_per_owner(env):
    service, alice, bob = env
    mine = service.deploy_function(alice, files("same-name"))
    theirs = service.deploy_function(bob, files("same-name"))
    org = service.deploy_function(alice, files("same-name"), org="acme")
    assert len({mine.id, theirs.id, org.id}) == 3
    assert [f.name for f in service.list_functions(bob)] == ["same-name"]
    assert "same-name" in [f.name for f in service.list_functions(alice, org="acme")]
    with pytest.raises(NotFound):
        service.get_function(bob, mine.id)
    with pytest.raises(PermissionDenied):
        service.list_functions(bob, org="acme")
    with pytest.raises(PermissionDenied):
        service.deploy_function(bob, files("intruder"), org="acme")
    assert service.get_function(alice, org.id, org="acme").owner == "org:acme"
    with pytest.raises(NotFound):  # an id resolves only in the scope asked for
        service.get_function(alice, org.id)


# runs ------------------------------------------------------------------------------


def test_a_test_run_stores_nothing_but_the_audit(env):
    service, alice, _ = env
    before = function_tables(service)
    audit_before = len(service.audit(alice, "API_KEY"))
    record = service.execute_function(
        alice, files("scratch", CONTEXT_SOURCE, secrets=["API_KEY"]), event_name="try-it", data='{"i": 1}'
    )
    assert record["status"] == "success", record["error"]
    assert record["function_id"] == "test-run" and record["function_version"] == 0
    assert record["result"]["function_info"] == {
        "id": "test-run",
        "name": "scratch",
        "version": 0,
        "owner": "user:alice",
    }
    assert function_tables(service) == before  # nothing deployed, no run stored
    with pytest.raises(NotFound):
        service.get_run(alice, record["id"])
    trail = service.audit(alice, "API_KEY")
    assert len(trail) == audit_before + 3  # three reads ("in" and listing read nothing), each audited
    assert {a.run_id for a in trail[:3]} == {record["id"]}
    assert {(a.consumer_kind, a.consumer_name) for a in trail[:3]} == {("logic_function", "scratch")}


def test_a_manual_run_of_a_deployed_function_is_stored(env):
    service, alice, _ = env
    fn = service.deploy_function(alice, files("manual", CONTEXT_SOURCE, secrets=["API_KEY"]))
    record = service.execute_function(alice, "manual", event_name="by-hand", data="text data")
    assert record["status"] == "success", record["error"]
    assert service.get_run(alice, record["id"]) == record
    assert service.get_run(alice, record["id"], ref="manual") == record
    assert service.get_run(alice, record["id"], ref=fn.id) == record
    assert service.function_runs(alice, "manual") == [record]
    result = record["result"]
    assert result["event"]["name"] == "by-hand" and result["event"]["data"] == "text data"
    assert result["event"]["source"] == "manual:alice" and ISO.match(result["event"]["published_at"])
    assert result["trigger"]["type"] == "manual" and result["trigger"]["event_id"] is None
    assert ISO.match(result["trigger"]["triggered_at"])
    assert result["function_info"] == {"id": fn.id, "name": "manual", "version": 1, "owner": "user:alice"}
    assert result["secrets"] == {
        "attr": len(API_VALUE),
        "item": len(API_VALUE),
        "get": len(API_VALUE),
        "in": True,
        "not_in": False,
        "names": ["API_KEY"],
    }
    # Without --event there is no event.
    bare = service.execute_function(alice, "manual")
    assert bare["result"]["event"] is None and bare["trigger"]["event_id"] is None


def test_the_run_record_has_exactly_the_documented_shape(env):
    service, alice, _ = env
    source = (
        "import logic\n"
        "def main(event, secrets):\n"
        "    print('data', event.data)\n"
        "    logic.log.warning('warn')\n"
        "    logic.publish('shape-out', {'n': 1})\n"
        "    logic.publish('shape-text', 'plain')\n"
        "    logic.publish('shape-none')\n"
        "    if event.data == 'fail':\n"
        "        raise KeyError('missing')\n"
        "    return {'len': len(secrets.API_KEY), 'list': [1, 2.5, None, True]}\n"
    )
    fn = service.deploy_function(
        alice, files("shape", source, secrets=["API_KEY"], triggers=[{"type": "event", "event_name": "shape-in"}])
    )
    accepted = service.publish_event(alice, "shape-in", "ok")
    service.dispatcher().drain()
    (record,) = service.function_runs(alice, "shape")
    assert list(record) == RUN_KEYS
    assert len(record["id"]) == 32 and record["function_id"] == fn.id and record["function_version"] == 1
    event = service.store.events.event(accepted["id"])
    assert record["trigger"] == {
        "type": "event",
        "event_id": accepted["id"],
        "scheduled_at": None,
        "cron": None,
        "event": {"name": "shape-in", "data": "ok", "source": "user:alice", "published_at": event["published_at"]},
        "ledger_change": None,
    }
    assert record["replay_of"] is None
    assert record["status"] == "success"
    for key in ("started_at", "finished_at"):
        assert ISO.match(record[key]), record[key]
    assert record["started_at"] <= record["finished_at"]
    assert isinstance(record["duration_ms"], (int, float)) and record["duration_ms"] >= 0
    assert [list(line) for line in record["logs"]] == [["at", "level", "message"]] * 2
    assert [(line["level"], line["message"]) for line in record["logs"]] == [("info", "data ok"), ("warning", "warn")]
    assert all(ISO.match(line["at"]) for line in record["logs"])
    assert record["result"] == {"len": len(API_VALUE), "list": [1, 2.5, None, True]}
    assert record["error"] is None
    assert record["secrets_accessed"] == ["API_KEY"]
    assert record["events_published"] == [
        {"name": "shape-out", "data": '{"n":1}'},
        {"name": "shape-text", "data": "plain"},
        {"name": "shape-none", "data": None},
    ]
    # The stored record is the one the service returns, byte for byte as JSON.
    (raw,) = rows(service, "runs", "WHERE id = ?", (record["id"],))
    assert json.loads(raw[5]) == record and raw[3] == "success"

    failed = service.execute_function(alice, "shape", event_name="shape-in", data="fail")
    assert list(failed) == RUN_KEYS
    assert failed["status"] == "error" and failed["result"] is None
    assert list(failed["error"]) == ["type", "message", "traceback"]
    assert failed["error"]["type"] == "KeyError" and failed["error"]["message"] == "'missing'"
    assert failed["error"]["traceback"] == (
        "Traceback (most recent call last):\n"
        '  File "shape.py", line 9, in main\n'
        "    raise KeyError('missing')\n"
        "KeyError: 'missing'\n"
    )
    assert len(failed["events_published"]) == 3  # published before the error: kept in the record


def test_published_events_reach_other_functions(env):
    service, alice, _ = env
    relay_source = "import logic\ndef main(event):\n    logic.publish('relayed', event.data)\n"
    service.deploy_function(alice, files("relay", relay_source, triggers=[{"type": "event", "event_name": "relay-in"}]))
    service.deploy_function(
        alice,
        files(
            "sink", "def main(event):\n    return event.data\n", triggers=[{"type": "event", "event_name": "relayed"}]
        ),
    )
    service.publish_event(alice, "relay-in", "payload")
    service.dispatcher().drain()
    (sink,) = service.function_runs(alice, "sink")
    assert sink["result"] == "payload" and sink["trigger"]["type"] == "event"
    (relay,) = service.function_runs(alice, "relay")
    event = service.store.events.event(sink["trigger"]["event_id"])
    assert event["source"] == f"run:{relay['id']}"


def test_only_the_newest_runs_are_kept(env):
    service, alice, _ = env
    service.deploy_function(alice, files("many-runs", "def main(event):\n    return event.data\n"))
    fn = service.get_function(alice, "many-runs")
    ids = [service.execute_function(alice, "many-runs", event_name="n", data=str(i))["id"] for i in range(8)]
    runs = service.function_runs(alice, "many-runs")
    assert [r["id"] for r in runs] == ids[::-1][:RUNS_KEPT]  # listed: only the newest, before any prune
    assert [r["result"] for r in runs] == ["7", "6", "5", "4", "3"]
    # The first run pruned (nothing yet); the next prune comes 16 runs later.
    assert len(rows(service, "runs", "WHERE function_id = ?", (fn.id,))) == 8
    ids += [service.execute_function(alice, "many-runs", event_name="n", data=str(i))["id"] for i in range(8, 17)]
    assert len(rows(service, "runs", "WHERE function_id = ?", (fn.id,))) == RUNS_KEPT  # the 17th run pruned
    assert [r["id"] for r in service.function_runs(alice, "many-runs")] == ids[::-1][:RUNS_KEPT]
    assert [r["id"] for r in service.function_runs(alice, "many-runs", limit=2)] == ids[::-1][:2]


def test_retention_holds_when_runs_share_a_start_time(env):
    """A coarse or frozen clock gives runs the same started_at: still only N are kept."""
    service, alice, _ = env
    fn = service.deploy_function(alice, files("same-time"))
    for i in range(RUNS_KEPT + 3):
        record = {
            "id": f"tie-{i}",
            "function_id": fn.id,
            "function_version": 1,
            "status": "success",
            "started_at": "2030-01-01T00:00:00.000000Z",
        }
        service.store.functions.add_run(record)
    assert [r["id"] for r in service.function_runs(alice, "same-time")] == [f"tie-{i}" for i in range(7, 2, -1)]
    assert service.store.functions.prune_runs(fn.id) == 3
    assert [r["id"] for r in service.function_runs(alice, "same-time")] == [f"tie-{i}" for i in range(7, 2, -1)]
    assert len(rows(service, "runs", "WHERE function_id = ?", (fn.id,))) == RUNS_KEPT


def test_runs_and_run_records_are_only_for_those_who_may_see_the_function(env):
    service, alice, bob = env
    service.deploy_function(alice, files("private"))
    service.deploy_function(alice, files("other"))
    mine = service.execute_function(alice, "private")
    with pytest.raises(NotFound, match=f"^run {mine['id']} does not exist$"):
        service.get_run(bob, mine["id"])
    with pytest.raises(NotFound):
        service.get_run(alice, mine["id"], ref="other")  # a run of another function
    with pytest.raises(NotFound):
        service.get_run(alice, "no-such-run")
    with pytest.raises(NotFound):
        service.function_runs(bob, "private")
    with pytest.raises(NotFound):
        service.function_runs(bob, service.get_function(alice, "private").id)
    org_fn = service.deploy_function(alice, files("org-private"), org="acme")
    org_run = service.execute_function(alice, "org-private", org="acme")
    assert service.get_run(alice, org_run["id"], org="acme") == org_run
    with pytest.raises(NotFound):
        service.get_run(alice, org_run["id"])  # not in alice's sandbox
    with pytest.raises(PermissionDenied):
        service.get_run(bob, org_run["id"], org="acme")
    with pytest.raises(NotFound):
        service.get_run(bob, org_run["id"])
    assert service.function_runs(alice, org_fn.id, org="acme")[0]["id"] == org_run["id"]


def test_schedule_trigger_runs_carry_the_tick(env):
    service, alice, _ = env
    source = "def main(scheduled, trigger):\n    return [scheduled.scheduled_at, scheduled.cron, trigger.type]\n"
    fn = service.deploy_function(
        alice, files("ticking", source, triggers=[{"type": "schedule", "cron": "*/5 * * * *"}])
    )
    tick = service.store.functions.db.one("SELECT next_fire_at FROM triggers WHERE function_id = ?", (fn.id,))[0]
    at = datetime.fromisoformat(tick.replace("Z", "+00:00"))
    assert at.minute % 5 == 0 and at.second == 0
    record = service.engine.run(fn, {"type": "schedule"}, scheduled={"scheduled_at": tick, "cron": "*/5 * * * *"})
    assert record["trigger"] == {
        "type": "schedule",
        "event_id": None,
        "scheduled_at": tick,
        "cron": "*/5 * * * *",
        "event": None,
        "ledger_change": None,
    }
    assert record["result"] == [tick, "*/5 * * * *", "schedule"]


def test_run_retention_holds_across_short_lived_processes(logic_home):
    """Every `logic functions execute NAME` is a process of its own, and a server may restart
    between a few cron runs: a function's first run in a process prunes too."""
    from store import Settings, Store

    settings = Settings(home=logic_home, runs_kept=5)
    Store.initialize(settings)[0].close()
    ids: list[str] = []
    fn_id = None
    for process in range(4):  # four short-lived processes, ten runs each
        service = Service.open(settings)
        try:
            if fn_id is None:
                fn_id = service.deploy_function(service.actor(), files("kept")).id
            for i in range(10):
                ids.append(f"run-{process}-{i}")
                service.store.functions.add_run(
                    {
                        "id": ids[-1],
                        "function_id": fn_id,
                        "function_version": 1,
                        "status": "success",
                        "started_at": f"2030-01-01T00:{process:02d}:{i:02d}.000000Z",
                    }
                )
        finally:
            service.close()
    service = Service.open(settings)
    try:
        actor = service.actor()
        assert [r["id"] for r in service.function_runs(actor, "kept")] == ids[::-1][:5]
        stored = service.store.db.one("SELECT count(*) FROM runs WHERE function_id = ?", (fn_id,))[0]
        assert stored <= 5 + 9  # the last process pruned at its first run, then added nine
        with pytest.raises(NotFound):
            service.get_run(actor, ids[0])
    finally:
        service.close()


@pytest.mark.parametrize(("kept", "every"), [(5, 16), (800, 100)])
def test_a_long_retention_is_pruned_after_an_eighth_of_it_not_every_16_runs(logic_home, kept, every):
    """The prune walks the `kept` newest runs: after every 16th run, a retention of 10,000 cost
    each run ~1 ms (the ingest benchmark keeps every run: 0.82-0.85x server CPU per event once
    fixed). Now at most an eighth more than `kept` wait for their prune; the listing stays exact."""
    from store import Settings, Store

    settings = Settings(home=logic_home, runs_kept=kept)
    Store.initialize(settings)[0].close()
    service = Service.open(settings)
    try:
        actor = service.actor()
        fn_id = service.deploy_function(actor, files("long")).id
        functions = service.store.functions
        assert functions.prune_every == every
        stored = []
        for i in range(kept + 2 * every):
            functions.add_run(
                {
                    "id": f"run-{i:04d}",
                    "function_id": fn_id,
                    "function_version": 1,
                    "status": "success",
                    "started_at": f"2030-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z",
                }
            )
            stored.append(service.store.db.one("SELECT count(*) FROM runs WHERE function_id = ?", (fn_id,))[0])
        assert max(stored) == kept + every - 1  # a prune every `every` runs, and only then
        assert stored.count(kept) >= 2  # ... which cut back to `kept`
        newest = [f"run-{i:04d}" for i in range(kept + 2 * every - 1, every * 2 - 1, -1)]
        assert [r["id"] for r in functions.runs(fn_id, limit=kept)] == newest
    finally:
        service.close()
