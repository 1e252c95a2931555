"""`"use_env": true`: an integration's templates read the owner's environment variables;
a name that is both a declared secret and a variable is refused, at create and at fire time."""

from __future__ import annotations

import pytest

from store import Settings, Store
from store.errors import DeployError, InvalidInput
from tests.support import in_process_service

SECRET = "s3cr3t-hook-value-77aa"


@pytest.fixture
def world(settings: Settings):
    settings = settings.model_copy(update={"webhook_allow_private": True, "webhook_retries": 0})
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    yield service, service.actor()
    service.close()


def spec(receiver, **extra):
    return {"name": "n", "event": "ping", "url": receiver.url + "/in?region={{{REGION}}}", "use_env": True, **extra}


def test_env_variables_are_rendered(world, receiver):
    service, actor = world
    service.set_env(actor, "REGION", "eu-west")
    service.set_env(actor, "API_PATH", "/v2")
    record = service.create_integration(actor, spec(receiver, headers={"X-Api": "{{{API_PATH}}}"}))
    assert record.to_json()["use_env"] is True
    service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    [request] = receiver.requests
    assert "region=eu-west" in request.path
    assert request.headers["X-Api"] == "/v2"


def test_without_use_env_the_name_is_refused(world, receiver):
    service, actor = world
    service.set_env(actor, "REGION", "eu")
    body = spec(receiver)
    del body["use_env"]
    with pytest.raises(DeployError, match="neither a declared secret nor an event variable"):
        service.create_integration(actor, body)


def test_a_missing_variable_is_refused_at_create(world, receiver):
    service, actor = world
    with pytest.raises(InvalidInput, match="environment variable REGION does not exist"):
        service.create_integration(actor, spec(receiver))
    assert service.list_integrations(actor) == []


def test_env_variables_are_plain_variables_only(world, receiver):
    service, actor = world
    service.set_env(actor, "REGION", "eu")
    with pytest.raises(DeployError, match="plain variable only"):
        service.create_integration(actor, spec(receiver, body="{{#REGION}}x{{/REGION}}"))


def test_a_clash_with_a_declared_secret_is_refused_at_create(world, receiver):
    service, actor = world
    service.create_secret(actor, "API_KEY", SECRET)
    service.set_env(actor, "REGION", "eu")
    service.set_env(actor, "API_KEY", "plain")
    with pytest.raises(InvalidInput, match="API_KEY: both a declared secret and an environment variable") as err:
        service.create_integration(actor, spec(receiver, secrets=["API_KEY"], headers={"K": "{{{API_KEY}}}"}))
    assert SECRET not in str(err.value)


def test_a_clash_at_fire_time_is_a_hook_error_and_nothing_is_sent(world, receiver):
    service, actor = world
    service.create_secret(actor, "API_KEY", SECRET)
    service.set_env(actor, "REGION", "eu")
    service.create_integration(actor, spec(receiver, secrets=["API_KEY"], headers={"K": "{{{API_KEY}}}"}))
    service.set_env(actor, "API_KEY", "now-a-variable-too")  # env changed after the check
    service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    assert receiver.requests == []
    [log] = service.integration_logs(actor, "n")
    assert "API_KEY" in log["error"] and SECRET not in str(log)
    rows = service.store.db.all("SELECT name, data FROM events WHERE name LIKE 'hook-error/%'")
    assert [r[0] for r in rows] == ["hook-error/ping"] and "API_KEY" in rows[0][1] and SECRET not in rows[0][1]


def test_a_variable_deleted_later_is_a_hook_error(world, receiver):
    service, actor = world
    service.set_env(actor, "REGION", "eu")
    service.create_integration(actor, spec(receiver))
    service.delete_env(actor, "REGION")
    service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    assert receiver.requests == []
    [log] = service.integration_logs(actor, "n")
    assert "REGION does not exist" in log["error"]


def test_a_secret_in_an_env_value_is_still_masked_in_logs(world, receiver):
    service, actor = world
    service.create_secret(actor, "API_KEY", SECRET)
    service.set_env(actor, "REGION", "eu")
    service.create_integration(actor, spec(receiver, secrets=["API_KEY"], headers={"K": "{{{API_KEY}}}"}))
    service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    [log] = service.integration_logs(actor, "n")
    assert SECRET not in str(log) and "region=eu" in log["request"]["url"]
