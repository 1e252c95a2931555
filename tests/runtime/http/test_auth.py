"""Who may call what: every /v1 route wants a valid token, and a user reaches only
his own sandbox and the organizations he belongs to (403 for another org, 404
for another user's ids: ids are not a directory). Failed tokens are throttled
per client address (runtime/auth_throttle.py), on a clock the tests move; and
no log line a request causes can be forged by what the request sent."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from runtime.http.app import create_app
from runtime.http.auth_throttle import FAILURES_MAX, WINDOW_S, AuthThrottle, client_address
from runtime.service import Service
from store import Settings, Store
from store.errors import StoreBusy

SECRET = "alice-s3cr3t-4d9b1e"
SOURCE = "def main(event, secrets):\n    return len(secrets.API_KEY)\n"
FUNCTION = {
    "name": "reformat",
    "secrets": ["API_KEY"],
    "source": SOURCE,
    "triggers": [{"type": "event", "event_name": "sensor-test"}],
}
WEBHOOK = {
    "name": "notify",
    "event": "sensor/",
    "url": "https://api.example.com/?k={{{API_KEY}}}",
    "secrets": ["API_KEY"],
}
BODIES = {  # a valid body for every route that takes one, so that only the caller is wrong
    "create_secret": {"name": "API_KEY", "value": "bob-value"},
    "update_secret": {"value": "bob-value"},
    "deploy_function": FUNCTION,
    "update_function": FUNCTION,
    "execute_function": {**FUNCTION, "event": {"name": "sensor-test", "data": "1"}},
    "publish_event": {"name": "sensor-test", "data": "1"},
    "publish_device_event": {"name": "sensor-test", "data": "1"},
    "create_integration": WEBHOOK,
    "update_integration": WEBHOOK,
    "set_env": {"value": "plain"},
    "create_ledger": {"ledger": {"name": "counters"}},
    "update_ledger": {"ledger": {"description": "d"}},
    "set_ledger_instance": {"instance": {"data": {"a": 1}}},
    "import_secrets": {"content": "BOB_KEY=bob-value"},
}


class _Shell:
    """What create_app reads of a Service to list its routes: its settings, and no worker pool."""

    settings = Settings()
    pool = None


def v1_routes() -> list[tuple[str, str, str]]:
    """(method, path, endpoint name) of every /v1 route, as the app has them."""
    return sorted(
        (method, route.path, route.name.removeprefix("org_"))
        for route in create_app(_Shell()).routes
        if isinstance(route, APIRoute) and route.path.startswith("/v1")
        for method in route.methods
    )


ROUTES = v1_routes()
ORG_ROUTES = [r for r in ROUTES if r[1].startswith("/v1/orgs/{org}")]


def fill(path: str, **values: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


def test_the_route_surface_is_the_designed_one() -> None:
    sandbox = {(m, p) for m, p, _ in ROUTES if not p.startswith("/v1/orgs/")}
    assert sandbox == {
        ("GET", "/v1/secrets"),
        ("POST", "/v1/secrets"),
        ("GET", "/v1/secrets/{name}"),
        ("PUT", "/v1/secrets/{name}"),
        ("DELETE", "/v1/secrets/{name}"),
        ("GET", "/v1/secrets/{name}/versions"),
        ("POST", "/v1/secrets/{name}/versions/{version}/restore"),
        ("POST", "/v1/secrets:import"),
        ("GET", "/v1/logic/functions"),
        ("POST", "/v1/logic/functions"),
        ("GET", "/v1/logic/functions/{function_id}"),
        ("PUT", "/v1/logic/functions/{function_id}"),
        ("DELETE", "/v1/logic/functions/{function_id}"),
        ("GET", "/v1/logic/functions/{function_id}/runs"),
        ("GET", "/v1/logic/functions/{function_id}/runs/{run_id}"),
        ("POST", "/v1/logic/execute"),
        ("POST", "/v1/logic/runs/{run_id}/replay"),
        ("POST", "/v1/logic/functions/{function_id}/runs/{run_id}/replay"),
        ("POST", "/v1/events"),
        ("GET", "/v1/integrations"),
        ("POST", "/v1/integrations"),
        ("GET", "/v1/integrations/{integration_id}"),
        ("PUT", "/v1/integrations/{integration_id}"),
        ("DELETE", "/v1/integrations/{integration_id}"),
        ("GET", "/v1/integrations/{integration_id}/logs"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/audit/changes"),
        ("GET", "/v1/audit/verify"),
        # Particle's shapes and the live streams
        ("GET", "/v1/logic/functions/{function_id}/runs/{run_id}/logs"),
        ("POST", "/v1/devices/events"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/{prefix:path}"),
        ("GET", "/v1/devices/events"),
        ("GET", "/v1/devices/events/{prefix:path}"),
        ("GET", "/v1/devices/{device_id}/events"),
        ("GET", "/v1/logic/functions/{function_id}/runs/stream"),
        ("GET", "/v1/integrations/{integration_id}/logs/stream"),
        # environment variables and ledgers (particle-api-js's ledger paths)
        ("GET", "/v1/env"),
        ("GET", "/v1/env/{name}"),
        ("PUT", "/v1/env/{name}"),
        ("DELETE", "/v1/env/{name}"),
        ("GET", "/v1/ledgers"),
        ("POST", "/v1/ledgers"),
        ("GET", "/v1/ledgers/{name}"),
        ("PUT", "/v1/ledgers/{name}"),
        ("DELETE", "/v1/ledgers/{name}"),
        ("GET", "/v1/ledgers/{name}/instances"),
        ("GET", "/v1/ledgers/{name}/instances/{scope_value}"),
        ("PUT", "/v1/ledgers/{name}/instances/{scope_value}"),
        ("DELETE", "/v1/ledgers/{name}/instances/{scope_value}"),
        ("GET", "/v1/ledgers/{name}/instances/{scope_value}/versions"),
        ("GET", "/v1/ledgers/{name}/instances/{scope_value}/versions/{version}"),
    }
    # Every route has its organization twin but the change audit's check (one chain for all owners).
    assert {(m, p.replace("/v1/orgs/{org}", "/v1")) for m, p, _ in ORG_ROUTES} == sandbox - {
        ("GET", "/v1/audit/verify")
    }


@pytest.fixture
def world(settings: Settings):
    """alice (admin, from init) with a secret, a function, a run, an integration and org acme;
    bob, a plain user with his own org bobco."""
    store, init = Store.initialize(settings)
    store.close()
    service = Service.open(settings)
    alice = service.actor()
    bob = service.create_user(alice, "bob")
    service.create_org(alice, "acme")
    service.create_org(bob, "bobco")
    with TestClient(create_app(service)) as client:
        w = World(client, service, alice_token=init.token, bob_token=service.create_token(alice, "bob"))
        assert w.alice("POST", "/v1/secrets", json={"name": "API_KEY", "value": SECRET}).status_code == 201
        w.function = w.alice("POST", "/v1/logic/functions", json=FUNCTION).json()
        w.run_id = "alice-run"
        service.store.functions.add_run(
            {
                "id": w.run_id,
                "function_id": w.function["id"],
                "function_version": 1,
                "trigger": {"type": "manual", "event_id": None, "scheduled_at": None},
                "status": "success",
                "started_at": "2025-01-01T00:00:00Z",
                "finished_at": "2025-01-01T00:00:01Z",
                "duration_ms": 3.0,
                "logs": [],
                "result": 8,
                "error": None,
                "secrets_accessed": ["API_KEY"],
                "events_published": [],
            }
        )
        hook = w.alice("POST", "/v1/integrations", json=WEBHOOK)
        w.integration = hook.json() if hook.status_code == 201 else {"id": "integration-not-created"}
        yield w
        for response in w.responses:
            assert SECRET not in response.text
    service.close()


class World:
    function: dict
    integration: dict
    run_id: str

    def __init__(self, client: TestClient, service: Service, *, alice_token: str, bob_token: str):
        self.client = client
        self.service = service
        self.alice_token = alice_token
        self.bob_token = bob_token
        self.responses = []

    def call(self, method: str, url: str, token: str | None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.responses.append(response)
        return response

    def alice(self, method: str, url: str, **kwargs):
        return self.call(method, url, self.alice_token, **kwargs)

    def bob(self, method: str, url: str, **kwargs):
        return self.call(method, url, self.bob_token, **kwargs)


def body_for(method: str, name: str) -> dict:
    return {"json": BODIES.get(name, {})} if method in ("POST", "PUT") else {}


@pytest.mark.parametrize("method, path, name", ROUTES)
def test_every_route_refuses_a_missing_token(world: World, method: str, path: str, name: str) -> None:
    url = fill(
        path,
        org="acme",
        function_id=world.function["id"],
        run_id=world.run_id,
        integration_id=world.integration["id"],
        name="API_KEY",
    )
    for token in (None, "", "lgc_not-a-real-token", world.alice_token + "x"):
        response = world.call(method, url, token, **body_for(method, name))
        assert response.status_code == 401, (token, response.text)
        assert response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_other_auth_schemes_are_refused(world: World) -> None:
    for header in (f"Basic {world.alice_token}", world.alice_token, f"Token {world.alice_token}"):
        response = world.client.get("/v1/secrets", headers={"Authorization": header})
        assert response.status_code == 401


@pytest.mark.parametrize("method, path, name", ORG_ROUTES)
def test_another_org_is_403(world: World, method: str, path: str, name: str) -> None:
    url = fill(
        path,
        org="acme",
        function_id=world.function["id"],
        run_id=world.run_id,
        integration_id=world.integration["id"],
        name="API_KEY",
        version="1",
    )
    response = world.bob(method, url, **body_for(method, name))
    assert response.status_code == 403, response.text
    assert "acme" in response.json()["error"]


@pytest.mark.parametrize("by", ["id", "name"])
def test_another_users_function_and_runs_are_404(world: World, by: str) -> None:
    ref = world.function[by]
    fid = world.function["id"]
    for org_prefix in ("/v1", "/v1/orgs/bobco"):
        base = f"{org_prefix}/logic/functions/{ref}"
        assert world.bob("GET", base).status_code == 404
        assert world.bob("PUT", base, json=FUNCTION).status_code == 404
        assert world.bob("DELETE", base).status_code == 404
        assert world.bob("GET", f"{base}/runs").status_code == 404
        assert world.bob("GET", f"{base}/runs/{world.run_id}").status_code == 404
        assert world.bob("GET", f"{org_prefix}/logic/functions/{fid}/runs/{world.run_id}").status_code == 404
    assert world.alice("GET", f"/v1/logic/functions/{fid}").json()["version"] == 1
    assert world.alice("GET", f"/v1/logic/functions/{fid}/runs/{world.run_id}").status_code == 200


def test_another_users_run_is_404_through_ones_own_function(world: World) -> None:
    bob_source = {**FUNCTION, "secrets": [], "source": "def main(event):\n    return 1\n"}
    mine = world.bob("POST", "/v1/logic/functions", json=bob_source)
    assert mine.status_code == 201, mine.text
    response = world.bob("GET", f"/v1/logic/functions/{mine.json()['id']}/runs/{world.run_id}")
    assert response.status_code == 404
    assert world.bob("GET", f"/v1/logic/functions/{mine.json()['id']}/runs").json() == {
        "logic_runs": [],
        "next_cursor": None,
    }


def test_another_users_integration_is_404(world: World) -> None:
    iid = world.integration["id"]
    for org_prefix in ("/v1", "/v1/orgs/bobco"):
        for ref in (iid, "notify"):
            base = f"{org_prefix}/integrations/{ref}"
            assert world.bob("GET", base).status_code == 404
            assert world.bob("PUT", base, json=WEBHOOK).status_code == 404
            assert world.bob("DELETE", base).status_code == 404
            assert world.bob("GET", f"{base}/logs").status_code == 404
    assert world.alice("GET", f"/v1/integrations/{iid}").status_code == 200


def test_another_users_secrets_are_out_of_reach(world: World) -> None:
    assert world.bob("GET", "/v1/secrets").json() == {"secrets": []}
    assert world.bob("GET", "/v1/secrets/API_KEY").status_code == 404
    assert world.bob("DELETE", "/v1/secrets/API_KEY").status_code == 404
    assert world.bob("PUT", "/v1/secrets/API_KEY", json={"value": "bob-value"}).status_code == 404
    assert world.bob("GET", "/v1/logic/functions").json() == {"logic_functions": []}
    assert world.bob("GET", "/v1/integrations").json() == {"integrations": []}
    alice_owner = world.service.actor().owner
    assert world.service.store.secrets.reveal(alice_owner, "API_KEY").reveal() == SECRET


def test_a_member_acts_on_org_resources(world: World) -> None:
    world.service.add_member(world.service.actor(), "acme", "bob")
    assert world.bob("POST", "/v1/orgs/acme/secrets", json={"name": "ORG_KEY", "value": "org-value"}).status_code == 201
    assert [s["name"] for s in world.alice("GET", "/v1/orgs/acme/secrets").json()["secrets"]] == ["ORG_KEY"]
    assert world.bob("GET", "/v1/orgs/acme/logic/functions").status_code == 200


# throttling failed sign-ins ---------------------------------------------------------

A, B = ("203.0.113.7", 40000), ("198.51.100.9", 40001)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def throttled(world: World):
    """The world's app with a throttle on a test clock; clients at addresses A and B."""
    clock = Clock()
    app = create_app(world.service, auth_throttle=AuthThrottle(clock=clock))
    with TestClient(app, client=A) as a, TestClient(app, client=B) as b:
        yield a, b, clock, world


