"""runtime.events.rules and the secret-name rule: one definition each, every door follows its setting.

Each limit is changed from its default, up and down, and every path that applies it is tried
with a real service and real workers: a manifest's event trigger, a webhook's event prefix, a
user's publish, a manual run's event, a run's `logic.publish` (checked by the sandbox inside
the worker and again by the pool), a secret's name in the store, in a manifest and in a
webhook, and the chain depth for runs and for webhook responses.
"""

from __future__ import annotations

import sqlite3

import pytest

from runtime.manifest import files_from_json
from store.errors import DeployError, InvalidInput
from tests.support import runtime_service

PUBLISHER = """\
import logic

def main(event):
    outcome = []
    for name in NAMES:
        try:
            logic.publish(name, "x")
            outcome.append("ok")
        except ValueError as exc:
            outcome.append(str(exc))
    return outcome
"""


def publisher(*names: str) -> str:
    return f"NAMES = {list(names)!r}\n" + PUBLISHER


@pytest.fixture(scope="module")
def raised(tmp_path_factory):
    """Limits above their defaults: event names 80, secret names 80, chain depth 1."""
    service = runtime_service(
        tmp_path_factory,
        "raised",
        workers=2,
        event_name_max_chars=80,
        secret_name_max_chars=80,
        chain_depth_max=1,
        webhook_allow_private=True,
    )
    yield service, service.actor()
    service.close()


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    """Limits below their defaults: event names 10, secret names 10."""
    service = runtime_service(tmp_path_factory, "lowered", workers=2, event_name_max_chars=10, secret_name_max_chars=10)
    yield service, service.actor()
    service.close()


def trigger_fn(name: str, event: str, source: str = "def main(event):\n    return 1\n", **manifest):
    return files_from_json(
        {"name": name, "source": source, "triggers": [{"type": "event", "event_name": event}], **manifest}
    )


def hook(name: str, prefix: str, url: str = "http://127.0.0.1:9/", **spec) -> dict:
    return {"name": name, "event": prefix, "url": url, **spec}


# event names ---------------------------------------------------------------------------------


def test_a_raised_event_name_limit_reaches_every_door(raised):
    service, admin = raised
    long, too_long = "e" * 80, "e" * 81  # the old literal 64 would refuse the first
    service.deploy_function(admin, trigger_fn("long-trigger", long))
    service.create_integration(admin, hook("long-prefix", long))
    accepted = service.publish_event(admin, long, "x")
    assert accepted["deliveries"] == 2  # the function and the webhook both subscribe to it
    record = service.execute_function(
        admin, files_from_json({"name": "pub", "source": publisher(long, too_long)}), event_name=long, data="x"
    )
    assert record["status"] == "success", record["error"]
    assert record["result"] == ["ok", "event name must be 1 to 80 characters, not 81"]
    assert [e["name"] for e in record["events_published"]] == [long]

    with pytest.raises(DeployError, match=r"triggers\.0\.event_name: event name must be 1-80 characters"):
        service.deploy_function(admin, trigger_fn("too-long", too_long))
    with pytest.raises(DeployError, match=r"event: event prefix must be 1-80 characters"):
        service.create_integration(admin, hook("too-long", too_long))
    with pytest.raises(InvalidInput, match="event name must be 1-80 characters"):
        service.publish_event(admin, too_long)
    with pytest.raises(InvalidInput, match="event name must be 1-80 characters"):
        service.execute_function(
            admin, files_from_json({"name": "m", "source": "def main(event):\n    return 1\n"}), event_name=too_long
        )


def test_a_lowered_event_name_limit_reaches_every_door(lowered):
    service, admin = lowered
    fits, too_long = "e" * 10, "e" * 11
    service.deploy_function(admin, trigger_fn("fits", fits))
    service.create_integration(admin, hook("fits", fits))
    assert service.publish_event(admin, fits)["deliveries"] == 2
    record = service.execute_function(admin, files_from_json({"name": "pub", "source": publisher(fits, too_long)}))
    assert record["result"] == ["ok", "event name must be 1 to 10 characters, not 11"]

    with pytest.raises(DeployError, match=r"event name must be 1-10 characters"):
        service.deploy_function(admin, trigger_fn("too-long", too_long))
    with pytest.raises(DeployError, match=r"event prefix must be 1-10 characters"):
        service.create_integration(admin, hook("too-long", too_long))
    with pytest.raises(InvalidInput, match="event name must be 1-10 characters"):
        service.publish_event(admin, too_long)


