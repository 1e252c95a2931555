"""Ledgers and environment variables from functions, written as an attacker would use them.

Runs go to an InProcessPool (the ledger calls take the same path as a worker's frames:
workers/pool.answer_ledger); one test goes through real workers."""

from __future__ import annotations

import json
import threading

import pytest

from runtime.manifest import files_from_json
from runtime.service import Service
from store import Settings, Store
from store.errors import DeployError
from tests.conftest import BACKENDS
from tests.support import in_process_service


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """This module's tests run on SQLite and on PostgreSQL (tests/conftest.py)."""
    return str(request.param)


SECRET = "s3cr3t-ledger-value-91f2"


@pytest.fixture
def world(settings: Settings):
    settings = settings.model_copy(update={"workers": 4, "run_timeout_s": 5})
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    yield service, service.actor()
    service.close()


def deploy(service: Service, actor, name: str, source: str, triggers=(), secrets=(), org=None):
    body = {"name": name, "source": source, "triggers": list(triggers), "secrets": list(secrets)}
    return service.deploy_function(actor, files_from_json(body), org)


def run(service: Service, actor, name: str, org=None) -> dict:
    return service.execute_function(actor, name, org=org)


def test_get_set_merge_delete_from_a_function(world):
    service, actor = world
    service.create_ledger(actor, "state")
    deploy(
        service,
        actor,
        "writer",
        "import logic\n"
        "def main():\n"
        "    ledger = logic.ledger('state')\n"
        "    first = ledger.get()\n"
        "    ledger.set({'a': 1, 'b': 2})\n"
        "    ledger.set({'b': 3}, mode=logic.MERGE)\n"
        "    seen = ledger.get()\n"
        "    seen['data']['mutated'] = True\n"  # a copy: the pending write is not changed
        "    return [first, ledger.get()['data']]\n",
    )
    record = run(service, actor, "writer")
    assert record["status"] == "success", record["error"]
    first, second = record["result"]
    assert first == {"updated_at": None, "data": {}}
    assert second == {"a": 1, "b": 3}  # reads see the run's own pending writes
    assert service.get_ledger(actor, "state").data == {"a": 1, "b": 3}
    assert len(service.ledger_versions(actor, "state")) == 0  # one write per run, onto an empty ledger
    deploy(service, actor, "eraser", "import logic\ndef main():\n    logic.ledger('state').delete()\n")
    assert run(service, actor, "eraser")["status"] == "success"
    record = service.get_ledger(actor, "state")
    assert (record.updated_at, record.data) == (None, {})
    assert [v["size_bytes"] for v in service.ledger_versions(actor, "state")] == [len('{"a":1,"b":3}')]


def test_an_unknown_ledger_is_an_error_the_function_can_catch(world):
    service, actor = world
    deploy(
        service,
        actor,
        "probe",
        "import logic\n"
        "def main():\n"
        "    try:\n"
        "        logic.ledger('missing').get()\n"
        "    except logic.LedgerError as exc:\n"
        "        return str(exc)\n",
    )
    record = run(service, actor, "probe")
    assert record["status"] == "success"
    assert "ledger missing does not exist" in record["result"]


@pytest.mark.parametrize(
    "call, message",
    [
        ("logic.ledger('Bad_Name').get()", "invalid ledger name"),
        ("logic.ledger('x' * 33).get()", "at most 32"),
        ("logic.ledger('state').set([1, 2])", "must be a dict"),
        ("logic.ledger('state').set({'a': 1}, mode='append')", "logic.REPLACE or logic.MERGE"),
        ("logic.ledger('state').set({'a': {1, 2}})", "not JSON-serialisable"),
        ("logic.ledger('state').set({'a': float('nan')})", "ledger data"),
        ("logic.ledger(5)", "must be a str"),
    ],
)
def test_bad_calls_fail_the_run_and_write_nothing(world, call, message):
    service, actor = world
    service.create_ledger(actor, "state")
    deploy(service, actor, "bad", f"import logic\ndef main():\n    {call}\n")
    record = run(service, actor, "bad")
    assert record["status"] == "error"
    assert message in record["error"]["message"]
    assert service.get_ledger(actor, "state").data == {}


def test_an_oversized_set_is_refused_and_changes_nothing(world):
    service, actor = world
    service.create_ledger(actor, "state")
    service.write_ledger(actor, "state", "replace", {"keep": "me"})
    deploy(
        service,
        actor,
        "big",
        "import logic\n"
        "def main():\n"
        "    ledger = logic.ledger('state')\n"
        "    try:\n"
        "        ledger.set({'x': 'y' * 17000})\n"
        "    except logic.LedgerError as exc:\n"
        "        caught = str(exc)\n"
        "    ledger.set({'small': 'é' * 6000}, mode=logic.MERGE)\n"  # 12 KB of UTF-8 fits
        "    try:\n"
        "        ledger.set({'more': 'z' * 5000}, mode=logic.MERGE)\n"  # the merged result does not
        "    except logic.LedgerError as exc:\n"
        "        caught += ' | ' + str(exc)\n"
        "    return caught\n",
    )
    record = run(service, actor, "big")
    assert record["status"] == "success", record["error"]
    assert record["result"].count("the limit is 16384 bytes") == 2
    assert service.get_ledger(actor, "state").data == {"keep": "me", "small": "é" * 6000}