def get(client: TestClient, token: str | None, url: str = "/v1/secrets", **headers: str):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(url, headers=headers)


def refused_for(response) -> int:
    """The Retry-After of a throttled answer (checks the rest of its shape)."""
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert response.json()["error"] == f"too many failed sign-ins from this address: try again in {wait} s"
    assert "www-authenticate" not in response.headers
    return wait


def test_wrong_tokens_are_throttled_per_address_until_the_window_passes(throttled):
    a, b, clock, world = throttled
    for _ in range(FAILURES_MAX):
        assert get(a, "lgc_guess").status_code == 401
    assert refused_for(get(a, "lgc_guess")) == WINDOW_S
    # A right guess is refused too, or the throttle would still tell it apart.
    assert refused_for(get(a, world.alice_token)) == WINDOW_S
    assert get(a, None).status_code == 401  # a missing token guesses nothing: plain 401
    assert get(b, world.alice_token).status_code == 200  # another address is not concerned
    assert get(b, "lgc_guess").status_code == 401
    clock.now += WINDOW_S - 0.5
    assert refused_for(get(a, world.alice_token)) == 1
    clock.now += 0.5
    assert get(a, world.alice_token).status_code == 200
    assert get(a, "lgc_guess").status_code == 401  # a fresh window


def test_failures_count_in_a_sliding_window(throttled):
    a, _b, clock, _world = throttled
    for _ in range(FAILURES_MAX - 1):
        assert get(a, "lgc_guess").status_code == 401
    clock.now += WINDOW_S + 1  # those have left the window
    for _ in range(FAILURES_MAX):
        assert get(a, "lgc_guess").status_code == 401
        clock.now += 1
    assert refused_for(get(a, "lgc_guess")) == WINDOW_S - FAILURES_MAX