def test_control_characters_are_refused_by_the_same_rule_at_every_door(lowered):
    service, admin = lowered
    for door in (
        lambda: service.deploy_function(admin, trigger_fn("ctl", "a\nb")),
        lambda: service.create_integration(admin, hook("ctl", "a\x00b")),
        lambda: service.publish_event(admin, "a\rb"),
    ):
        with pytest.raises(InvalidInput, match="must not contain control characters"):
            door()


# secret names --------------------------------------------------------------------------------


def test_a_raised_secret_name_limit_reaches_the_store_manifests_and_webhooks(raised):
    service, admin = raised
    name = "K" * 70  # the old literal 64 in check_declared refused it at parse time
    service.create_secret(admin, name, "value")
    fn = service.deploy_function(
        admin,
        files_from_json(
            {
                "name": "reads-long",
                "secrets": [name],
                "source": f"def main(event, secrets):\n    return len(secrets.{name})\n",
            }
        ),
    )
    assert service.execute_function(admin, fn.name)["result"] == 5
    service.create_integration(
        admin, hook("declares-long", "x", secrets=[name], headers={"X-Key": "{{{" + name + "}}}"})
    )
    too_long = "K" * 81
    with pytest.raises(InvalidInput, match="at most 80 characters"):
        service.create_secret(admin, too_long, "value")
    with pytest.raises(DeployError, match="secret name must be at most 80 characters, not 81"):
        service.deploy_function(
            admin, files_from_json({"name": "too-long", "secrets": [too_long], "source": "def main():\n    return 1\n"})
        )


def test_a_lowered_secret_name_limit_reaches_the_store_manifests_and_webhooks(lowered):
    service, admin = lowered
    too_long = "K" * 11
    with pytest.raises(InvalidInput, match="at most 10 characters, not 11"):
        service.check_secret_name(too_long)
    with pytest.raises(InvalidInput, match="at most 10 characters, not 11"):
        service.create_secret(admin, too_long, "value")
    with pytest.raises(DeployError, match="secrets: secret name must be at most 10 characters, not 11"):
        service.deploy_function(
            admin, files_from_json({"name": "too-long", "secrets": [too_long], "source": "def main():\n    return 1\n"})
        )
    with pytest.raises(DeployError, match="secrets: secret name must be at most 10 characters, not 11"):
        service.create_integration(
            admin, hook("too-long", "x", secrets=[too_long], headers={"X-Key": "{{{" + too_long + "}}}"})
        )


# chain depth ---------------------------------------------------------------------------------


def events_named(service, name: str) -> int:
    conn = sqlite3.connect(service.settings.db_path)
    try:
        return conn.execute("SELECT count(*) FROM events WHERE name = ?", (name,)).fetchone()[0]
    finally:
        conn.close()


def test_the_chain_depth_setting_ends_run_chains_and_hook_chains_alike(raised, receiver):
    service, admin = raised  # chain_depth_max = 1
    service.deploy_function(admin, trigger_fn("first", "chain-a", publisher("chain-b")))
    second = service.deploy_function(admin, trigger_fn("second", "chain-b", publisher("chain-c")))
    service.create_integration(admin, hook("on-b", "chain-b", url=receiver.url + "/b", method="GET"))
    service.create_integration(admin, hook("on-direct", "chain-direct", url=receiver.url + "/d", method="GET"))
    service.publish_event(admin, "chain-a")  # depth 0
    service.publish_event(admin, "chain-direct")  # depth 0
    service.dispatcher().drain()

    # first (depth 0) published chain-b at depth 1: allowed, so second ran and the webhook fired;
    # second's chain-c and the webhook's response would be depth 2: refused, both of them.
    (run,) = service.function_runs(admin, second.id)
    assert run["status"] == "error"
    assert "event chain depth limit of 1 reached" in run["error"]["message"]
    assert events_named(service, "chain-c") == 0
    assert sorted(r.path.partition("?")[0] for r in receiver.requests) == ["/b", "/d"]  # a GET: defaults in the query
    assert events_named(service, "hook-response/chain-b") == 0
    assert events_named(service, "hook-response/chain-direct") == 1  # depth 1 <= 1


def test_event_data_with_a_nul_character_is_refused_on_every_backend():
    """PostgreSQL's text cannot store NUL: refused up front (one bad publish in a group commit
    must not fail the others), the same on SQLite so both backends accept the same events."""
    from runtime.events.rules import check_event
    from store import Settings

    with pytest.raises(InvalidInput, match="NUL"):
        check_event("reading", "21\x00C", Settings())
    check_event("reading", "21\u00b0C", Settings())  # other control-free text is fine
