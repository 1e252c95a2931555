"""The publish fast path (runtime/http/publish_fast_path.py) answers exactly as the FastAPI route.

Every request below goes to two apps over the same service, one with the fast
path and one without; status, error body and the headers a client acts on must
be the same (an accepted event has its own id and time, so only its shape and
name are compared).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.http.auth_throttle import FAILURES_MAX, AuthThrottle
from runtime.service import Service
from store import Settings, Store

LONG = "x" * 65


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    settings = Settings(
        home=Path(tmp_path_factory.mktemp("publish-route")) / "home",
        master_key=None,
        event_data_max_bytes=1000,
        http_body_max_bytes=4000,
    )
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    admin = service.actor()
    service.create_org(admin, "acme")
    other = service.create_user(admin, "mallory")
    service.create_org(other, "elsewhere")
    with TestClient(create_app(service)) as fast, TestClient(create_app(service, publish_fast_path=False)) as plain:
        yield fast, plain, init.token, service
    service.close()


def _bodies(token: str):
    ok = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    good = json.dumps({"name": "sensor-test", "data": "21.5"}).encode()
    yield "valid", ok, good
    yield "no data", ok, b'{"name": "sensor-test"}'
    yield "null data", ok, b'{"name": "sensor-test", "data": null}'
    yield "charset", {**ok, "Content-Type": "application/json; charset=utf-8"}, good
    yield "no content type", {"Authorization": f"Bearer {token}"}, good
    yield "text/plain", {**ok, "Content-Type": "text/plain"}, good
    yield "+json", {**ok, "Content-Type": "application/vnd.api+json"}, good
    yield "lowercase scheme", {**ok, "Authorization": f"bearer {token}"}, good
    yield "no token", {"Content-Type": "application/json"}, good
    yield "bad token", {**ok, "Authorization": "Bearer not-a-token"}, good
    yield "basic scheme", {**ok, "Authorization": f"Basic {token}"}, good
    yield "scheme only", {**ok, "Authorization": "Bearer"}, good
    yield "two spaces", {**ok, "Authorization": f"Bearer  {token}"}, good
    yield "invalid json", ok, b'{"name": '
    yield "empty body", ok, b""
    yield "a list", ok, b"[]"
    yield "a string", ok, b'"sensor-test"'
    yield "null", ok, b"null"
    yield "extra field", ok, b'{"name": "a", "extra": 1}'
    yield "name not text", ok, b'{"name": 5}'
    yield "data not text", ok, b'{"name": "a", "data": {"x": 1}}'
    yield "empty name", ok, b'{"name": ""}'
    yield "control character", ok, b'{"name": "a\\nb"}'
    yield "name too long", ok, json.dumps({"name": LONG}).encode()
    yield "data too large", ok, json.dumps({"name": "a", "data": "d" * 1001}).encode()
    yield "body too large", ok, json.dumps({"name": "a", "data": "d" * 5000}).encode()
    yield "duplicate keys", ok, b'{"name": "first", "name": "second"}'
    yield "lone surrogate", ok, b'{"name": "a", "data": "\\ud800"}'
    yield "not utf-8", ok, b'{"name": "\xff"}'
    yield "utf-16", ok, json.dumps({"name": "wide"}).encode("utf-16")


PATHS = [
    "/v1/events",
    "/v1/orgs/acme/events",
    "/v1/orgs/elsewhere/events",
    "/v1/orgs/nobody/events",
    "/v1/orgs/a%2Fb/events",
]


def _same(fast, plain, method, path, headers, body):
    a = fast.request(method, path, headers=headers, content=body)
    b = plain.request(method, path, headers=headers, content=body)
    assert a.status_code == b.status_code, (a.text, b.text)
    for header in ("content-type", "www-authenticate", "allow"):
        assert a.headers.get(header) == b.headers.get(header), header
    if a.status_code == 202:
        assert a.json().keys() == b.json().keys() >= {"id", "name", "published_at", "deliveries"}
        assert a.json()["name"] == b.json()["name"]
        assert a.json()["id"] != b.json()["id"]  # both were published
    else:
        assert a.content == b.content
    return a


@pytest.mark.parametrize("path", PATHS)
def test_every_request_gets_the_routes_answer(both, path):
    fast, plain, token, _service = both
    statuses = {}
    for label, headers, body in _bodies(token):
        try:
            statuses[label] = _same(fast, plain, "POST", path, headers, body).status_code
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None
    if path in ("/v1/events", "/v1/orgs/acme/events"):  # the corpus does reach the fast path
        assert statuses["valid"] == statuses["charset"] == statuses["lowercase scheme"] == 202
        assert statuses["no token"] == statuses["bad token"] == 401
        assert statuses["invalid json"] == 400 and statuses["extra field"] == 422
        assert statuses["body too large"] == 413


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])  # (GET is the live stream: test_live.py)
def test_other_methods_are_the_routes_business(both, method):
    fast, plain, token, _service = both
    _same(fast, plain, method, "/v1/events", {"Authorization": f"Bearer {token}"}, b"")


def test_the_first_authorization_header_counts(both):
    fast, plain, token, _service = both
    body = b'{"name": "a"}'
    for pair in (
        [("authorization", "Bearer nope"), ("authorization", f"Bearer {token}")],
        [("authorization", f"Bearer {token}"), ("authorization", "Bearer nope")],
    ):
        a = fast.post("/v1/events", headers=pair + [("content-type", "application/json")], content=body)
        b = plain.post("/v1/events", headers=pair + [("content-type", "application/json")], content=body)
        assert a.status_code == b.status_code


def test_a_full_queue_is_429_on_both(tmp_path):
    settings = Settings(home=tmp_path / "home", master_key=None, queue_max_pending=1)
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    try:
        service.create_integration(service.actor(), {"name": "hook", "event": "busy", "url": "https://example.com/in"})
        headers = {"Authorization": f"Bearer {init.token}"}
        with TestClient(create_app(service)) as fast, TestClient(create_app(service, publish_fast_path=False)) as plain:
            assert fast.post("/v1/events", headers=headers, json={"name": "busy"}).status_code == 202
            a = fast.post("/v1/events", headers=headers, json={"name": "busy"})
            b = plain.post("/v1/events", headers=headers, json={"name": "busy"})
            assert a.status_code == b.status_code == 429
            assert a.json() == b.json() and "queue" in a.json()["error"]
    finally:
        service.close()


def test_an_accepted_event_is_durable_and_the_pool_knows_a_request_was_under_way(both):
    fast, _plain, token, service = both
    seen = []
    publish = service.publish_event

    class Pool:
        others_busy = None

    # create_app wires the pool's hint to the request count: look at it from inside a publish.
    pool = service.pool = Pool()
    app = create_app(service)
    service.pool = None

    def spy(*args, **kwargs):
        seen.append(pool.others_busy())
        return publish(*args, **kwargs)

    service.publish_event = spy
    try:
        with TestClient(app) as client:
            response = client.post(
                "/v1/events", headers={"Authorization": f"Bearer {token}"}, json={"name": "durable", "data": "x"}
            )
    finally:
        del service.publish_event
    assert response.status_code == 202
    assert seen == [True]
    assert pool.others_busy() is False  # and nothing is under way now
    assert service.store.events.event(response.json()["id"])["data"] == "x"


@pytest.mark.parametrize("path", ["/v1/events", "/v1/orgs/acme/events"])
@pytest.mark.parametrize("authorized", [True, False])
def test_a_chunked_body_over_the_limit_is_413_on_the_fast_path_too(both, path, authorized):
    """Without a Content-Length, BodyLimit counts the body as it arrives and raises from
    receive(); the fast path reads the body itself, so that must reach BodyLimit as a 413,
    not the 500 guard in between."""
    fast, plain, token, _service = both
    body = json.dumps({"name": "big", "data": "d" * 5000}).encode()

    def chunks():  # a generator: httpx sends it chunked, without Content-Length
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    headers = {"Content-Type": "application/json"}
    if authorized:
        headers["Authorization"] = f"Bearer {token}"
    a = fast.post(path, headers=headers, content=chunks())
    b = plain.post(path, headers=headers, content=chunks())
    assert b.status_code == 413
    assert (a.status_code, a.content) == (b.status_code, b.content)


def test_throttled_addresses_get_the_routes_429_and_failures_count_once(tmp_path):
    """The fast path never counts a failure (the route it hands the request to does, once),
    and refuses a throttled address by handing it to the route as well."""
    settings = Settings(home=tmp_path / "home", master_key=None)
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    now = [1000.0]
    try:
        fast_app = create_app(service, auth_throttle=AuthThrottle(clock=lambda: now[0]))
        plain_app = create_app(service, publish_fast_path=False, auth_throttle=AuthThrottle(clock=lambda: now[0]))
        good = {"Authorization": f"Bearer {init.token}", "Content-Type": "application/json"}
        bad = {**good, "Authorization": "Bearer lgc_guess"}
        body = b'{"name": "sensor-test"}'
        with TestClient(fast_app) as fast, TestClient(plain_app) as plain:
            for _ in range(FAILURES_MAX):
                assert _same(fast, plain, "POST", "/v1/events", bad, body).status_code == 401
            for headers in (bad, good):
                a = _same(fast, plain, "POST", "/v1/events", headers, body)
                assert a.status_code == 429
                assert (
                    a.headers["retry-after"]
                    == plain.post("/v1/events", headers=headers, content=body).headers["retry-after"]
                    == "60"
                )
            now[0] += 60
            assert _same(fast, plain, "POST", "/v1/events", good, body).status_code == 202
    finally:
        service.close()