def test_a_success_resets_no_count(throttled):
    a, b, _clock, world = throttled
    for _ in range(FAILURES_MAX - 1):
        assert get(a, "lgc_guess").status_code == 401
    # An attacker holding a token of his own must not wipe his failures with it.
    assert get(a, world.bob_token).status_code == 200
    assert get(b, world.alice_token).status_code == 200
    assert get(a, "lgc_guess").status_code == 401
    refused_for(get(a, world.bob_token))


def test_x_forwarded_for_is_not_believed(throttled):
    a, b, _clock, world = throttled
    for n in range(FAILURES_MAX):
        spoofed = {"X-Forwarded-For": f"192.0.2.{n}", "X-Real-IP": f"192.0.2.{n}"}
        assert get(a, "lgc_guess", **spoofed).status_code == 401
    refused_for(get(a, world.alice_token, **{"X-Forwarded-For": B[0]}))
    assert get(b, world.alice_token).status_code == 200


def test_every_authenticated_route_is_throttled(throttled):
    a, b, _clock, world = throttled
    for _ in range(FAILURES_MAX):
        assert get(a, "lgc_guess").status_code == 401
    for method, path, name in ROUTES:
        url = fill(
            path,
            org="acme",
            function_id=world.function["id"],
            run_id=world.run_id,
            integration_id=world.integration["id"],
            name="API_KEY",
        )
        response = a.request(
            method, url, headers={"Authorization": f"Bearer {world.alice_token}"}, **body_for(method, name)
        )
        refused_for(response)
    # The publish fast path (a valid token, a valid JSON body) too, and only for A.
    publish = {"headers": {"Authorization": f"Bearer {world.alice_token}"}, "json": {"name": "sensor-test"}}
    refused_for(a.post("/v1/events", **publish))
    assert b.post("/v1/events", **publish).status_code == 202
    assert get(a, None, "/healthz").status_code == 200  # no token, no throttle


