"""A webhook delivery: its log reaches the live streams after commit, and every event the
runner returns (hook-sent, then the response or error, or custom topics) is checked and
published with the integration as its source."""

from __future__ import annotations

import pytest

from runtime.events.streams import WEBHOOK_LOGS
from store import Settings, Store
from tests.support import in_process_service


@pytest.fixture
def world(settings: Settings):
    settings = settings.model_copy(update={"webhook_allow_private": True, "webhook_retries": 0})
    Store.initialize(settings)[0].close()
    service = in_process_service(settings)
    yield service, service.actor()
    service.close()


def published(service, prefix=""):
    rows = service.store.db.all("SELECT name, source, data FROM events ORDER BY rowid")
    return [(r[0], r[1], r[2]) for r in rows if r[0].startswith(prefix)]


def test_the_log_is_streamed_after_commit_with_its_id(world, receiver, monkeypatch):
    service, actor = world
    seen = []
    monkeypatch.setattr(service.streams, "publish", lambda owner, item: seen.append((owner, item)))
    record = service.create_integration(actor, {"name": "n", "event": "ping", "url": receiver.url + "/x"})
    accepted = service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    logs = [(owner, item) for owner, item in seen if item.topic == WEBHOOK_LOGS]
    [(owner, item)] = logs
    [stored] = service.integration_logs(actor, "n")
    assert owner == actor.owner and item.key == record.id
    assert item.body["event_id"] == accepted["id"] and item.body["id"] == stored["id"]


def test_no_log_is_streamed_when_the_commit_fails(world, receiver, monkeypatch):
    service, actor = world
    seen = []
    monkeypatch.setattr(service.streams, "publish", lambda owner, item: seen.append(item))
    service.create_integration(actor, {"name": "n", "event": "ping", "url": receiver.url + "/x"})
    service.publish_event(actor, "ping", "1")

    def fail(*args, **kwargs):
        raise RuntimeError("commit fails")

    monkeypatch.setattr(service.store.events, "finish", fail)
    with pytest.raises(RuntimeError):
        service.dispatcher().deliver(service.store.events.claim("9999", "9999")[0])
    assert not [i for i in seen if i.topic == WEBHOOK_LOGS]


def test_hook_sent_and_response_are_both_published_from_the_integration(world, receiver):
    service, actor = world
    service.create_integration(actor, {"name": "n", "event": "ping", "url": receiver.url + "/x"})
    service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    assert [(n, s) for n, s, _ in published(service, "hook-")] == [
        ("hook-sent/ping", "integration:n"),
        ("hook-response/ping", "integration:n"),
    ]


def test_each_refused_event_is_noted_and_the_others_published(world, receiver):
    service, actor = world
    # The response topic renders to 2 x 60 characters: refused; hook-sent still goes out.
    service.create_integration(
        actor,
        {
            "name": "n",
            "event": "a" * 10,
            "url": receiver.url + "/x",
            "responseTopic": "{{{PARTICLE_EVENT_NAME}}}/{{{PARTICLE_EVENT_NAME}}}",
        },
    )
    service.publish_event(actor, "a" * 60, "1")
    service.dispatcher().drain()
    names = [n for n, _, _ in published(service) if n != "a" * 60]
    assert names == ["hook-sent/" + "a" * 60]
    [log] = service.integration_logs(actor, "n")
    assert log["error"].count("response event not published") == 1


def test_a_failed_webhook_keeps_its_failure_text_on_the_delivery(world, receiver):
    service, actor = world
    receiver.statuses = [500]
    service.create_integration(actor, {"name": "n", "event": "ping", "url": receiver.url + "/x"})
    accepted = service.publish_event(actor, "ping", "1")
    service.dispatcher().drain()
    [delivery] = service.store.events.deliveries_of(accepted["id"])
    assert delivery["status"] == "failed" and delivery["last_error"]
    assert [n for n, _, _ in published(service, "hook-")] == ["hook-sent/ping", "hook-error/ping"]