def test_a_run_that_raises_after_set_leaves_the_ledger_unchanged(world):
    service, actor = world
    service.create_ledger(actor, "state")
    service.write_ledger(actor, "state", "replace", {"before": 1})
    deploy(
        service,
        actor,
        "fails",
        "import logic\ndef main():\n    logic.ledger('state').set({'after': 2})\n    raise ValueError('boom')\n",
    )
    record = run(service, actor, "fails")
    assert record["status"] == "error"
    assert service.get_ledger(actor, "state").data == {"before": 1}
    assert service.ledger_versions(actor, "state") == []


def test_a_test_run_saves_no_ledger_write(world):
    service, actor = world
    service.create_ledger(actor, "state")
    files = files_from_json(
        {"name": "t", "source": "import logic\ndef main():\n    logic.ledger('state').set({'a': 1})\n"}
    )
    record = service.execute_function(actor, files)
    assert record["status"] == "success"
    assert service.get_ledger(actor, "state").data == {}


def test_two_concurrent_runs_merging_different_keys_both_land(world):
    service, actor = world
    service.create_ledger(actor, "shared")
    both_read = threading.Barrier(2)
    for key in ("left", "right"):
        deploy(
            service,
            actor,
            f"merge-{key}",
            "import logic\n"
            "def main(env):\n"
            "    ledger = logic.ledger('shared')\n"
            "    ledger.get()\n"
            f"    ledger.set({{'{key}': 1}}, mode=logic.MERGE)\n",
        )
    real_call = None

    # Both runs read the (empty) ledger before either commits: a merge applied against
    # what the run read would lose one key.
    from runtime.execution import ledger_broker

    real_call = ledger_broker.LedgerBroker.call

    def call(self, action, name, data_json, mode):
        answer = real_call(self, action, name, data_json, mode)
        if action == "get":
            both_read.wait(5)
        return answer

    ledger_broker.LedgerBroker.call = call
    try:
        results: list[dict] = []
        threads = [
            threading.Thread(target=lambda k=k: results.append(run(service, actor, f"merge-{k}")))
            for k in ("left", "right")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        ledger_broker.LedgerBroker.call = real_call
    assert [r["status"] for r in results] == ["success", "success"]
    assert service.get_ledger(actor, "shared").data == {"left": 1, "right": 1}


def test_a_secret_written_into_a_ledger_is_stored_masked(world):
    service, actor = world
    service.create_secret(actor, "API_KEY", SECRET)
    service.create_ledger(actor, "state")
    deploy(
        service,
        actor,
        "leaker",
        "import logic\n"
        "def main(secrets):\n"
        "    value = secrets.API_KEY\n"
        "    logic.ledger('state').set({'copy': value, value: 'as a key', 'nested': [{'in': 'x' + value}]})\n",
        secrets=["API_KEY"],
    )
    assert run(service, actor, "leaker")["status"] == "success"
    stored = service.get_ledger(actor, "state")
    text = json.dumps(stored.to_json())
    assert SECRET not in text
    assert stored.data["copy"] == "[[SENSITIVE]]"
    assert "[[SENSITIVE]]" in stored.data


def test_owner_a_cannot_reach_owner_b_ledgers_or_env(world):
    service, alice = world
    bob = service.create_user(alice, "bob")
    service.create_ledger(bob, "private")
    service.write_ledger(bob, "private", "replace", {"bob": "only"})
    service.set_env(bob, "BOB_TOKEN", "bob-config")
    service.create_org(bob, "bobco")
    service.create_ledger(bob, "orgledger", org="bobco")
    deploy(
        service,
        alice,
        "snoop",
        "import logic\n"
        "def main(env):\n"
        "    out = []\n"
        "    for name in ('private', 'orgledger'):\n"
        "        for action in ('get', 'set', 'delete'):\n"
        "            try:\n"
        "                l = logic.ledger(name)\n"
        "                l.get() if action == 'get' else l.set({'x': 1}) if action == 'set' else l.delete()\n"
        "                out.append('reached ' + name)\n"
        "            except logic.LedgerError as exc:\n"
        "                out.append(str(exc))\n"
        "    out.append(env.get('BOB_TOKEN', 'unset'))\n"
        "    out.append('BOB_TOKEN' in env)\n"
        "    return out\n",
    )
    record = run(service, alice, "snoop")
    assert record["status"] == "success"
    assert not any("reached" in str(x) for x in record["result"])
    assert record["result"][-2:] == ["unset", False]
    assert service.get_ledger(bob, "private").data == {"bob": "only"}
    assert service.get_ledger(bob, "orgledger", org="bobco").data == {}


def test_env_reaches_functions_and_a_change_takes_effect_on_the_next_run(world):
    service, actor = world
    service.set_env(actor, "RETRY_PERIOD", "30")
    service.set_env(actor, "REGION", "eu")
    deploy(
        service,
        actor,
        "config",
        "import logic\n"
        "def main(env):\n"
        "    ctx = logic.get_context()\n"
        "    try:\n"
        "        env.MISSING\n"
        "    except KeyError as exc:\n"
        "        missing = str(exc)\n"
        "    return [env.RETRY_PERIOD, env['REGION'], env.get('NOPE', 'd'), 'REGION' in env,\n"
        "            list(env), ctx.env is env, missing]\n",
    )
    first = run(service, actor, "config")
    assert first["status"] == "success", first["error"]
    assert first["result"][:6] == ["30", "eu", "d", True, ["REGION", "RETRY_PERIOD"], True]
    assert "MISSING" in first["result"][6]
    service.set_env(actor, "RETRY_PERIOD", "60")
    assert run(service, actor, "config")["result"][0] == "60"


def test_env_is_read_only(world):
    service, actor = world
    service.set_env(actor, "A", "1")
    deploy(service, actor, "w", "def main(env):\n    env.A = '2'\n")
    assert run(service, actor, "w")["status"] == "error"


def test_no_secret_value_in_env_listings(world):
    service, actor = world
    service.create_secret(actor, "API_KEY", SECRET)
    service.set_env(actor, "API_URL", "https://example.com")
    text = json.dumps([v.to_json() for v in service.list_env(actor)])
    assert SECRET not in text and "API_KEY" not in text


def test_a_ledger_change_trigger_runs_with_the_change(world):
    service, actor = world
    service.create_ledger(actor, "state")
    deploy(
        service,
        actor,
        "watcher",
        "def main(ledger_change, trigger):\n"
        "    return [trigger.type, ledger_change.name, ledger_change.change_type, ledger_change.data,\n"
        "            ledger_change.changed_at is not None]\n",
        triggers=[{"type": "ledger_change", "ledger": "state", "change_type": "set"}],
    )
    service.write_ledger(actor, "state", "replace", {"v": 1})
    service.write_ledger(actor, "state", "delete")  # change_type "set" only: no run for this
    assert service.dispatcher().drain() == 1
    [record] = service.function_runs(actor, "watcher")
    assert record["status"] == "success", record["error"]
    assert record["result"] == ["ledger_change", "state", "set", {"v": 1}, True]
    assert record["trigger"]["type"] == "ledger_change"


def test_a_ledger_change_trigger_needs_an_existing_valid_ledger(world):
    service, actor = world
    with pytest.raises(DeployError, match="ledger nope does not exist"):
        deploy(service, actor, "w", "def main():\n    pass\n", triggers=[{"type": "ledger_change", "ledger": "nope"}])
    with pytest.raises(DeployError, match="invalid ledger name"):
        deploy(service, actor, "w", "def main():\n    pass\n", triggers=[{"type": "ledger_change", "ledger": "No"}])


def test_a_ledger_change_chain_stops_at_the_chain_depth(world):
    service, actor = world
    service.create_ledger(actor, "loop")
    deploy(
        service,
        actor,
        "again",
        "import logic\n"
        "def main(ledger_change):\n"
        "    n = ledger_change.data.get('n', 0)\n"
        "    logic.ledger('loop').set({'n': n + 1})\n",
        triggers=[{"type": "ledger_change", "ledger": "loop"}],
    )
    service.write_ledger(actor, "loop", "replace", {"n": 0})
    dispatcher = service.dispatcher()
    assert dispatcher.drain(max_steps=100) == service.settings.chain_depth_max + 1
    assert service.get_ledger(actor, "loop").data == {"n": service.settings.chain_depth_max + 1}
    last = service.function_runs(actor, "again", limit=1)[0]
    assert last["status"] == "success"
    assert "chain depth limit" in last["logs"][-1]["message"]


def test_ledger_calls_cross_a_real_worker(tmp_path_factory):
    from tests.support import runtime_service

    service = runtime_service(tmp_path_factory, "ledger-workers", workers=2)
    try:
        actor = service.actor()
        service.create_ledger(actor, "state")
        service.set_env(actor, "GREETING", "hi")
        deploy(
            service,
            actor,
            "real",
            "import logic\n"
            "def main(env):\n"
            "    ledger = logic.ledger('state')\n"
            "    ledger.set({'g': env.GREETING})\n"
            "    try:\n"
            "        logic.ledger('nope').get()\n"
            "    except logic.LedgerError as exc:\n"
            "        return [ledger.get()['data'], str(exc)]\n",
        )
        record = run(service, actor, "real")
        assert record["status"] == "success", record["error"]
        assert record["result"][0] == {"g": "hi"} and "does not exist" in record["result"][1]
        assert service.get_ledger(actor, "state").data == {"g": "hi"}
    finally:
        service.close()