def test_memory_is_bounded():
    clock = Clock()
    throttle = AuthThrottle(failures_max=2, window_s=60, addresses_max=3, clock=clock)
    for _ in range(1000):
        throttle.failed("203.0.113.1")
        clock.now += 0.001
    assert len(throttle._failures["203.0.113.1"]) == 2  # only the times that can still count
    for n in range(2, 7):
        throttle.failed(f"203.0.113.{n}")
        throttle.failed(f"203.0.113.{n}")
    assert throttle.tracked == 3  # the least recently failed were forgotten
    assert throttle.retry_after("203.0.113.6") == 60 and throttle.retry_after("203.0.113.1") == 0


def test_addresses_are_keyed_by_subscriber():
    def key(host: str) -> str:
        return client_address({"client": (host, 1)})

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:203.0.113.7") == key("203.0.113.7") == "203.0.113.7"
    assert client_address({"client": None}) == client_address({}) == ""


# log lines -------------------------------------------------------------------------

FORGED = "acme\nINFO forged line\r\x1b[31mred\u202e"
ESCAPED = "acme\\x0aINFO forged line\\x0d\\x1b[31mred\\u202e"


def _records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "logic.http"]


def _one_line(message: str) -> None:
    assert not any(ch in message for ch in "\n\r\x1b\u202e"), message


