"""store.integrations and runtime.integrations.runner: the repository, usages, firing against a real receiver."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import parse_qs

import pytest

from runtime.integrations.runner import FireResult
from store import MASK, Settings
from store.errors import Conflict, DeployError, InvalidInput, NotFound
from store.integrations import IntegrationRecord
from tests.support import OwnerIntegrations

ALICE, BOB = "user:alice", "user:bob"
KEY = "key-0123456789abcdef"


@pytest.fixture
def settings(logic_home):
    return Settings(
        home=logic_home,
        webhook_timeout_s=0.5,
        webhook_retries=2,
        integration_logs_kept=3,
        event_data_max_bytes=1000,
        webhook_render_max_chars=10_000,
    )


@pytest.fixture
def repo(store):
    return store.integrations


@pytest.fixture
def service(store, repo, settings):
    svc = OwnerIntegrations(store, settings, backoff_s=0.01)
    yield svc
    svc.close()


@pytest.fixture
def api_key(store):
    store.secrets.create(ALICE, "API_KEY", KEY)
    return KEY


def webhook(url="https://api.example.com/v1", **fields):
    spec = {"name": "notify", "event": "sensor/", "url": url}
    spec.update(fields)
    return spec


def event(name="sensor/temp", data='{"t": 21}', **extra):
    return {
        "id": "ev-1",
        "name": name,
        "data": data,
        "published_at": "2024-05-01T12:00:00.000000Z",
        "source": "dev-7",
        **extra,
    }


def commit(store, repo, record: IntegrationRecord, result: FireResult, ev: dict):
    """What the delivery worker does with a FireResult: one transaction."""
    with store.transaction():
        repo.add_log(record.id, ev["id"], result.log)
        store.secrets.record_access(result.accesses)


# -- the repository --------------------------------------------------------------


def test_create_get_list_and_to_json(service, repo, api_key):
    spec = webhook(headers={"Authorization": "Bearer {{{API_KEY}}}"}, secrets=["API_KEY"])
    record = service.create(ALICE, spec)
    assert (record.owner, record.name, record.event_prefix, record.enabled, record.secrets) == (
        ALICE,
        "notify",
        "sensor/",
        True,
        ["API_KEY"],
    )
    data = record.to_json()
    assert {k: data[k] for k in ("id", "owner", "created_at", "updated_at")} == {
        "id": record.id,
        "owner": ALICE,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    assert {k: v for k, v in data.items() if k not in ("id", "owner", "created_at", "updated_at")} == {
        **spec,
        "method": "POST",
        "enabled": True,
    }
    assert repo.get(ALICE, "notify") == record == repo.get_by_id(record.id)
    assert service.get(ALICE, "notify") == record == service.get(ALICE, record.id)
    assert service.list(ALICE) == [record] and service.list(BOB) == []
    assert "Bearer" not in repr(record)


def test_another_owner_cannot_reach_an_integration(service, api_key):
    record = service.create(ALICE, webhook(secrets=["API_KEY"], body="{{{API_KEY}}}"))
    for ref in (record.id, "notify"):
        with pytest.raises(NotFound):
            service.get(BOB, ref)
        with pytest.raises(NotFound):
            service.update(BOB, ref, webhook())
        with pytest.raises(NotFound):
            service.delete(BOB, ref)


def test_duplicate_name_is_a_conflict_per_owner(service):
    service.create(ALICE, webhook())
    with pytest.raises(Conflict, match="integration notify already exists"):
        service.create(ALICE, webhook(event="other"))
    service.create(BOB, webhook())


def test_bad_spec_and_missing_secrets_change_nothing(service, store, db_rows):
    store.secrets.create(ALICE, "PRESENT", "present-value")
    service.list(ALICE), service.list(BOB)  # their user rows exist before the snapshot
    before = db_rows()
    with pytest.raises(DeployError, match="url must start with http"):
        service.create(ALICE, webhook(url="ftp://x"))
    with pytest.raises(InvalidInput, match=r"secrets MISSING_A, MISSING_B do not exist for user:alice"):
        service.create(ALICE, webhook(secrets=["MISSING_A", "PRESENT", "MISSING_B"], body="{{{PRESENT}}}"))
    with pytest.raises(InvalidInput, match=r"secret PRESENT does not exist for user:bob"):
        service.create(BOB, webhook(secrets=["PRESENT"]))
    # The event-name rule (runtime/events/rules.py), applied to the prefix with its setting.
    with pytest.raises(DeployError, match="webhook: event: event prefix must be 1-64 characters"):
        service.create(ALICE, webhook(event="e" * 65))
    with pytest.raises(DeployError, match="event prefix must not contain control characters"):
        service.create(ALICE, webhook(event="a\nb"))
    with pytest.raises(DeployError, match="webhook: secrets: secret name must be at most 64 characters, not 65"):
        service.create(ALICE, webhook(secrets=["K" * 65]))
    assert db_rows() == before


def test_declared_secrets_are_usages(service, store, api_key):
    record = service.create(ALICE, webhook(secrets=["API_KEY"], headers={"X-Key": "{{{API_KEY}}}"}))
    info = store.secrets.info(ALICE, "API_KEY")
    assert (info.integrations, info.usage_count) == (["notify"], 1)
    with pytest.raises(Conflict, match="in use by integration notify"):
        store.secrets.delete(ALICE, "API_KEY")
    store.secrets.create(ALICE, "OTHER", "other-value")
    service.update(ALICE, record.id, webhook(name="renamed", secrets=["OTHER"], body="{{{OTHER}}}"))
    assert store.secrets.info(ALICE, "API_KEY").usage_count == 0
    assert store.secrets.info(ALICE, "OTHER").integrations == ["renamed"]
    store.secrets.delete(ALICE, "API_KEY")
    service.delete(ALICE, "renamed")
    assert store.secrets.info(ALICE, "OTHER").usage_count == 0
    store.secrets.delete(ALICE, "OTHER")
    with pytest.raises(NotFound):
        service.get(ALICE, record.id)


def test_update_replaces_the_spec(service):
    record = service.create(ALICE, webhook())
    updated = service.update(ALICE, "notify", webhook(event="alarm", method="GET", enabled=False))
    assert (updated.id, updated.event_prefix, updated.config["method"], updated.enabled) == (
        record.id,
        "alarm",
        "GET",
        False,
    )
    service.create(ALICE, webhook(name="second"))
    with pytest.raises(Conflict):
        service.update(ALICE, "second", webhook(name="notify"))


def test_for_event_matches_by_case_sensitive_prefix(service, repo):
    a = service.create(ALICE, webhook(name="a", event="sensor/"))
    b = service.create(ALICE, webhook(name="b", event="sensor/temp"))
    service.create(ALICE, webhook(name="c", event="sensor/", enabled=False))
    d = service.create(ALICE, webhook(name="d", event="50%_"))
    service.create(BOB, webhook(name="e", event="sensor/"))
    assert repo.for_event(ALICE, "sensor/temp") == [a.id, b.id]
    assert repo.for_event(ALICE, "sensor/") == [a.id]
    assert repo.for_event(ALICE, "sensor") == []
    assert repo.for_event(ALICE, "Sensor/temp") == []
    assert repo.for_event(ALICE, "50%_x") == [d.id]
    assert repo.for_event(ALICE, "50abx") == []
    repo.set_enabled(a.id, False)
    assert repo.for_event(ALICE, "sensor/temp") == [b.id]


def test_logs_keep_the_newest_n(service, repo, store):
    record = service.create(ALICE, webhook())
    other = service.create(ALICE, webhook(name="other"))
    repo.add_log(other.id, "ev-x", {"n": -1})
    for n in range(5):
        with store.transaction():
            repo.add_log(record.id, f"ev-{n}", {"n": n})
    logs = repo.logs(record.id)
    assert [entry["n"] for entry in logs] == [4, 3, 2]
    assert [entry["event_id"] for entry in logs] == ["ev-4", "ev-3", "ev-2"]
    assert [entry["n"] for entry in repo.logs(record.id, limit=1)] == [4]
    assert len(repo.logs(other.id)) == 1
    service.delete(ALICE, record.id)
    assert repo.logs(record.id) == []


# -- firing against a real receiver ------------------------------------------------


def test_fire_sends_real_secret_and_logs_it_masked(service, repo, store, receiver, api_key):
    record = service.create(
        ALICE,
        webhook(
            url=receiver.url + "/ingest?key={{{API_KEY}}}",
            headers={"Authorization": "Bearer {{{API_KEY}}}"},
            json={"name": "{{{EVENT_NAME}}}", "t": "{{{t}}}"},
            secrets=["API_KEY"],
            noDefaults=True,
        ),
    )
    ev = event()
    result = service.fire(record, ev)
    assert result.ok
    assert result.response_event == ("hook-response/sensor/temp", '{"ok": true}')
    [got] = receiver.requests
    assert got.method == "POST"
    assert got.path == f"/ingest?key={KEY}"
    assert got.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(got.body) == {"name": "sensor/temp", "t": "21"}
    log = result.log
    assert log["request"]["url"] == f"{receiver.url}/ingest?key={MASK}"
    assert log["request"]["headers"]["authorization"] == f"Bearer {MASK}"
    assert (log["response"]["status"], log["attempts"], log["error"], log["ok"]) == (200, 1, None, True)
    assert log["secrets_accessed"] == ["API_KEY"]
    assert KEY not in json.dumps(log)
    [access] = result.accesses
    assert (access.owner, access.secret_name, access.consumer_kind, access.consumer_id, access.consumer_name) == (
        ALICE,
        "API_KEY",
        "integration",
        record.id,
        "notify",
    )
    assert store.secrets.info(ALICE, "API_KEY").last_accessed_at is None  # fire writes nothing
    commit(store, repo, record, result, ev)
    assert store.secrets.info(ALICE, "API_KEY").last_accessed_at == access.at
    assert [a.consumer_kind for a in store.secrets.audit(ALICE, "API_KEY")] == ["integration"]
    [stored] = repo.logs(record.id)
    assert stored["request"]["url"].endswith(f"key={MASK}") and stored["event_id"] == "ev-1"


def test_a_new_secret_value_is_used_at_once(service, store, receiver, api_key):
    record = service.create(ALICE, webhook(url=receiver.url, headers={"X-Key": "{{{API_KEY}}}"}, secrets=["API_KEY"]))
    store.secrets.update(ALICE, "API_KEY", "rotated-value-42")
    assert service.fire(record, event()).ok
    assert receiver.requests[-1].headers["X-Key"] == "rotated-value-42"


def test_retries_on_500_then_success(service, receiver):
    receiver.statuses = [500, 503]
    record = service.create(ALICE, webhook(url=receiver.url))
    result = service.fire(record, event())
    assert (result.ok, result.log["attempts"], len(receiver.requests)) == (True, 3, 3)
    assert result.response_event[0] == "hook-response/sensor/temp"


def test_500_every_time_is_a_hook_error_after_bounded_retries(service, receiver):
    receiver.statuses = [500] * 10
    result = service.fire(service.create(ALICE, webhook(url=receiver.url)), event())
    assert (result.ok, result.log["attempts"], len(receiver.requests)) == (False, 3, 3)
    assert result.response_event == ("hook-error/sensor/temp", "HTTP 500 Internal Server Error")
    assert result.log["response"]["status"] == 500


def test_no_retry_on_4xx(service, receiver):
    receiver.statuses = [404]
    result = service.fire(service.create(ALICE, webhook(url=receiver.url)), event())
    assert (result.ok, len(receiver.requests)) == (False, 1)
    assert result.response_event == ("hook-error/sensor/temp", "HTTP 404 Not Found")


def test_connection_refused_is_a_hook_error_after_bounded_retries(service):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = service.fire(service.create(ALICE, webhook(url=f"http://127.0.0.1:{port}/x")), event())
    assert (result.ok, result.log["attempts"], result.log["response"]) == (False, 3, None)
    name, message = result.response_event
    assert name == "hook-error/sensor/temp" and message.startswith("connection failed")


def test_timeout_is_a_hook_error(service, receiver):
    receiver.delay = 60.0  # far past any bound below: only the 0.5 s timeout can end the wait
    record = service.create(ALICE, webhook(url=receiver.url))
    started = time.monotonic()
    result = service.fire(record, event())
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 15, elapsed  # generous on a loaded machine, far below the delay
    assert (result.ok, result.response_event) == (False, ("hook-error/sensor/temp", "timed out after 0.5 s"))
    assert result.log["attempts"] == 1  # the server may have acted on it: not sent again


def test_response_body_is_capped(service, receiver, settings):
    receiver.body = ("é" * 3000).encode()
    result = service.fire(service.create(ALICE, webhook(url=receiver.url)), event())
    data = result.response_event[1]
    assert result.ok and len(data.encode()) <= settings.event_data_max_bytes and data == "é" * 500
    assert result.log["response"]["truncated"] is True
    assert len(result.log["response"]["body"].encode()) <= settings.event_data_max_bytes


def test_redirect_is_not_followed(service, receiver):
    receiver.statuses = [302]
    result = service.fire(service.create(ALICE, webhook(url=receiver.url)), event())
    assert (result.ok, len(receiver.requests)) == (False, 1)
    assert result.response_event[1] == "HTTP 302 Found (redirects are not followed)"


def test_every_method_and_body_kind_reaches_the_receiver(service, receiver):
    record = service.create(
        ALICE,
        webhook(
            url=receiver.url + "/f",
            method="PUT",
            form={"room": "{{{room}}}", "n": "{{{EVENT_NAME}}}"},
            query={"src": "{{{EVENT_SOURCE}}}"},
            noDefaults=True,
        ),
    )
    assert service.fire(record, event(data='{"room": "lab 1"}')).ok
    got = receiver.requests[-1]
    assert (got.method, got.path, got.body) == ("PUT", "/f?src=dev-7", b"room=lab+1&n=sensor%2Ftemp")
    record = service.update(ALICE, "notify", webhook(url=receiver.url, method="DELETE", body="raw {{{EVENT_DATA}}}"))
    assert service.fire(record, event(data="x")).ok
    assert (receiver.requests[-1].method, receiver.requests[-1].body) == ("DELETE", b"raw x")
    record = service.update(ALICE, "notify", webhook(url=receiver.url, method="GET"))
    assert service.fire(record, event()).ok
    assert (receiver.requests[-1].method, receiver.requests[-1].body) == ("GET", b"")


def test_fire_never_raises_on_a_tampered_config(service, store, api_key, receiver):
    record = service.create(ALICE, webhook(url=receiver.url, secrets=["API_KEY"], body="{{{API_KEY}}}"))
    with store.db.transaction() as conn:
        conn.execute(
            "UPDATE integrations SET config = ? WHERE id = ?",
            (json.dumps({"url": receiver.url, "secrets": ["API_KEY"], "body": "{{> x}}"}), record.id),
        )
    result = service.fire(service.get(ALICE, record.id), event())
    assert (result.ok, result.accesses, receiver.requests) == (False, [], [])
    assert result.response_event == (
        "hook-error/sensor/temp",
        "the integration's configuration is no longer valid: update it",
    )


# -- Particle's events: hook-sent, responseTemplate, topics, no chaining --------------------


def test_hook_sent_then_the_response_are_published_in_order(service, receiver):
    result = service.fire(service.create(ALICE, webhook(url=receiver.url)), event())
    assert result.events == [("hook-sent/sensor/temp", None), ("hook-response/sensor/temp", '{"ok": true}')]
    receiver.statuses = [404]
    result = service.fire(service.get(ALICE, "notify"), event())
    assert result.events == [("hook-sent/sensor/temp", None), ("hook-error/sensor/temp", "HTTP 404 Not Found")]


def test_nothing_sent_means_no_hook_sent(service):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = service.fire(service.create(ALICE, webhook(url=f"http://127.0.0.1:{port}/x")), event())
    assert [name for name, _ in result.events] == ["hook-error/sensor/temp"]


def test_particles_default_body_reaches_the_receiver_form_encoded(service, receiver):
    assert service.fire(service.create(ALICE, webhook(url=receiver.url)), event()).ok
    got = receiver.requests[-1]
    assert got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(got.text, keep_blank_values=True) == {
        "event": ["sensor/temp"],
        "data": ['{"t": 21}'],
        "published_at": ["2024-05-01T12:00:00.000000Z"],
        "coreid": [""],
    }
    service.update(ALICE, "notify", webhook(url=receiver.url, noDefaults=True))
    assert service.fire(service.get(ALICE, "notify"), event()).ok
    assert receiver.requests[-1].body == b""


def test_response_template_and_topics_shape_what_is_published(service, receiver):
    receiver.body = json.dumps({"results": [{"id": "a", "status": "ok"}, {"id": "b", "status": "<late>"}]}).encode()
    record = service.create(
        ALICE,
        webhook(
            url=receiver.url,
            responseTemplate="{{#results}}{{id}}={{status}};{{/results}}",
            responseTopic="weather/{{room}}/{{PARTICLE_EVENT_NAME}}",
            errorResponseTopic="failed/{{{PARTICLE_EVENT_NAME}}}",
        ),
    )
    result = service.fire(record, event(data='{"room": "lab"}'))
    assert result.events[-1] == ("weather/lab/sensor/temp", "a=ok;b=&lt;late&gt;;")
    receiver.statuses = [400]
    assert service.fire(record, event()).events[-1] == ("failed/sensor/temp", "HTTP 400 Bad Request")


def test_a_response_template_that_renders_too_much_is_a_hook_error(service, receiver, settings):
    receiver.body = json.dumps({"a": list(range(30))}).encode()
    record = service.create(ALICE, webhook(url=receiver.url, responseTemplate="{{#a}}{{#a}}{{#a}}x{{/a}}{{/a}}{{/a}}"))
    result = service.fire(record, event())
    assert not result.ok and len(receiver.requests) == 1
    limit = settings.webhook_render_max_chars
    assert result.events[-1] == (
        "hook-error/sensor/temp",
        f"responseTemplate: the templates rendered more than {limit} characters",
    )


def test_a_request_that_renders_too_much_is_not_sent(service, receiver):
    record = service.create(
        ALICE, webhook(url=receiver.url, body="{{#a}}{{#a}}{{#a}}{{{EVENT_DATA}}}{{/a}}{{/a}}{{/a}}")
    )
    result = service.fire(record, event(data=json.dumps({"a": list(range(20))})))
    assert (result.ok, receiver.requests, result.log["request"]) == (False, [], None)
    assert result.events == [
        ("hook-error/sensor/temp", "the templates rendered more than 10000 characters")
    ]  # the setting


@pytest.mark.parametrize(
    "ev",
    [
        event(name="sensor/hook"),  # control: fires
        event(name="hook-response/sensor/temp"),
        event(name="hook-error/sensor/temp"),
        event(name="hook-sent/sensor/temp"),
        event(name="sensor/result", source="integration:other"),
    ],
)
def test_events_a_webhook_published_never_fire_one(service, receiver, ev):
    for prefix in ("sensor/", "hook-"):
        service.create(ALICE, webhook(name=f"on-{prefix[:4]}", url=receiver.url, event=prefix))
    fired = [service.fire(service.get(ALICE, name), ev) for name in ("on-sens", "on-hook")]
    if ev["name"] == "sensor/hook":
        assert all(r.ok for r in fired) and len(receiver.requests) == 2  # (matching prefixes is the bus's job)
        return
    assert receiver.requests == []
    for result in fired:
        assert (result.ok, result.events, result.accesses, result.log["request"]) == (False, [], [], None)
        assert (
            result.log["error"]
            == "events published by a webhook (hook-sent, hook-response, hook-error) never fire webhooks"
        )


def test_a_literal_topic_gets_the_event_name_rule_at_create(service, db_rows):
    service.list(ALICE)
    before = db_rows()
    with pytest.raises(DeployError, match="webhook: responseTopic: event name must be 1-64 characters"):
        service.create(ALICE, webhook(responseTopic="t" * 65))
    with pytest.raises(DeployError, match="webhook: errorResponseTopic: event name must not contain control"):
        service.create(ALICE, webhook(errorResponseTopic="a\nb"))
    assert db_rows() == before
    service.create(ALICE, webhook(responseTopic="hook-response/" + "t" * 64))  # the hook prefix's allowance