@pytest.mark.parametrize("fast", [True, False])
def test_a_5xx_log_line_escapes_the_path(world: World, caplog, monkeypatch, fast: bool):
    def busy(*args, **kwargs):
        raise StoreBusy("the store is busy")

    monkeypatch.setattr(world.service, "list_secrets", busy)
    monkeypatch.setattr(world.service, "publish_event", busy)
    app = create_app(world.service, publish_fast_path=fast)
    headers = {"Authorization": f"Bearer {world.alice_token}"}
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="logic.http"):
        quoted = "acme%0aINFO%20forged%20line%0d%1b[31mred%E2%80%AE"
        assert client.get(f"/v1/orgs/{quoted}/secrets", headers=headers).status_code == 503
        assert client.post(f"/v1/orgs/{quoted}/events", headers=headers, json={"name": "a"}).status_code == 503
    assert _records(caplog) == [
        f"StoreBusy on GET /v1/orgs/{ESCAPED}/secrets: the store is busy",
        f"StoreBusy on POST /v1/orgs/{ESCAPED}/events: the store is busy",
    ]


def test_an_internal_error_log_escapes_the_path_and_method(world: World, caplog, monkeypatch):
    monkeypatch.setattr(world.service, "list_secrets", lambda *a, **k: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="logic.http"):
        response = world.alice("GET", "/v1/orgs/acme%0aINFO%20forged%20line%0d%1b[31mred%E2%80%AE/secrets")
    assert (response.status_code, response.json()["error"]) == (500, "internal error")
    [message] = _records(caplog)
    first, *frames = message.splitlines()  # the traceback's frames follow, by design
    assert first == f"internal error on GET /v1/orgs/{ESCAPED}/secrets:"
    assert not any(line.startswith("INFO forged") for line in frames)
    assert frames[-1] == "builtins.ZeroDivisionError"


def test_the_throttle_log_line_is_one_line(world: World, caplog):
    app = create_app(world.service, auth_throttle=AuthThrottle(clock=Clock()))
    with (
        TestClient(app, client=("evil\nINFO forged", 1)) as client,
        caplog.at_level(logging.WARNING, logger="logic.http"),
    ):
        for _ in range(FAILURES_MAX + 3):
            get(client, "lgc_guess")
    assert _records(caplog) == [
        f"refusing Bearer tokens from evil\\x0aINFO forged for {WINDOW_S:g} s: {FAILURES_MAX} failed sign-ins"
    ]


def test_printable_leaves_ordinary_text_alone_and_escapes_the_backslash():
    from runtime.http.errors import printable

    assert printable("/v1/secrets/API_KEY ünïcödé") == "/v1/secrets/API_KEY ünïcödé"
    assert printable("a\\x0ab") == "a\\\\x0ab"  # a literal backslash cannot pose as an escape
    assert printable("\u2028\x00\x7f\U000e0001") == "\\u2028\\x00\\x7f\\U000e0001"
    _one_line(printable(FORGED))
